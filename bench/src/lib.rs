//! Shared pieces of bulkhead's benchmarks: statistics over samples, a throwaway
//! instance of the `bulkhead` binary that is always collected (`gc --all`), and CPU
//! pinning of the benchmark process (its children inherit it).
//!
//! Each benchmark is a binary under `src/bin/`; see `bench/README.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Median and 95th percentile (nearest rank) of `samples`, which it sorts.
pub fn median_p95(samples: &mut [Duration]) -> (Duration, Duration) {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `a / b`, as a ratio with two decimals.
pub fn ratio(a: Duration, b: Duration) -> String {
    format!(
        "{:.2}×",
        a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
    )
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The CPUs this process may run on, as `/proc/self/status` lists them (`0-1`).
pub fn allowed_cpus() -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| "no Cpus_allowed_list in /proc/self/status".to_owned())
}

/// Sets this process's CPU affinity with `taskset -p` (children started afterwards
/// inherit it), so the timed children do not pay for a `taskset` exec each.
pub fn set_affinity(cpus: &str) -> Result<(), String> {
    let output = Command::new("taskset")
        .args(["-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset -p -c {cpus} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `command` with stdio on /dev/null and returns how long it took, from spawn to
/// reaped; a non-zero exit is an error (with its stderr).
pub fn time_command(command: &mut Command) -> Result<Duration, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let took = started.elapsed();
    check(command, &output)?;
    Ok(took)
}

fn check(command: &Command, output: &Output) -> Result<(), String> {
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The release `bulkhead` binary: `--bulkhead PATH`, else next to this benchmark's
/// own binary (`cargo xtask bench` builds both into `target/release/`).
pub fn bulkhead_binary(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match flag {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this benchmark's binary: {e}"))?
            .with_file_name("bulkhead"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no bulkhead binary at {} (expected `cargo build --release -p bulkhead` first, or --bulkhead PATH)",
            path.display()
        ))
    }
}

/// A small tenant for benchmarks: a 16Mi encrypted volume and one idle workload.
pub fn tenant_yaml(name: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata:
  name: {name}
spec:
  profile: restricted
  quota:
    cpuWeight: 100
    memory: 256Mi
    pids: 64
    storage: 16Mi
    workloads: 1
  storage:
    encrypted: true
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata:
  name: app
  tenant: {name}
spec:
  command: [/bin/sleep, infinity]
  resources: {{ memory: 64Mi, pids: 16 }}
"
    )
}

/// An instance of bulkhead of its own, with its state, master key and specs under a
/// fresh directory in /tmp. Dropping it runs `gc --all` and removes the directory,
/// also when the benchmark fails.
#[derive(Debug)]
pub struct BenchInstance {
    binary: PathBuf,
    prefix: String,
    dir: PathBuf,
}

impl BenchInstance {
    /// A new, empty instance named `<stem><pid><n>` (short: it prefixes host objects).
    pub fn new(binary: &Path, stem: &str, n: usize) -> Result<BenchInstance, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let prefix = format!("{stem}{}{n}", std::process::id() % 10_000);
        let dir = std::env::temp_dir().join(format!("bulkhead-bench-{prefix}"));
        std::fs::create_dir_all(dir.join("specs/tenants"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Sandbox holders run as unprivileged host ids and must traverse it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
        let mut instance = BenchInstance {
            binary: binary.to_path_buf(),
            prefix,
            dir,
        };
        instance.binary = instance.install(binary, "bulkhead")?;
        let platform = format!(
            "apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata:
  name: bench
spec:
  instance: {}
  keySource:
    file: {}
",
            instance.prefix,
            instance.dir.join("master.key").display()
        );
        instance.write_spec("platform.yaml", &platform)?;
        Ok(instance)
    }

    /// Copies `binary` into the instance's directory as `name` and returns the copy's
    /// path. Every `bulkhead` a benchmark times runs from such a fresh copy, as an
    /// installed binary would: a binary just written by the linker and one copied
    /// differ by up to 0.5 ms per exec on this VM (how the page cache holds them), which
    /// would otherwise show up as a difference between builds.
    pub fn install(&self, binary: &Path, name: &str) -> Result<PathBuf, String> {
        let bin = self.dir.join("bin");
        std::fs::create_dir_all(&bin)
            .map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
        let copy = bin.join(name);
        std::fs::copy(binary, &copy).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                binary.display(),
                copy.display()
            )
        })?;
        Ok(copy)
    }

    /// The instance's own copy of the `bulkhead` binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The instance prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The directory `apply` reads.
    pub fn specs(&self) -> PathBuf {
        self.dir.join("specs")
    }

    /// Writes one spec file (relative to the specs directory).
    pub fn write_spec(&self, relative: &str, text: &str) -> Result<(), String> {
        let path = self.specs().join(relative);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Adds tenants `t0`… `t{n-1}` built by [`tenant_yaml`].
    pub fn add_tenants(&self, n: usize) -> Result<Vec<String>, String> {
        (0..n)
            .map(|i| {
                let name = format!("t{i}");
                self.write_spec(&format!("tenants/{name}.yaml"), &tenant_yaml(&name))?;
                Ok(name)
            })
            .collect()
    }

    /// The `bulkhead` binary with this instance's environment.
    pub fn command(&self) -> Command {
        self.command_with(&self.binary)
    }

    /// Another `bulkhead` binary (say, an older build) with this instance's environment.
    pub fn command_with(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .env("BULKHEAD_STATE_ROOT", self.dir.join("state"))
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .env("BULKHEAD_ACTOR", "bench");
        command
    }

    /// Runs `bulkhead ARGS`, returning stdout; a failure is an error with stderr.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command();
        command.args(args);
        let output = command
            .output()
            .map_err(|e| format!("cannot start bulkhead: {e}"))?;
        check(&command, &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `bulkhead apply` of the specs directory, timed.
    pub fn apply(&self) -> Result<Duration, String> {
        let specs = self.specs();
        let specs = specs.to_str().ok_or("the specs path is not UTF-8")?;
        time_command(self.command().args(["apply", specs, "-m", "bench"]))
    }
}

impl Drop for BenchInstance {
    fn drop(&mut self) {
        // Nothing reached the host before the store exists (a failed validation).
        let store = self.dir.join("state").join(&self.prefix).join("state.db");
        if store.exists()
            && let Err(e) = self.run(&["gc", "--all"])
        {
            eprintln!("bench: cleanup of instance {} failed: {e}", self.prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Markdown table, built row by row.
#[derive(Debug, Default)]
pub struct Table {
    text: String,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        let mut table = Table::default();
        table.row(headers.iter().map(|h| h.to_string()).collect());
        let _ = writeln!(table.text, "|{}", "---|".repeat(headers.len()));
        table
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        let _ = writeln!(self.text, "| {} |", cells.join(" | "));
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
