//! Workload supervision: one task per workload of every active tenant runs it in its
//! tenant's sandbox through the [`Backend`], pipes its output to its log
//! ([`crate::logs`]) and restarts it by its policy with exponential backoff. Each
//! workload has its own task, timer and backoff, so a crash-looping one costs its
//! neighbours nothing but the (capped, growing) spawn attempts it makes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_spec::{Desired, RestartPolicy, TenantState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::backend::Backend;
use crate::logs::{self, LogLimits, LogWriter};

/// Restart delays: `base`, doubling after each restart up to `max`; back to `base`
/// once a run lasted `stable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A run this long resets the delay.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
            stable: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay after `delay`.
    pub fn next(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.max)
    }
}

/// Where a workload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadState {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Waiting to be restarted.
    Backoff,
    /// Ended, and its policy says not to restart it.
    Exited,
    /// Stopped by the daemon.
    Stopped,
}

/// A supervised workload, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadStatus {
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub workload: String,
    /// Restart policy.
    pub restart: String,
    /// State.
    pub state: WorkloadState,
    /// Host pid while running.
    pub pid: Option<u32>,
    /// Times it was restarted.
    pub restarts: u64,
    /// Exit code (or 128 + signal) of the last run.
    pub last_exit: Option<i32>,
    /// Why the last start failed, if it did.
    pub last_error: Option<String>,
    /// The delay before the next start while in backoff, ms.
    pub backoff_ms: u64,
}

struct Worker {
    spec: String,
    status: Arc<Mutex<WorkloadStatus>>,
    stop: watch::Sender<bool>,
}

/// Every workload's task.
pub struct Supervisor {
    backend: Arc<dyn Backend>,
    runtime: tokio::runtime::Handle,
    log_dir: PathBuf,
    limits: LogLimits,
    backoff: Backoff,
    workers: Mutex<BTreeMap<(String, String), Worker>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("log_dir", &self.log_dir)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// A supervisor that runs its tasks on `runtime`.
    pub fn new(
        backend: Arc<dyn Backend>,
        runtime: tokio::runtime::Handle,
        log_dir: PathBuf,
        limits: LogLimits,
        backoff: Backoff,
    ) -> Supervisor {
        Supervisor {
            backend,
            runtime,
            log_dir,
            limits,
            backoff,
            workers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where logs go.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// Makes the running set match `desired`: starts workloads of active tenants that
    /// have no task, restarts those whose spec changed, stops those no longer
    /// desired. Workloads of suspended tenants are left alone (frozen, not stopped).
    pub fn sync(&self, desired: Option<&Desired>) {
        let mut wanted: BTreeMap<(String, String), (String, RestartPolicy)> = BTreeMap::new();
        let mut suspended: BTreeSet<String> = BTreeSet::new();
        if let Some(desired) = desired {
            for (name, tenant) in &desired.tenants {
                if tenant.spec.state != TenantState::Active {
                    suspended.insert(name.to_string());
                    continue;
                }
                for workload in desired.workloads_of(name) {
                    let spec = serde_json::to_string(&workload.spec).unwrap_or_default();
                    wanted.insert(
                        (name.to_string(), workload.metadata.name.to_string()),
                        (spec, workload.spec.restart),
                    );
                }
            }
        }
        let mut workers = lock(&self.workers);
        let stale: Vec<(String, String)> = workers
            .iter()
            .filter(|(key, worker)| {
                !suspended.contains(&key.0)
                    && wanted
                        .get(*key)
                        .is_none_or(|(spec, _)| *spec != worker.spec)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(worker) = workers.remove(&key) {
                worker.stop.send_replace(true);
            }
        }
        for (key, (spec, restart)) in wanted {
            if workers.contains_key(&key) {
                continue;
            }
            let worker = self.start(&key.0, &key.1, spec, restart);
            workers.insert(key, worker);
        }
    }

    /// Stops every workload of `tenant` (before it is deleted).
    pub fn stop_tenant(&self, tenant: &str) {
        let mut workers = lock(&self.workers);
        let keys: Vec<_> = workers
            .keys()
            .filter(|(t, _)| t == tenant)
            .cloned()
            .collect();
        for key in keys {
            if let Some(worker) = workers.remove(&key) {
                worker.stop.send_replace(true);
            }
            let _ = self.backend.stop_workload(&key.0, &key.1);
        }
    }

    /// Every supervised workload's status, by tenant and name.
    pub fn statuses(&self) -> Vec<WorkloadStatus> {
        lock(&self.workers)
            .values()
            .map(|w| lock(&w.status).clone())
            .collect()
    }

    fn start(&self, tenant: &str, workload: &str, spec: String, restart: RestartPolicy) -> Worker {
        let status = Arc::new(Mutex::new(WorkloadStatus {
            tenant: tenant.to_owned(),
            workload: workload.to_owned(),
            restart: serde_json::to_value(restart)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            state: WorkloadState::Starting,
            pid: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            backoff_ms: 0,
        }));
        let (stop, stopped) = watch::channel(false);
        let task = Task {
            backend: Arc::clone(&self.backend),
            tenant: tenant.to_owned(),
            workload: workload.to_owned(),
            restart,
            backoff: self.backoff,
            status: Arc::clone(&status),
            log_dir: self.log_dir.clone(),
            limits: self.limits,
        };
        self.runtime.spawn(task.run(stopped));
        Worker { spec, status, stop }
    }
}

struct Task {
    backend: Arc<dyn Backend>,
    tenant: String,
    workload: String,
    restart: RestartPolicy,
    backoff: Backoff,
    status: Arc<Mutex<WorkloadStatus>>,
    log_dir: PathBuf,
    limits: LogLimits,
}

/// How often a running workload is checked for having ended.
const POLL: Duration = Duration::from_millis(100);

impl Task {
    fn set(&self, change: impl FnOnce(&mut WorkloadStatus)) {
        change(&mut lock(&self.status));
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Backend) -> T + Send + 'static,
    ) -> Option<T> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || f(backend.as_ref()))
            .await
            .ok()
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut delay = self.backoff.base;
        let (tenant, workload) = (self.tenant.clone(), self.workload.clone());
        loop {
            if *stopped.borrow() {
                break;
            }
            // Whatever still runs in the workload's cgroup (a daemon killed with -9
            // leaves its workloads behind) goes first: one instance at a time.
            let (t, w) = (tenant.clone(), workload.clone());
            let _ = self.blocking(move |b| b.stop_workload(&t, &w)).await;
            self.set(|s| s.state = WorkloadState::Starting);
            let started = Instant::now();
            let (t, w) = (tenant.clone(), workload.clone());
            let spawned = self.blocking(move |b| b.spawn(&t, &w, None)).await;
            let exit = match spawned {
                Some(Ok(mut process)) => {
                    self.set(|s| {
                        s.state = WorkloadState::Running;
                        s.pid = Some(process.id());
                        s.last_error = None;
                    });
                    self.pump_output(process.as_mut());
                    let mut exit = None;
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => {
                                let _ = process.kill();
                                for _ in 0..50 {
                                    if process.try_wait().ok().flatten().is_some() {
                                        break;
                                    }
                                    tokio::time::sleep(POLL).await;
                                }
                                break;
                            }
                            () = tokio::time::sleep(POLL) => {
                                match process.try_wait() {
                                    Ok(Some(code)) => { exit = Some(code); break; }
                                    Ok(None) => {}
                                    Err(e) => {
                                        self.set(|s| s.last_error = Some(e.to_string()));
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    self.set(|s| {
                        s.pid = None;
                        s.last_exit = exit;
                    });
                    exit
                }
                Some(Err(error)) => {
                    self.set(|s| s.last_error = Some(error.to_string()));
                    None
                }
                None => None,
            };
            if *stopped.borrow() {
                break;
            }
            let restart = match self.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => exit != Some(0),
                RestartPolicy::Never => false,
            };
            if !restart {
                self.set(|s| s.state = WorkloadState::Exited);
                // Wait to be stopped (or re-synced with a new spec).
                let _ = stopped.changed().await;
                return;
            }
            if started.elapsed() >= self.backoff.stable {
                delay = self.backoff.base;
            }
            self.set(|s| {
                s.state = WorkloadState::Backoff;
                s.backoff_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            });
            tokio::select! {
                _ = stopped.changed() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = self.backoff.next(delay);
            self.set(|s| s.restarts += 1);
        }
        self.set(|s| {
            s.state = WorkloadState::Stopped;
            s.pid = None;
        });
        let (t, w) = (tenant, workload);
        let _ = self.blocking(move |b| b.stop_workload(&t, &w)).await;
    }

    fn pump_output(&self, process: &mut dyn crate::backend::WorkloadProcess) {
        let (stdout, stderr) = process.take_output();
        let writer = match LogWriter::open(&self.log_dir, &self.tenant, &self.workload, self.limits)
        {
            Ok(writer) => Arc::new(Mutex::new(writer)),
            Err(e) => {
                self.set(|s| s.last_error = Some(format!("cannot open the log: {e}")));
                return;
            }
        };
        for stream in [stdout, stderr].into_iter().flatten() {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || logs::pump(stream, writer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(700),
            stable: Duration::from_secs(1),
        };
        let mut delay = backoff.base;
        let mut seen = vec![delay.as_millis()];
        for _ in 0..4 {
            delay = backoff.next(delay);
            seen.push(delay.as_millis());
        }
        assert_eq!(seen, vec![100, 200, 400, 700, 700]);
    }
}
