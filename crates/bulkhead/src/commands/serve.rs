//! `bulkhead serve`: the control plane. The daemon crate defines what it needs from the
//! host as a `Backend`; this file implements it over the same functions the CLI verbs
//! use (`apply::record`, `host::converge_by_tenant`, `host::spawn`, …), so an API
//! apply and a CLI apply are one code path, audited the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bulkhead_daemon::backend::Output as Stream;
use bulkhead_daemon::{
    Applied, Backend, BackendError, PressureSeries, Repair, TenantUsage, WorkloadProcess,
};
use bulkhead_node::host::Host;
use bulkhead_node::naming::Instance;
use bulkhead_spec::Desired;

use crate::cli::{Global, Output};
use crate::commands::{apply, host, lifecycle};
use crate::context::{self, EXIT_OK, Failure, Outcome};

/// `bulkhead serve`'s flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The unix socket (default `<state>/<instance>/api.sock`).
    pub socket: Option<PathBuf>,
    /// TLS: address, certificate, key.
    pub tls: Option<bulkhead_daemon::TlsConfig>,
    /// Seconds between reconciler passes.
    pub reconcile_interval: Duration,
    /// First restart delay.
    pub backoff_base: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// Bytes per log file before it rotates.
    pub log_file_bytes: u64,
    /// When a denied token is refused with 429.
    pub denial_limit: bulkhead_daemon::throttle::DenialLimit,
}

fn failure(failure: Failure) -> BackendError {
    match failure {
        Failure::Invalid(diagnostics) => {
            BackendError::Invalid(diagnostics.iter().map(ToString::to_string).collect())
        }
        Failure::Other(error) => {
            let text = format!("{error:#}");
            if text.starts_with("no tenant named") {
                BackendError::NotFound(text)
            } else {
                BackendError::Failed(text)
            }
        }
    }
}

/// The host as the daemon sees it.
struct CliBackend {
    state_root: PathBuf,
    instance: Instance,
    host: Host,
    /// A connection for reads, and the desired state of the latest revision parsed
    /// once: every API read needs it, and parsing every object per request made
    /// reads cost O(tenants) (see bench/README.md, api-load).
    reads: std::sync::Mutex<Reads>,
}

#[derive(Default)]
struct Reads {
    store: Option<bulkhead_store::Store>,
    cached: Option<(bulkhead_store::RevisionId, Desired)>,
}

impl CliBackend {
    /// A `Global` as if the CLI had been called by `actor`.
    fn global(&self, actor: &str) -> Global {
        Global {
            output: Output::Json,
            state_root: self.state_root.clone(),
            instance: Some(self.instance.prefix().to_owned()),
            actor: Some(actor.to_owned()),
        }
    }

    fn record(
        &self,
        actor: &str,
        desired: &Desired,
        message: &str,
    ) -> Result<Applied, BackendError> {
        let recorded =
            apply::record(&self.global(actor), desired, message, false, None).map_err(failure)?;
        Ok(Applied {
            revision: recorded.saved.id.0,
            unchanged: recorded.saved.unchanged,
            host_actions: recorded.host_actions,
        })
    }
}

struct CliProcess(bulkhead_node::sandbox::Process);

impl WorkloadProcess for CliProcess {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn take_output(&mut self) -> (Option<Stream>, Option<Stream>) {
        (
            self.0.stdout().map(|s| Box::new(s) as Stream),
            self.0.stderr().map(|s| Box::new(s) as Stream),
        )
    }

    fn try_wait(&mut self) -> std::io::Result<Option<i32>> {
        self.0.try_wait()
    }

    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
}

impl Backend for CliBackend {
    fn instance(&self) -> &str {
        self.instance.prefix()
    }

    fn current(&self) -> Result<Option<Desired>, BackendError> {
        let mut reads = self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reads.store.is_none() {
            let Some(store) = context::existing_store(&self.instance).map_err(failure)? else {
                return Ok(None);
            };
            reads.store = Some(store);
        }
        let cannot = |e: bulkhead_store::GetRevisionError| {
            BackendError::Failed(format!("cannot read the latest revision: {e}"))
        };
        let Some(store) = reads.store.as_ref() else {
            return Ok(None);
        };
        let Some(latest) = store.latest_revision_id().map_err(cannot)? else {
            return Ok(None);
        };
        if let Some((id, desired)) = &reads.cached
            && *id == latest
        {
            return Ok(Some(desired.clone()));
        }
        let revision = store.revision(latest).map_err(cannot)?;
        let desired = context::desired_of(&revision).map_err(failure)?;
        reads.cached = Some((revision.id, desired.clone()));
        Ok(Some(desired))
    }

    fn apply(&self, yaml: &str, actor: &str, message: &str) -> Result<Applied, BackendError> {
        let desired =
            bulkhead_spec::load_str("<api>", yaml).map_err(|d| failure(Failure::Invalid(d)))?;
        self.record(actor, &desired, message)
    }

    fn suspend(&self, tenant: &str, evict_key: bool, actor: &str) -> Result<Applied, BackendError> {
        let (desired, message) =
            lifecycle::suspended(&self.global(actor), tenant, evict_key).map_err(failure)?;
        self.record(actor, &desired, &message)
    }

    fn resume(&self, tenant: &str, actor: &str) -> Result<Applied, BackendError> {
        let (desired, message) =
            lifecycle::resumed(&self.global(actor), tenant).map_err(failure)?;
        self.record(actor, &desired, &message)
    }

    fn delete(&self, tenant: &str, actor: &str) -> Result<Applied, BackendError> {
        let (desired, message) =
            lifecycle::without(&self.global(actor), tenant).map_err(failure)?;
        self.record(actor, &desired, &message)
    }

    fn converge(&self, actor: &str) -> Result<Vec<Repair>, BackendError> {
        let Some(desired) = self.current()? else {
            return Ok(Vec::new());
        };
        let mut store = context::open_store(&self.instance).map_err(failure)?;
        let done = host::converge_by_tenant(&self.instance, &desired, &mut store, actor, None)
            .map_err(failure)?;
        Ok(done
            .into_iter()
            .map(|(tenant, action)| Repair { tenant, action })
            .collect())
    }

    fn spawn(
        &self,
        tenant: &str,
        workload: &str,
        command: Option<&[String]>,
    ) -> Result<Box<dyn WorkloadProcess>, BackendError> {
        let desired = self
            .current()?
            .ok_or_else(|| BackendError::NotFound("nothing applied yet".to_owned()))?;
        let process = host::spawn(
            &self.instance,
            &host::RunRequest {
                desired: &desired,
                tenant,
                workload: Some(workload),
                command: command.unwrap_or(&[]),
            },
        )
        .map_err(failure)?;
        Ok(Box::new(CliProcess(process)))
    }

    fn stop_workload(&self, tenant: &str, workload: &str) -> Result<(), BackendError> {
        let cgroup = self.instance.workload_cgroup(tenant, workload);
        if self.host.cgroups().exists(&cgroup) {
            self.host.cgroups().kill_all(&cgroup).map_err(|e| {
                BackendError::Failed(format!("cannot stop {tenant}/{workload}: {e}"))
            })?;
        }
        Ok(())
    }

    fn usage(&self, tenant: &str) -> Result<TenantUsage, BackendError> {
        let cgroup = self.instance.tenant_cgroup(tenant);
        if !self.host.cgroups().exists(&cgroup) {
            return Err(BackendError::NotFound(format!(
                "tenant {tenant:?} has no cgroup"
            )));
        }
        let usage = self
            .host
            .cgroups()
            .usage(&cgroup)
            .map_err(|e| BackendError::Failed(format!("cannot read {tenant}'s usage: {e}")))?;
        let image = self.instance.volume_image(tenant);
        let storage_used_bytes = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(&image).ok().map(|m| m.blocks() * 512)
        };
        let storage_limit_bytes = std::fs::metadata(&image).ok().map(|m| m.len());
        Ok(TenantUsage {
            cpu_usage_ns: usage.cpu.usage_ns,
            cpu_throttled_ns: usage.cpu.throttled_ns,
            memory_bytes: usage.memory.current,
            memory_limit_bytes: usage.memory.max,
            memory_failcnt: usage.memory.failcnt,
            oom_kills: usage.memory.oom_kill,
            pids: usage.pids_current,
            io_read_bytes: usage.io.iter().map(|d| d.read_bytes).sum(),
            io_write_bytes: usage.io.iter().map(|d| d.write_bytes).sum(),
            storage_used_bytes,
            storage_limit_bytes,
            pressure: pressure_series(&usage.pressure),
        })
    }

    fn last_verify(&self) -> BTreeMap<String, bool> {
        let path = crate::commands::verify::last_report_path(&self.instance);
        let Ok(text) = std::fs::read_to_string(path) else {
            return BTreeMap::new();
        };
        let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
            return BTreeMap::new();
        };
        let mut clean: BTreeMap<String, bool> = report["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(|t| (t.to_owned(), true)))
            .collect();
        for row in report["rows"].as_array().into_iter().flatten() {
            let verdict = row["verdict"].as_str().unwrap_or_default().to_lowercase();
            if (verdict == "leak" || verdict == "outage")
                && let Some(tenant) = row["tenant"].as_str()
            {
                clean.insert(tenant.to_owned(), false);
            }
        }
        clean
    }
}

/// The pressure lines the kernel offers, as the daemon reports them.
fn pressure_series(pressure: &bulkhead_node::cgroup::Pressure) -> Vec<PressureSeries> {
    let mut out = Vec::new();
    for (resource, stat) in [
        ("cpu", pressure.cpu),
        ("memory", pressure.memory),
        ("io", pressure.io),
    ] {
        let Some(stat) = stat else { continue };
        for (kind, line) in [("some", Some(stat.some)), ("full", stat.full)] {
            if let Some(line) = line {
                out.push(PressureSeries {
                    resource,
                    kind,
                    avg10_centi: line.avg10_centi,
                    total_us: line.total_us,
                });
            }
        }
    }
    out
}

pub fn serve(global: &Global, options: ServeOptions) -> Outcome {
    if !host::is_root() {
        return Err(anyhow::anyhow!(
            "the daemon enforces tenants with cgroups and namespaces (expected to run as root)"
        )
        .into());
    }
    let instance = context::instance(global, None)?;
    std::fs::create_dir_all(instance.state_dir())
        .with_context(|| format!("cannot create {}", instance.state_dir().display()))?;
    let config = bulkhead_daemon::Config {
        store: instance.store_path(),
        socket: options
            .socket
            .unwrap_or_else(|| instance.state_dir().join("api.sock")),
        tls: options.tls,
        log_dir: instance.state_dir().join("logs"),
        log_limits: bulkhead_daemon::logs::LogLimits {
            file_bytes: options.log_file_bytes,
            ..Default::default()
        },
        reconcile_interval: options.reconcile_interval,
        backoff: bulkhead_daemon::supervisor::Backoff {
            base: options.backoff_base,
            max: options.backoff_max,
            ..Default::default()
        },
        denial_limit: options.denial_limit,
    };
    let backend = CliBackend {
        state_root: global.state_root.clone(),
        host: Host::new(instance.clone()).context("cannot read the host's cgroups")?,
        instance,
        reads: std::sync::Mutex::new(Reads::default()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    eprintln!(
        "bulkhead serve: instance {:?} on {}",
        backend.instance.prefix(),
        config.socket.display()
    );
    runtime
        .block_on(bulkhead_daemon::serve(config, Arc::new(backend), async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }))
        .map_err(|e| Failure::Other(anyhow::Error::new(e)))?;
    Ok(EXIT_OK)
}
