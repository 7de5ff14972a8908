//! The core: authenticate, authorize (auditing denials), then act through the
//! [`Backend`]. Everything here is synchronous and blocking; the HTTP layer calls it
//! on the blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_spec::{Desired, NoisyNeighbours, TenantState};
use bulkhead_store::{
    AuditEntry, AuditOutcome, BatchMember, ChangeReport, ElevationError, NewElevation, NewToken,
    Store, Tightening, TokenError,
};

use crate::authz::{Authorizer, Permission, Principal, Resource, Role};
use crate::backend::{Backend, BackendError};
use crate::command::{
    ApiError, Command, CreatedTokenView, ExecResult, Health, ReconcileStatus, Reply, TenantDetail,
    TenantSummary, TokenRequest, TokenView,
};
use crate::elevate::{self, ElevationChange, ElevationKind, ElevationRequest};
use crate::metrics;
use crate::noisy::{Detector, NOISY_ACTOR, Pressure};
use crate::supervisor::Supervisor;
use crate::throttle::{self, DenialLimit, Throttle, Tripped};

/// The audit log's actor for the reconciler's repairs.
pub const RECONCILER_ACTOR: &str = "bulkhead-daemon/reconciler";
/// Longest token lifetime.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most log lines one request returns.
pub const MAX_TAIL: usize = 10_000;
/// Output kept from an exec, per stream.
const EXEC_OUTPUT: u64 = 1 << 20;
/// How long the group committer leaves SQLite's write lock free after a batch while a
/// host change writes through its own connection (SQLite's busy handler polls at up
/// to 100 ms intervals).
const HOST_WRITER_WINDOW: Duration = Duration::from_millis(110);

/// The control plane's state.
pub struct Daemon {
    backend: Arc<dyn Backend>,
    store: Mutex<Store>,
    authz: Authorizer,
    supervisor: Supervisor,
    /// Changes (apply, lifecycle, reconcile) one at a time.
    writes: Mutex<()>,
    reconcile: Mutex<ReconcileStatus>,
    repairs: Mutex<BTreeMap<String, u64>>,
    throttle: Mutex<Throttle>,
    noisy: Mutex<NoisyState>,
    /// A second connection for lookups on the hot path (authentication), if given.
    reader: Option<Mutex<Store>>,
    /// Store-only audited changes waiting for the next group commit.
    pending: Mutex<Vec<Job>>,
}

/// One queued store-only change and where to report that its batch is durable.
struct Job {
    member: BatchMember<'static>,
    done: mpsc::Sender<Result<(), String>>,
}

/// A store-only change, ready to queue: the job, the receiver of its
/// batch's result, and the slot its change fills with its own value.
struct Submitted<R> {
    job: Job,
    done: mpsc::Receiver<Result<(), String>>,
    value: Arc<Mutex<Option<R>>>,
}

/// Wraps `change` (which returns the outcome for the log and its own value)
/// as a batch member.
fn submit<R: Send + 'static>(
    entry: AuditEntry,
    change: impl FnOnce(&mut Store) -> (ChangeReport, R) + Send + 'static,
) -> Submitted<R> {
    let value = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&value);
    let (tx, rx) = mpsc::channel();
    Submitted {
        job: Job {
            member: BatchMember::new(entry, move |store: &mut Store| {
                let (report, out) = change(store);
                *lock(&slot) = Some(out);
                report
            }),
            done: tx,
        },
        done: rx,
        value,
    }
}

/// Commits `jobs` in one transaction and tells each whether its part is durable.
fn commit_jobs(store: &mut Store, jobs: Vec<Job>) {
    let (members, dones): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.member, j.done)).unzip();
    let result = store.audited_batch(members);
    let anchor = result.anchor.map_err(|e| format!("cannot audit: {e}"));
    for (member, done) in result.members.into_iter().zip(dones) {
        let reply = match member {
            Ok(_) => anchor.clone(),
            Err(e) => Err(format!("cannot audit: {e}")),
        };
        // The requester may have gone; its change is committed regardless.
        let _ = done.send(reply);
    }
}

/// The change's value once its batch is durable.
fn collect<R>(value: &Mutex<Option<R>>, done: Result<(), String>) -> Result<R, ApiError> {
    done.map_err(ApiError::Failed)?;
    lock(value)
        .take()
        .ok_or_else(|| ApiError::Failed("the change did not report a result".to_owned()))
}

/// Runs one store-only change with its intent and outcome in one transaction,
/// on a store nobody else writes to (the CLI without a daemon).
fn commit_alone<R: Send + 'static>(
    store: &mut Store,
    entry: AuditEntry,
    change: impl FnOnce(&mut Store) -> (ChangeReport, R) + Send + 'static,
) -> Result<R, ApiError> {
    let submitted = submit(entry, change);
    commit_jobs(store, vec![submitted.job]);
    let done = submitted
        .done
        .recv()
        .unwrap_or_else(|_| Err("the batch ended without an answer".to_owned()));
    collect(&submitted.value, done)
}

/// The noisy-neighbour detector and what it has done since start.
#[derive(Debug)]
struct NoisyState {
    detector: Detector,
    /// Monotonic origin of the detector's clock.
    origin: Instant,
    /// Pressure events per tenant since start.
    events: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("instance", &self.backend.instance())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Invalid(problems) => ApiError::Invalid(problems),
            BackendError::NotFound(what) => ApiError::NotFound(what),
            BackendError::Failed(why) => ApiError::Failed(why),
        }
    }
}

/// The head of one YAML document: enough to know what it is and whose.
#[derive(Debug, serde::Deserialize)]
struct Head {
    kind: String,
    metadata: HeadMeta,
}

#[derive(Debug, serde::Deserialize)]
struct HeadMeta {
    name: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// The documents of a YAML stream, split at `---` lines.
fn documents(yaml: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

type Key = (String, Option<String>, String);

fn head_key(doc: &str, index: usize) -> Result<Key, ApiError> {
    let head: Head = serde_saphyr::from_str(doc).map_err(|e| {
        ApiError::BadRequest(format!(
            "document {}: expected kind and metadata.name: {e}",
            index + 1
        ))
    })?;
    Ok((head.kind, head.metadata.tenant, head.metadata.name))
}

impl Daemon {
    /// A daemon over `backend`, with the instance's `store` and `supervisor`.
    pub fn new(
        backend: Arc<dyn Backend>,
        store: Store,
        authz: Authorizer,
        supervisor: Supervisor,
    ) -> Daemon {
        Daemon {
            backend,
            store: Mutex::new(store),
            authz,
            supervisor,
            writes: Mutex::new(()),
            reconcile: Mutex::new(ReconcileStatus::default()),
            repairs: Mutex::new(BTreeMap::new()),
            throttle: Mutex::new(Throttle::new(DenialLimit::default())),
            noisy: Mutex::new(NoisyState {
                detector: Detector::default(),
                origin: Instant::now(),
                events: BTreeMap::new(),
            }),
            reader: None,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Group commit of a store-only change: queue it, then whoever next holds
    /// the write connection commits everything queued in one transaction (one
    /// fsync) and answers each member once its batch is durable. Intent, change
    /// and outcome of each member commit together; see
    /// [`Store::audited_batch`].
    fn group_commit<R: Send + 'static>(
        &self,
        entry: AuditEntry,
        change: impl FnOnce(&mut Store) -> (ChangeReport, R) + Send + 'static,
    ) -> Result<R, ApiError> {
        let Submitted { job, done, value } = submit(entry, change);
        lock(&self.pending).push(job);
        loop {
            if let Ok(result) = done.try_recv() {
                return collect(&value, result);
            }
            let mut store = lock(&self.store);
            // A batch that held the connection may have carried this job.
            if let Ok(result) = done.try_recv() {
                drop(store);
                return collect(&value, result);
            }
            let jobs = std::mem::take(&mut *lock(&self.pending));
            if !jobs.is_empty() {
                commit_jobs(&mut store, jobs);
                // A host change (apply, lifecycle, reconcile) holds `writes` and stores
                // through its own connection. Back-to-back batches would keep SQLite's
                // write lock taken so that its busy handler never wins; leave the lock
                // free (still holding the connection, so no other batch starts) for
                // longer than that handler's longest poll interval.
                if matches!(self.writes.try_lock(), Err(TryLockError::WouldBlock)) {
                    std::thread::sleep(HOST_WRITER_WINDOW);
                }
            }
        }
    }

    /// The same daemon with a second connection to the same store for lookups.
    pub fn with_reader(self, reader: Store) -> Daemon {
        Daemon {
            reader: Some(Mutex::new(reader)),
            ..self
        }
    }

    /// The read connection (the main one without a reader).
    fn reader(&self) -> MutexGuard<'_, Store> {
        lock(self.reader.as_ref().unwrap_or(&self.store))
    }

    /// The noisy-neighbour settings of the applied platform (defaults before any).
    pub fn noisy_settings(&self) -> NoisyNeighbours {
        self.current()
            .ok()
            .flatten()
            .map_or(bulkhead_spec::defaults::NOISY_NEIGHBOURS, |d| {
                d.platform.spec.noisy_neighbours
            })
    }

    /// One noisy-neighbour pass: lift tightenings whose cool-down is over (audited,
    /// then the host converges back — also after a daemon restart, since they are
    /// kept in the store), sample every active tenant, and for pressure that lasted
    /// the window audit an event and, if the platform enables it, tighten the
    /// tenant's cpu weight for the cool-down (audited, converged). Returns the events.
    pub fn noisy_pass(&self) -> Result<Vec<Pressure>, ApiError> {
        let Some(desired) = self.current()? else {
            return Ok(Vec::new());
        };
        let settings = desired.platform.spec.noisy_neighbours.clone();
        let now = now_unix();
        let failed = |e: bulkhead_store::ElevationError| ApiError::Failed(e.to_string());
        let audit_failed =
            |e: bulkhead_store::AppendAuditError| ApiError::Failed(format!("cannot audit: {e}"));

        // Cool-downs that are over.
        let due: Vec<_> = lock(&self.store)
            .tightenings()
            .map_err(failed)?
            .into_iter()
            .filter(|t| t.until <= now)
            .collect();
        if !due.is_empty() {
            let _writing = lock(&self.writes);
            for t in &due {
                let mut store = lock(&self.store);
                let intent = store
                    .audit_intent(
                        AuditEntry::intent(
                            NOISY_ACTOR,
                            "noisy-neighbour.restore",
                            format!("tenant/{}", t.tenant),
                        )
                        .with_detail(format!(
                            "cool-down over: cpu weight back to the revision's (was {} for: {})",
                            t.cpu_weight, t.reason
                        )),
                    )
                    .map_err(audit_failed)?;
                let removed = store.remove_tightening(&t.tenant);
                let (outcome, detail) = match &removed {
                    Ok(_) => (AuditOutcome::Succeeded, None),
                    Err(e) => (AuditOutcome::Failed, Some(e.to_string())),
                };
                store
                    .audit_outcome(&intent, outcome, detail.as_deref())
                    .map_err(audit_failed)?;
                removed.map_err(failed)?;
                lock(&self.noisy).detector.reset(&t.tenant);
            }
            self.converge_now(NOISY_ACTOR)?;
        }

        let active: BTreeSet<String> = desired
            .tenants
            .iter()
            .filter(|(_, t)| t.spec.state == TenantState::Active)
            .map(|(n, _)| n.to_string())
            .collect();
        let tightened: BTreeSet<String> = lock(&self.store)
            .tightenings()
            .map_err(failed)?
            .into_iter()
            .map(|t| t.tenant)
            .collect();
        let mut found = Vec::new();
        for tenant in &active {
            let Ok(usage) = self.backend.usage(tenant) else {
                continue;
            };
            let mut noisy = lock(&self.noisy);
            let at = noisy.origin.elapsed();
            if let Some(p) = noisy.detector.observe(&settings, tenant, usage, at) {
                *noisy.events.entry(tenant.clone()).or_default() += 1;
                found.push(p);
            }
        }
        lock(&self.noisy).detector.retain(&active);

        let mut tighten = Vec::new();
        for p in &found {
            let will_tighten = settings.tighten && !tightened.contains(&p.tenant);
            let entry = AuditEntry::new(
                NOISY_ACTOR,
                "noisy-neighbour.detected",
                format!("tenant/{}", p.tenant),
                "observed",
            )
            .with_detail(format!(
                "sustained {} s: {}; {}",
                p.lasted.as_secs(),
                p.describe(),
                if will_tighten {
                    "tightening"
                } else if settings.tighten {
                    "already tightened"
                } else {
                    "tightening is off (spec.noisyNeighbours.tighten)"
                }
            ));
            lock(&self.store)
                .append_audit(&entry)
                .map_err(audit_failed)?;
            tracing::warn!(tenant = %p.tenant, signals = %p.describe(), "noisy neighbour");
            if will_tighten {
                tighten.push(p);
            }
        }
        if !tighten.is_empty() {
            let _writing = lock(&self.writes);
            for p in tighten {
                let until = now.saturating_add(i64::from(settings.cool_down_seconds));
                let mut store = lock(&self.store);
                let intent = store
                    .audit_intent(
                        AuditEntry::intent(
                            NOISY_ACTOR,
                            "noisy-neighbour.tighten",
                            format!("tenant/{}", p.tenant),
                        )
                        .with_detail(format!(
                            "cpu weight {} until unix {until} ({} s cool-down): {}",
                            settings.tighten_cpu_weight,
                            settings.cool_down_seconds,
                            p.describe()
                        )),
                    )
                    .map_err(audit_failed)?;
                let set = store.set_tightening(&Tightening {
                    tenant: p.tenant.clone(),
                    cpu_weight: settings.tighten_cpu_weight,
                    reason: p.describe(),
                    started_at: now,
                    until,
                });
                let (outcome, detail) = match &set {
                    Ok(()) => (AuditOutcome::Succeeded, None),
                    Err(e) => (AuditOutcome::Failed, Some(e.to_string())),
                };
                store
                    .audit_outcome(&intent, outcome, detail.as_deref())
                    .map_err(audit_failed)?;
                set.map_err(failed)?;
            }
            self.converge_now(NOISY_ACTOR)?;
        }
        Ok(found)
    }

    /// The same daemon with another limit on denied callers.
    pub fn with_denial_limit(self, limit: DenialLimit) -> Daemon {
        Daemon {
            throttle: Mutex::new(Throttle::new(limit)),
            ..self
        }
    }

    /// Counts a denial of token `id`; audits the start of a block.
    fn count_denial(&self, store: &mut Store, id: &str) -> Result<(), ApiError> {
        let tripped = lock(&self.throttle).record_denial(id, Instant::now());
        if let Tripped::Blocked(block) = tripped {
            let entry = AuditEntry::new(format!("token {id}"), "rate-limit", "platform", "denied")
                .with_detail(format!(
                    "too many denials: every request of this token is refused with 429 for {} s; the refusals are counted in one record when the block ends",
                    block.as_secs()
                ));
            store
                .append_audit(&entry)
                .map_err(|e| ApiError::Failed(format!("cannot audit: {e}")))?;
        }
        Ok(())
    }

    /// Audits the blocks that are over (one aggregate record each).
    pub fn audit_ended_blocks(&self) -> Result<(), ApiError> {
        let ended = lock(&self.throttle).ended(Instant::now());
        if ended.is_empty() {
            return Ok(());
        }
        let mut store = lock(&self.store);
        for block in ended {
            let entry = AuditEntry::new(
                format!("token {}", block.id),
                "rate-limit",
                "platform",
                "denied",
            )
            .with_detail(format!(
                "block ended: {} request(s) refused with 429 during it",
                block.refused
            ));
            store
                .append_audit(&entry)
                .map_err(|e| ApiError::Failed(format!("cannot audit: {e}")))?;
        }
        Ok(())
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The caller behind a bearer token. Failures of a token that names a real id
    /// (expired, revoked, wrong secret) are audited; garbage is not, so that noise
    /// cannot grow the log.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, ApiError> {
        let token = bearer.ok_or_else(|| {
            ApiError::Unauthenticated("expected an Authorization: Bearer bht_… header".to_owned())
        })?;
        if let Some(id) = throttle::token_id(token) {
            self.audit_ended_blocks()?;
            if let Some(retry_after) = lock(&self.throttle).check(id, Instant::now()) {
                return Err(ApiError::TooManyRequests {
                    message: format!("token {id} was denied too often; retry in {retry_after} s"),
                    retry_after,
                });
            }
        }
        // Lookups go through the read connection, so that they do not wait for the
        // fsyncs of concurrent writes (WAL: readers are not blocked by the writer).
        let looked_up = self.reader().authenticate_token(token, now_unix());
        match looked_up {
            Ok(info) => {
                let role = Role::parse(&info.role).ok_or_else(|| {
                    ApiError::Unauthenticated(format!(
                        "token {} has unknown role {:?}",
                        info.id, info.role
                    ))
                })?;
                // Operator exec: only platform admins can hold it (the policies
                // check the role too).
                let exec_grants = if role == Role::PlatformAdmin {
                    self.reader()
                        .active_elevations(now_unix())
                        .map_err(|e| ApiError::Failed(e.to_string()))?
                        .into_iter()
                        .filter(|e| {
                            e.kind == ElevationKind::OperatorExec.as_str()
                                && e.requester == info.subject
                        })
                        .map(|e| e.tenant)
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(Principal {
                    token_id: info.id,
                    subject: info.subject,
                    role,
                    tenant: info.tenant,
                    exec_grants,
                })
            }
            Err(error) => {
                if let Some(id) = error.token_id() {
                    let mut store = lock(&self.store);
                    let entry = AuditEntry::new(
                        format!("token {id}"),
                        "authenticate",
                        "platform",
                        "denied",
                    )
                    .with_detail(error.to_string());
                    if let Err(e) = store.append_audit(&entry) {
                        return Err(ApiError::Failed(format!("cannot audit: {e}")));
                    }
                    self.count_denial(&mut store, id)?;
                }
                Err(ApiError::Unauthenticated(match error {
                    TokenError::Database(_) | TokenError::Random(_) => {
                        return Err(ApiError::Failed(error.to_string()));
                    }
                    other => other.to_string(),
                }))
            }
        }
    }

    /// Checks one permission; audits and refuses a denial.
    fn authorize(
        &self,
        who: &Principal,
        permission: Permission,
        resource: &Resource,
    ) -> Result<(), ApiError> {
        let decided = self.authz.decide(who, permission, resource);
        if decided.allowed {
            return Ok(());
        }
        let detail = if decided.reasons.is_empty() {
            format!(
                "no policy permits {} for {}",
                permission.as_str(),
                who.role.as_str()
            )
        } else {
            format!("policies: {}", decided.reasons.join(", "))
        };
        let entry = AuditEntry::new(
            who.actor(),
            permission.as_str(),
            resource.to_string(),
            "denied",
        )
        .with_detail(detail.clone());
        let mut store = lock(&self.store);
        store
            .append_audit(&entry)
            .map_err(|e| ApiError::Failed(format!("cannot audit a denial: {e}")))?;
        self.count_denial(&mut store, &who.token_id)?;
        drop(store);
        Err(ApiError::Forbidden(format!(
            "{} ({}) may not {} {resource} ({detail})",
            who.subject,
            who.role.as_str(),
            permission.as_str()
        )))
    }

    fn allowed(&self, who: &Principal, permission: Permission, resource: &Resource) -> bool {
        self.authz.decide(who, permission, resource).allowed
    }

    fn current(&self) -> Result<Option<Desired>, ApiError> {
        Ok(self.backend.current()?)
    }

    fn tenant_exists(desired: Option<&Desired>, tenant: &str) -> Result<(), ApiError> {
        if desired.is_some_and(|d| d.tenants.keys().any(|n| n.as_str() == tenant)) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no tenant named {tenant:?}")))
        }
    }

    /// Answers one command for `who`.
    pub fn handle(&self, who: &Principal, command: Command) -> Result<Reply, ApiError> {
        let tenant_of = |t: &str| Resource::Tenant(t.to_owned());
        match command {
            Command::ListTenants => {
                let desired = self.current()?;
                let mut out = Vec::new();
                for (name, tenant) in desired.iter().flat_map(|d| d.tenants.iter()) {
                    if self.allowed(who, Permission::TenantGet, &tenant_of(name.as_str())) {
                        out.push(summary(desired.as_ref(), name.as_str(), tenant));
                    }
                }
                Ok(Reply::Tenants(out))
            }
            Command::GetTenant { tenant } => {
                self.authorize(who, Permission::TenantGet, &tenant_of(&tenant))?;
                let desired = self.current()?;
                Self::tenant_exists(desired.as_ref(), &tenant)?;
                let Some((name, object)) = desired
                    .as_ref()
                    .and_then(|d| d.tenants.iter().find(|(n, _)| n.as_str() == tenant))
                else {
                    return Err(ApiError::NotFound(tenant));
                };
                let detail = TenantDetail {
                    summary: summary(desired.as_ref(), name.as_str(), object),
                    object: serde_json::to_value(object)
                        .map_err(|e| ApiError::Failed(e.to_string()))?,
                    workload_status: self
                        .supervisor
                        .statuses()
                        .into_iter()
                        .filter(|s| s.tenant == tenant)
                        .collect(),
                };
                Ok(Reply::Tenant(detail))
            }
            Command::Apply { yaml, message } => self.apply(who, &yaml, &message),
            Command::Suspend { tenant, evict_key } => {
                self.authorize(who, Permission::TenantSuspend, &tenant_of(&tenant))?;
                self.change(|b| b.suspend(&tenant, evict_key, &who.actor()))
            }
            Command::Resume { tenant } => {
                self.authorize(who, Permission::TenantResume, &tenant_of(&tenant))?;
                self.change(|b| b.resume(&tenant, &who.actor()))
            }
            Command::Delete { tenant } => {
                self.authorize(who, Permission::TenantDelete, &tenant_of(&tenant))?;
                Self::tenant_exists(self.current()?.as_ref(), &tenant)?;
                self.supervisor.stop_tenant(&tenant);
                self.change(|b| b.delete(&tenant, &who.actor()))
            }
            Command::ListWorkloads { tenant } => {
                self.authorize(who, Permission::WorkloadList, &tenant_of(&tenant))?;
                Self::tenant_exists(self.current()?.as_ref(), &tenant)?;
                Ok(Reply::Workloads(
                    self.supervisor
                        .statuses()
                        .into_iter()
                        .filter(|s| s.tenant == tenant)
                        .collect(),
                ))
            }
            Command::Logs {
                tenant,
                workload,
                tail,
            } => {
                self.authorize(who, Permission::WorkloadLogs, &tenant_of(&tenant))?;
                let desired = self.current()?;
                self.workload_exists(desired.as_ref(), &tenant, &workload)?;
                let lines = crate::logs::tail(
                    self.supervisor.log_dir(),
                    &tenant,
                    &workload,
                    tail.min(MAX_TAIL),
                )
                .map_err(|e| ApiError::Failed(format!("cannot read the log: {e}")))?;
                Ok(Reply::Logs(lines))
            }
            Command::Exec {
                tenant,
                workload,
                command,
                timeout_seconds,
            } => {
                self.authorize(who, Permission::WorkloadExec, &tenant_of(&tenant))?;
                let desired = self.current()?;
                self.workload_exists(desired.as_ref(), &tenant, &workload)?;
                if command.is_empty() {
                    return Err(ApiError::BadRequest(
                        "expected a command (a non-empty list)".to_owned(),
                    ));
                }
                let entry = AuditEntry::new(
                    who.actor(),
                    Permission::WorkloadExec.as_str(),
                    format!("workload/{tenant}/{workload}"),
                    "accepted",
                )
                .with_detail(format!("{command:?}"));
                lock(&self.store)
                    .append_audit(&entry)
                    .map_err(|e| ApiError::Failed(format!("cannot audit: {e}")))?;
                self.exec(&tenant, &workload, &command, timeout_seconds)
            }
            Command::ListTokens => {
                self.authorize(who, Permission::TokenList, &Resource::Platform)?;
                let tokens = self
                    .reader()
                    .tokens()
                    .map_err(|e| ApiError::Failed(e.to_string()))?;
                Ok(Reply::Tokens(tokens.into_iter().map(Into::into).collect()))
            }
            Command::CreateToken(request) => {
                self.authorize(who, Permission::TokenCreate, &Resource::Platform)?;
                let (entry, change) = token_create_change(&who.actor(), &request)?;
                let created = self.group_commit(entry, change)??;
                Ok(Reply::Token(created))
            }
            Command::RevokeToken { id } => {
                self.authorize(who, Permission::TokenRevoke, &Resource::Platform)?;
                let info = self
                    .reader()
                    .token(&id)
                    .map_err(|e| ApiError::Failed(e.to_string()))?
                    .ok_or_else(|| ApiError::NotFound(format!("no token {id:?}")))?;
                let (entry, change) = token_revoke_change(&who.actor(), &info);
                let info = self.group_commit(entry, change)??;
                Ok(Reply::Revoked(info))
            }
            Command::AuditLog { after, limit } => {
                self.authorize(who, Permission::AuditRead, &Resource::Platform)?;
                let records = self
                    .reader()
                    .audit_records(after, limit.min(10_000))
                    .map_err(|e| ApiError::Failed(e.to_string()))?;
                Ok(Reply::Audit(records.into_iter().map(Into::into).collect()))
            }
            Command::Metrics => {
                self.authorize(who, Permission::MetricsRead, &Resource::Platform)?;
                Ok(Reply::Metrics(self.metrics()?))
            }
            Command::ListElevations => {
                self.authorize(who, Permission::ElevationList, &Resource::Platform)?;
                let all = self
                    .reader()
                    .elevations()
                    .map_err(|e| ApiError::Failed(e.to_string()))?;
                Ok(Reply::Elevations(all.into_iter().map(Into::into).collect()))
            }
            Command::RequestElevation(request) => self.request_elevation(who, &request),
            Command::DecideElevation { id, approve, note } => {
                self.decide_elevation(who, &id, approve, note.as_deref())
            }
            Command::RevokeElevation { id } => {
                self.authorize(who, Permission::ElevationRevoke, &Resource::Platform)?;
                self.end_elevation(&who.actor(), &who.subject, &id, true)
            }
        }
    }

    fn request_elevation(
        &self,
        who: &Principal,
        request: &ElevationRequest,
    ) -> Result<Reply, ApiError> {
        self.authorize(who, Permission::ElevationRequest, &Resource::Platform)?;
        let desired = self.current()?;
        elevate::check_against(desired.as_ref(), request).map_err(ApiError::Invalid)?;
        let parameters = if request.parameters.is_null() {
            "{}".to_owned()
        } else {
            request.parameters.to_string()
        };
        let entry = AuditEntry::intent(
            who.actor(),
            "elevation.request",
            format!("tenant/{}", request.tenant),
        )
        .with_detail(format!(
            "{} {parameters} for {} s: {}",
            request.kind.as_str(),
            request.ttl_seconds,
            request.reason
        ));
        let new = NewElevation {
            kind: request.kind.as_str().to_owned(),
            tenant: request.tenant.clone(),
            parameters,
            reason: request.reason.clone(),
            ttl_seconds: i64::try_from(request.ttl_seconds).unwrap_or(i64::MAX),
            requester: who.subject.clone(),
            requester_token: who.token_id.clone(),
        };
        let created = self.group_commit(entry, move |store: &mut Store| {
            match store.create_elevation(&new, now_unix()) {
                Ok(e) => (
                    ChangeReport::succeeded(Some(format!("elevation {} pending", e.id))),
                    Ok(e),
                ),
                Err(e) => (
                    ChangeReport::failed(e.to_string()),
                    Err(ApiError::Failed(e.to_string())),
                ),
            }
        })??;
        Ok(Reply::Elevation(created.into()))
    }

    fn decide_elevation(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        note: Option<&str>,
    ) -> Result<Reply, ApiError> {
        let found = self
            .reader()
            .elevation(id)
            .map_err(|e| ApiError::Failed(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("no elevation {id:?}")))?;
        let permission = if approve {
            Permission::ElevationApprove
        } else {
            Permission::ElevationDeny
        };
        let resource = Resource::Elevation {
            id: found.id.clone(),
            requester: found.requester.clone(),
            tenant: found.tenant.clone(),
        };
        self.authorize(who, permission, &resource)?;
        // The policies forbid it already; this holds even if they were edited.
        if found.requester == who.subject {
            let entry = AuditEntry::new(
                who.actor(),
                permission.as_str(),
                resource.to_string(),
                "denied",
            )
            .with_detail("the requester may not decide their own elevation (two-person rule)");
            let mut store = lock(&self.store);
            store
                .append_audit(&entry)
                .map_err(|e| ApiError::Failed(format!("cannot audit a denial: {e}")))?;
            self.count_denial(&mut store, &who.token_id)?;
            return Err(ApiError::Forbidden(format!(
                "{} requested elevation {id} and may not decide it (two-person rule)",
                who.subject
            )));
        }
        let _writing = lock(&self.writes);
        let entry = AuditEntry::intent(who.actor(), permission.as_str(), resource.to_string())
            .with_detail(format!(
                "{} on tenant/{} requested by {:?}{}",
                found.kind,
                found.tenant,
                found.requester,
                note.map(|n| format!(": {n}")).unwrap_or_default()
            ));
        let (id_owned, subject, note_owned) =
            (id.to_owned(), who.subject.clone(), note.map(str::to_owned));
        let decided = self.group_commit(entry, move |store: &mut Store| {
            match store.decide_elevation(
                &id_owned,
                approve,
                &subject,
                note_owned.as_deref(),
                now_unix(),
            ) {
                Ok(e) => (
                    ChangeReport::succeeded(Some(match e.expires_at {
                        Some(at) => format!("active until unix {at}"),
                        None => "denied".to_owned(),
                    })),
                    Ok(e),
                ),
                Err(e) => (ChangeReport::failed(e.to_string()), Err(elevation_error(e))),
            }
        })??;
        let host_actions = if approve {
            self.converge_now(&who.actor())?
        } else {
            Vec::new()
        };
        Ok(Reply::ElevationChanged(ElevationChange {
            elevation: decided.into(),
            host_actions,
        }))
    }

    /// Ends an active elevation (revoked by a person, or expired by the reconciler)
    /// and converges the host back.
    fn end_elevation(
        &self,
        actor: &str,
        by: &str,
        id: &str,
        revoked: bool,
    ) -> Result<Reply, ApiError> {
        let _writing = lock(&self.writes);
        let ended = self.end_elevation_locked(actor, by, id, revoked)?;
        let host_actions = self.converge_now(actor)?;
        Ok(Reply::ElevationChanged(ElevationChange {
            elevation: ended.into(),
            host_actions,
        }))
    }

    fn end_elevation_locked(
        &self,
        actor: &str,
        by: &str,
        id: &str,
        revoked: bool,
    ) -> Result<bulkhead_store::Elevation, ApiError> {
        let action = if revoked {
            "elevation.revoke"
        } else {
            "elevation.expire"
        };
        let found = self
            .reader()
            .elevation(id)
            .map_err(|e| ApiError::Failed(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("no elevation {id:?}")))?;
        let entry =
            AuditEntry::intent(actor, action, format!("elevation/{id}")).with_detail(format!(
                "{} on tenant/{} {}",
                found.kind, found.tenant, found.parameters
            ));
        let (id, by) = (id.to_owned(), by.to_owned());
        self.group_commit(entry, move |store: &mut Store| {
            match store.end_elevation(&id, revoked, &by, now_unix()) {
                Ok(e) => (ChangeReport::succeeded(Some(e.status.clone())), Ok(e)),
                Err(e) => (ChangeReport::failed(e.to_string()), Err(elevation_error(e))),
            }
        })?
    }

    /// Converges the host now (the caller holds the write lock), audited as `actor`.
    fn converge_now(&self, actor: &str) -> Result<Vec<String>, ApiError> {
        let repairs = self.backend.converge(actor)?;
        Ok(repairs.into_iter().map(|r| r.action).collect())
    }

    /// Marks elevations whose time has run out as expired (audited as the
    /// reconciler); the converge that follows takes the host back.
    fn expire_elevations(&self) -> Result<usize, ApiError> {
        let due = lock(&self.store)
            .due_elevations(now_unix())
            .map_err(|e| ApiError::Failed(e.to_string()))?;
        for elevation in &due {
            self.end_elevation_locked(RECONCILER_ACTOR, RECONCILER_ACTOR, &elevation.id, false)?;
        }
        Ok(due.len())
    }

    fn workload_exists(
        &self,
        desired: Option<&Desired>,
        tenant: &str,
        workload: &str,
    ) -> Result<(), ApiError> {
        Self::tenant_exists(desired, tenant)?;
        let found = desired.is_some_and(|d| {
            d.workloads.values().any(|w| {
                w.metadata.tenant.as_str() == tenant && w.metadata.name.as_str() == workload
            })
        });
        if found {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "tenant {tenant:?} has no workload {workload:?}"
            )))
        }
    }

    /// Runs a lifecycle change under the write lock, then re-syncs the supervisor.
    fn change(
        &self,
        f: impl FnOnce(&dyn Backend) -> Result<crate::backend::Applied, BackendError>,
    ) -> Result<Reply, ApiError> {
        let _writing = lock(&self.writes);
        let applied = f(self.backend.as_ref())?;
        self.supervisor.sync(self.current()?.as_ref());
        Ok(Reply::Applied(applied))
    }

    fn apply(&self, who: &Principal, yaml: &str, message: &str) -> Result<Reply, ApiError> {
        let docs = documents(yaml);
        if docs.is_empty() {
            return Err(ApiError::BadRequest(
                "expected at least one YAML document".to_owned(),
            ));
        }
        let mut incoming: Vec<(Key, String)> = Vec::new();
        for (index, doc) in docs.into_iter().enumerate() {
            incoming.push((head_key(&doc, index)?, doc));
        }
        for ((kind, tenant, name), _) in &incoming {
            let (permission, resource) = match (kind.as_str(), tenant) {
                ("Platform", _) => (Permission::PlatformApply, Resource::Platform),
                ("Tenant", _) => (Permission::TenantApply, Resource::Tenant(name.clone())),
                ("Workload", Some(tenant)) => {
                    (Permission::WorkloadApply, Resource::Tenant(tenant.clone()))
                }
                ("Workload", None) => {
                    return Err(ApiError::BadRequest(format!(
                        "workload {name:?}: expected metadata.tenant"
                    )));
                }
                (other, _) => {
                    return Err(ApiError::BadRequest(format!(
                        "{other:?} is not a kind (expected Platform, Tenant or Workload)"
                    )));
                }
            };
            self.authorize(who, permission, &resource)?;
        }
        let _writing = lock(&self.writes);
        // Merge into the last revision: same kind, tenant and name replaces.
        let mut merged: BTreeMap<Key, String> = BTreeMap::new();
        if let Some(desired) = self.current()? {
            let objects = desired
                .canonical_objects()
                .map_err(|e| ApiError::Failed(e.to_string()))?;
            for object in objects {
                merged.insert(
                    (object.kind.to_owned(), object.tenant, object.name),
                    object.yaml,
                );
            }
        }
        for (key, doc) in incoming {
            merged.insert(key, doc);
        }
        let text = merged.into_values().collect::<Vec<_>>().join("---\n");
        let message = if message.is_empty() {
            "applied through the API"
        } else {
            message
        };
        let applied = self.backend.apply(&text, &who.actor(), message)?;
        self.supervisor.sync(self.current()?.as_ref());
        Ok(Reply::Applied(applied))
    }

    fn exec(
        &self,
        tenant: &str,
        workload: &str,
        command: &[String],
        timeout_seconds: u64,
    ) -> Result<Reply, ApiError> {
        let mut process = self.backend.spawn(tenant, workload, Some(command))?;
        let (stdout, stderr) = process.take_output();
        let collect = |stream: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(stream) = stream {
                    let mut limited = stream.take(EXEC_OUTPUT);
                    let _ = limited.read_to_end(&mut out);
                    // Drain the rest so the process is not blocked on a full pipe.
                    let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
                }
                String::from_utf8_lossy(&out).into_owned()
            })
        };
        let (out, err) = (collect(stdout), collect(stderr));
        let deadline = Instant::now() + Duration::from_secs(timeout_seconds.clamp(1, 600));
        let mut timed_out = false;
        let exit_code = loop {
            match process.try_wait() {
                Ok(Some(code)) => break code,
                Ok(None) if Instant::now() >= deadline && !timed_out => {
                    timed_out = true;
                    let _ = process.kill();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(ApiError::Failed(format!("cannot wait: {e}"))),
            }
        };
        Ok(Reply::Exec(ExecResult {
            exit_code,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            timed_out,
        }))
    }

    /// One reconciler pass: converge the host to the last revision (every repair is
    /// audited by the backend as [`RECONCILER_ACTOR`]), then bring the supervisor in
    /// line. Returns the repairs.
    pub fn reconcile_once(&self) -> Result<Vec<String>, ApiError> {
        let started = Instant::now();
        if let Err(e) = self.audit_ended_blocks() {
            tracing::warn!("cannot audit ended rate-limit blocks: {e}");
        }
        let result = {
            let _writing = lock(&self.writes);
            match self.expire_elevations() {
                Ok(_) => self.backend.converge(RECONCILER_ACTOR),
                Err(e) => Err(BackendError::Failed(format!(
                    "cannot expire elevations: {e}"
                ))),
            }
        };
        let desired = self.current();
        if let Ok(desired) = &desired {
            self.supervisor.sync(desired.as_ref());
        }
        let mut status = lock(&self.reconcile);
        status.passes += 1;
        status.last_pass_unix_ms = Some(now_unix_ms());
        status.last_duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
        match result {
            Ok(repairs) => {
                let mut counts = lock(&self.repairs);
                for repair in &repairs {
                    *counts.entry(repair.tenant.clone()).or_default() += 1;
                    if !repair.tenant.is_empty() {
                        tracing::info!(tenant = %repair.tenant, action = %repair.action, "repaired drift");
                    }
                }
                status.repairs += repairs.len() as u64;
                status.last_actions = repairs.iter().map(|r| r.action.clone()).collect();
                status.last_error = None;
                status.converged = true;
                Ok(status.last_actions.clone())
            }
            Err(error) => {
                status.failures += 1;
                status.last_error = Some(error.to_string());
                status.converged = false;
                Err(error.into())
            }
        }
    }

    /// Health and the reconciler's last pass (no authentication needed).
    pub fn health(&self) -> Health {
        Health {
            status: "ok".to_owned(),
            instance: self.backend.instance().to_owned(),
            reconciler: lock(&self.reconcile).clone(),
        }
    }

    fn metrics(&self) -> Result<String, ApiError> {
        let desired = self.current()?;
        let mut snapshot = metrics::Snapshot::default();
        for name in desired.iter().flat_map(|d| d.tenants.keys()) {
            if let Ok(usage) = self.backend.usage(name.as_str()) {
                snapshot.usage.push((name.to_string(), usage));
            }
        }
        snapshot.repairs = lock(&self.repairs).clone();
        snapshot.verify = self.backend.last_verify();
        snapshot.workloads = self.supervisor.statuses();
        snapshot.reconcile_failures = lock(&self.reconcile).failures;
        snapshot.noisy_events = lock(&self.noisy).events.clone();
        let now = now_unix();
        snapshot.tightened = self
            .reader()
            .tightenings()
            .map_err(|e| ApiError::Failed(e.to_string()))?
            .into_iter()
            .filter(|t| t.until > now)
            .map(|t| (t.tenant, t.cpu_weight))
            .collect();
        metrics::render(&snapshot).map_err(|e| ApiError::Failed(e.to_string()))
    }

    /// Where logs are kept.
    pub fn log_dir(&self) -> PathBuf {
        self.supervisor.log_dir().to_path_buf()
    }
}

fn elevation_error(error: ElevationError) -> ApiError {
    match error {
        ElevationError::Unknown(id) => ApiError::NotFound(format!("no elevation {id:?}")),
        ElevationError::State { .. } => ApiError::Conflict(error.to_string()),
        ElevationError::SelfDecision { .. } => ApiError::Forbidden(error.to_string()),
        other => ApiError::Failed(other.to_string()),
    }
}

fn summary(desired: Option<&Desired>, name: &str, tenant: &bulkhead_spec::Tenant) -> TenantSummary {
    TenantSummary {
        name: name.to_owned(),
        state: match tenant.spec.state {
            TenantState::Active => "active",
            TenantState::Suspended => "suspended",
        }
        .to_owned(),
        profile: serde_json::to_value(tenant.spec.profile)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        workloads: desired.map_or(0, |d| {
            d.workloads
                .values()
                .filter(|w| w.metadata.tenant.as_str() == name)
                .count()
        }),
    }
}

/// What a store-only change gives its caller.
type ChangeValue<T> = Result<T, ApiError>;

/// A store-only change for [`Daemon::group_commit`] or [`commit_alone`].
type Change<T> = Box<dyn FnOnce(&mut Store) -> (ChangeReport, ChangeValue<T>) + Send>;

/// The intent and change that create a token for `request`, after checking it.
fn token_create_change(
    actor: &str,
    request: &TokenRequest,
) -> Result<(AuditEntry, Change<CreatedTokenView>), ApiError> {
    if request.subject.trim().is_empty() {
        return Err(ApiError::BadRequest("expected a subject".to_owned()));
    }
    match (request.role.is_tenant_role(), &request.tenant) {
        (true, None) => {
            return Err(ApiError::BadRequest(format!(
                "role {} needs a tenant",
                request.role.as_str()
            )));
        }
        (false, Some(_)) => {
            return Err(ApiError::BadRequest(
                "platform-admin is not bound to a tenant (expected no tenant)".to_owned(),
            ));
        }
        _ => {}
    }
    let ttl = Duration::from_secs(request.ttl_seconds);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(ApiError::BadRequest(format!(
            "ttl of {} s is out of range (expected 1 s to {} days)",
            request.ttl_seconds,
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let expires_at = now_unix().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let entry = AuditEntry::intent(actor, "token.create", "platform/tokens").with_detail(format!(
        "subject {:?}, role {}, tenant {:?}, expires at unix {expires_at}",
        request.subject,
        request.role.as_str(),
        request.tenant
    ));
    let new = NewToken {
        subject: request.subject.clone(),
        role: request.role.as_str().to_owned(),
        tenant: request.tenant.clone(),
        expires_at,
    };
    let change: Change<CreatedTokenView> =
        Box::new(move |store: &mut Store| match store.create_token(&new) {
            Ok(created) => (
                ChangeReport::succeeded(Some(format!("token {}", created.info.id))),
                Ok(CreatedTokenView {
                    info: created.info.into(),
                    token: created.token,
                }),
            ),
            Err(e) => (
                ChangeReport::failed(e.to_string()),
                Err(ApiError::Failed(e.to_string())),
            ),
        });
    Ok((entry, change))
}

/// The intent and change that revoke token `info`.
fn token_revoke_change(
    actor: &str,
    info: &bulkhead_store::TokenInfo,
) -> (AuditEntry, Change<TokenView>) {
    let id = info.id.clone();
    let entry = AuditEntry::intent(actor, "token.revoke", format!("token/{id}"))
        .with_detail(format!("subject {:?}, role {}", info.subject, info.role));
    let change: Change<TokenView> = Box::new(move |store: &mut Store| {
        let report = match store.revoke_token(&id, now_unix()) {
            Ok(true) => ChangeReport::succeeded(None),
            Ok(false) => ChangeReport::succeeded(Some("already revoked".to_owned())),
            Err(e) => {
                return (
                    ChangeReport::failed(e.to_string()),
                    Err(ApiError::Failed(e.to_string())),
                );
            }
        };
        let after = match store.token(&id) {
            Ok(Some(info)) => Ok(info.into()),
            Ok(None) => Err(ApiError::NotFound(format!("no token {id:?}"))),
            Err(e) => Err(ApiError::Failed(e.to_string())),
        };
        (report, after)
    });
    (entry, change)
}

/// Creates a token for `request`, audited as `actor`: intent, row and outcome
/// in one transaction (the CLI without a daemon; the daemon group-commits).
pub fn create_token(
    store: &mut Store,
    actor: &str,
    request: &TokenRequest,
) -> Result<CreatedTokenView, ApiError> {
    let (entry, change) = token_create_change(actor, request)?;
    commit_alone(store, entry, change)?
}

/// Revokes a token, audited as `actor`: intent, change and outcome in one
/// transaction (the CLI without a daemon; the daemon group-commits).
pub fn revoke_token(store: &mut Store, actor: &str, id: &str) -> Result<TokenView, ApiError> {
    let info = store
        .token(id)
        .map_err(|e| ApiError::Failed(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no token {id:?}")))?;
    let (entry, change) = token_revoke_change(actor, &info);
    commit_alone(store, entry, change)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_separator_lines_and_skip_empty_ones() {
        let docs = documents("---\n# c\nkind: A\n---\n\n---\nkind: B\n  x: '---'\n");
        assert_eq!(docs, vec!["# c\nkind: A\n", "kind: B\n  x: '---'\n"]);
    }
}
