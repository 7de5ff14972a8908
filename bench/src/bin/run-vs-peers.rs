//! Benchmark: `bulkhead run T -- /bin/true` (the release binary, against an applied
//! instance with one tenant) against its peers in the same run, interleaved:
//!
//! - `unshare -U -r -p -f -m -n -i -u --mount-proc /bin/true` (namespaces only),
//! - `bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev /bin/true`,
//! - a plain fork + exec of `/bin/true` (the floor).
//!
//! Each round runs every tool once, in an order that rotates, so drift in the machine's
//! load hits all of them alike. The whole set runs twice: pinned to CPU 1 (the
//! benchmark's own affinity, set with `taskset -p`, which the children inherit) and
//! unpinned. Needs root; creates its own instance and removes it (`gc --all`).
//!
//! ```text
//! cargo xtask bench run-vs-peers [-- --iterations 200 --cpu 1 --tenants 1 --bulkhead PATH --compare PATH]
//! ```
//!
//! `--tenants N` applies N tenants (the command runs in the first): `run` should not
//! slow down as an instance grows. `--compare PATH` adds another `bulkhead` binary
//! (say, a build of `main`) as a contender, for a before/after ratio in one run.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use bulkhead_bench::{
    BenchInstance, Table, allowed_cpus, bulkhead_binary, is_root, median_p95, ms, ratio,
    set_affinity, time_command,
};

const UNSHARE: &[&str] = &[
    "unshare",
    "-U",
    "-r",
    "-p",
    "-f",
    "-m",
    "-n",
    "-i",
    "-u",
    "--mount-proc",
    "/bin/true",
];
const BWRAP: &[&str] = &[
    "bwrap",
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "/bin/true",
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("run-vs-peers: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    iterations: usize,
    cpu: String,
    bulkhead: Option<PathBuf>,
    compare: Option<PathBuf>,
    tenants: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        iterations: 200,
        cpu: "1".to_owned(),
        bulkhead: None,
        compare: None,
        tenants: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                parsed.iterations = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--iterations needs a positive number")?;
            }
            "--tenants" => {
                parsed.tenants = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--tenants needs a positive number")?;
            }
            "--compare" => {
                parsed.compare = Some(args.next().ok_or("--compare needs a path")?.into());
            }
            "--cpu" => parsed.cpu = args.next().ok_or("--cpu needs a CPU list")?,
            "--bulkhead" => {
                parsed.bulkhead = Some(args.next().ok_or("--bulkhead needs a path")?.into());
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --iterations N, --cpu LIST, --tenants N, --bulkhead PATH or --compare PATH)"
                ));
            }
        }
    }
    Ok(parsed)
}

/// One contender: a name and how to start it.
struct Tool {
    name: String,
    argv: Vec<String>,
    /// Runs as this `bulkhead` binary with ARGV in the benchmark's instance.
    in_instance: Option<PathBuf>,
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if !is_root() {
        return Err("needs root (it applies a tenant)".to_owned());
    }
    for tool in ["unshare", "bwrap", "taskset"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} is not installed (expected util-linux and bubblewrap: apt-get install bubblewrap)"
            ));
        }
    }
    let binary = bulkhead_binary(args.bulkhead.clone())?;
    let instance = BenchInstance::new(&binary, "br", 0)?;
    instance.add_tenants(args.tenants)?;
    let applied = instance.apply()?;
    eprintln!(
        "run-vs-peers: instance {} applied ({} tenants) in {}",
        instance.prefix(),
        args.tenants,
        ms(applied)
    );

    let run_argv = ["run", "t0", "--", "/bin/true"].map(str::to_owned).to_vec();
    let mut tools = vec![Tool {
        name: "`bulkhead run t0 -- /bin/true`".to_owned(),
        argv: run_argv.clone(),
        in_instance: Some(instance.binary().to_path_buf()),
    }];
    if let Some(other) = &args.compare {
        tools.push(Tool {
            name: format!("`bulkhead run` with {}", other.display()),
            argv: run_argv,
            in_instance: Some(instance.install(&bulkhead_binary(Some(other.clone()))?, "compare")?),
        });
    }
    tools.extend([
        Tool {
            name: "bubblewrap `--unshare-all`".to_owned(),
            argv: BWRAP.iter().map(|s| s.to_string()).collect(),
            in_instance: None,
        },
        Tool {
            name: "`unshare -U -r -p -f -m -n -i -u --mount-proc`".to_owned(),
            argv: UNSHARE.iter().map(|s| s.to_string()).collect(),
            in_instance: None,
        },
        Tool {
            name: "fork + exec `/bin/true` (floor)".to_owned(),
            argv: vec!["/bin/true".to_owned()],
            in_instance: None,
        },
    ]);
    let command_of = |tool: &Tool| -> Command {
        if let Some(binary) = &tool.in_instance {
            let mut command = instance.command_with(binary);
            command.args(&tool.argv);
            command
        } else {
            let mut command = Command::new(&tool.argv[0]);
            command.args(&tool.argv[1..]);
            command
        }
    };

    let original = allowed_cpus()?;
    let mut report = String::new();
    for (label, cpus) in [
        (format!("pinned to CPU {}", args.cpu), args.cpu.as_str()),
        (format!("unpinned (CPUs {original})"), original.as_str()),
    ] {
        set_affinity(cpus)?;
        let warmup = args.iterations / 10 + 1;
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
        for round in 0..warmup + args.iterations {
            for k in 0..tools.len() {
                let i = (round + k) % tools.len();
                let took = timed_with_retries(|| command_of(&tools[i]))?;
                if round >= warmup {
                    samples[i].push(took);
                }
            }
        }
        let figures: Vec<(Duration, Duration)> =
            samples.iter_mut().map(|s| median_p95(s)).collect();
        let (bulkhead, _) = figures[0];
        let mut table = Table::new(&[
            &format!(
                "{label}, {} runs each, interleaved, {} tenant(s) applied",
                args.iterations, args.tenants
            ),
            "median",
            "p95",
            "bulkhead ÷ this (median)",
        ]);
        for (tool, (median, p95)) in tools.iter().zip(&figures) {
            table.row(vec![
                tool.name.clone(),
                ms(*median),
                ms(*p95),
                ratio(bulkhead, *median),
            ]);
        }
        report.push_str(&format!("{table}\n"));
    }
    set_affinity(&original)?;
    drop(instance);
    print!("{report}");
    println!(
        "target: bulkhead within 1.2× of bubblewrap (the ratio in the bubblewrap row, median)"
    );
    Ok(())
}

/// Times one run; retries twice on failure, because `bwrap --ro-bind / /` copies every
/// mount on the host and fails when another process removes one meanwhile (say a
/// `/run/netns` entry of a test running next to the benchmark).
fn timed_with_retries(command: impl Fn() -> Command) -> Result<Duration, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match time_command(&mut command()) {
            Ok(took) => return Ok(took),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
