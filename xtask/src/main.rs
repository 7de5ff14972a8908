//! bulkhead's task runner. One entry point that CI mirrors:
//!
//! ```text
//! cargo xtask test     # the whole test suite (unit, property, kernel tests as root)
//! cargo xtask lint     # cargo fmt --check and clippy with warnings denied
//! cargo xtask ci       # lint, then test: exactly what .ci/run does after installing packages
//! cargo xtask demo     # the README's main job
//! cargo xtask bench    # every benchmark under bench/, figures as ratios
//! ```

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("usage: cargo xtask <test|lint|ci|demo|bench> [args…]");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "test" => test(rest),
        "lint" => lint(),
        "ci" => lint().and_then(|()| test(rest)),
        "demo" => demo(rest),
        "bench" => bench(rest),
        other => {
            eprintln!("unknown task {other:?} (expected test, lint, ci, demo or bench)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn run(mut command: Command) -> Result<(), String> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

fn test(rest: &[String]) -> Result<(), String> {
    let mut command = cargo();
    command.args(["test", "--workspace", "--all-targets", "--locked"]);
    command.args(rest);
    run(command)?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc", "--locked"]);
    run(doc)
}

fn lint() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)
}

fn demo(rest: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "--bin", "bulkhead"]);
    run(build)?;
    let mut demo = Command::new("bash");
    demo.arg("examples/demo.sh").args(rest);
    run(demo)
}

fn bench(rest: &[String]) -> Result<(), String> {
    let mut command = cargo();
    command.args([
        "run",
        "--release",
        "--locked",
        "--package",
        "bulkhead-bench",
        "--bin",
    ]);
    match rest.first() {
        Some(name) => {
            command.arg(name).args(&rest[1..]);
            run(command)
        }
        None => Err("name a benchmark: cargo xtask bench <name> (see bench/README.md)".to_owned()),
    }
}
