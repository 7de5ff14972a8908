//! Benchmark: starting a process in a running tenant sandbox
//! (`Sandbox::run` of `/bin/true`: open the holder's namespaces, fork, setns
//! ×7, fork, set ids, exec, wait), against the baseline of a plain
//! fork + exec of `/bin/true` in the same run. Needs root.
//!
//! ```text
//! cargo xtask bench sandbox-run [-- --iterations N]
//! ```
//!
//! The figures are unpinned; pin with `taskset -c 1` for steadier ones.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_node::naming::Instance;
use bulkhead_node::sandbox::{self, Command, SandboxConfig};

fn main() -> ExitCode {
    // This binary is also the tenant's holder.
    if sandbox::is_holder_invocation() {
        sandbox::holder_main();
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sandbox-run: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Stops the benchmark's tenant even if the run fails.
struct Tenant<'a> {
    instance: &'a Instance,
    name: &'a str,
}

impl Drop for Tenant<'_> {
    fn drop(&mut self) {
        if let Err(e) = sandbox::stop(self.instance, self.name) {
            eprintln!("sandbox-run: cleanup failed: {e}");
        }
    }
}

fn run() -> Result<(), String> {
    let mut iterations = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--iterations needs a positive number")?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --iterations N)"
                ));
            }
        }
    }
    let state = std::env::temp_dir().join(format!("bulkhead-bench-{}", std::process::id()));
    let instance = Instance::new(&format!("bhb{}", std::process::id() % 100_000), &state);
    let tenant = Tenant {
        instance: &instance,
        name: "bench",
    };
    let started = Instant::now();
    let sandbox = sandbox::start(&instance, &SandboxConfig::new(tenant.name, 3_000_000_000))
        .map_err(|e| format!("start: {e}"))?;
    let start_time = started.elapsed();

    let warmup = iterations / 10 + 1;
    let mut in_sandbox = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let mut command = Command::new("/bin/true");
        command.stdout(Stdio::null());
        let t = Instant::now();
        let code = sandbox.run(command).map_err(|e| format!("run: {e}"))?;
        if code != 0 {
            return Err(format!("/bin/true exited {code} in the sandbox"));
        }
        if i >= warmup {
            in_sandbox.push(t.elapsed());
        }
    }
    let mut plain = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let t = Instant::now();
        let status = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("/bin/true: {e}"))?;
        if !status.success() {
            return Err(format!("/bin/true: {status}"));
        }
        if i >= warmup {
            plain.push(t.elapsed());
        }
    }
    drop(tenant);
    let _ = std::fs::remove_dir_all(&state);

    let (median, p95) = stats(&mut in_sandbox);
    let (base_median, base_p95) = stats(&mut plain);
    println!("| what ({iterations} runs, unpinned) | median | p95 |");
    println!("|---|---|---|");
    println!(
        "| `Sandbox::run` of `/bin/true` | {} | {} |",
        ms(median),
        ms(p95)
    );
    println!(
        "| fork + exec `/bin/true` (baseline) | {} | {} |",
        ms(base_median),
        ms(base_p95)
    );
    println!(
        "\nratio (median): {:.2}×; sandbox start (holder, root, netns): {}",
        median.as_secs_f64() / base_median.as_secs_f64().max(f64::MIN_POSITIVE),
        ms(start_time)
    );
    Ok(())
}

fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
