//! Host enforcement from the CLI: converge the host to a desired state, run commands
//! inside tenants, and the lifecycle verbs (suspend, resume, delete, rollback, gc).
//!
//! Every host action is written to the audit log (an intent) before it runs, and its
//! outcome after. Store actions (id ranges, wrapped keys) run here, host actions in
//! `bulkhead_node::host`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use bulkhead_node::confine::landlock::{LandlockMode, LandlockPaths, SYSTEM_READ_ONLY};
use bulkhead_node::confine::{ConfineOptions, Confinement};
use bulkhead_node::doctor::{self, Feature};
use bulkhead_node::host::{self, Action, Host, NetworkSeen, RUN_CGROUP, Secrets, TenantSeen};
use bulkhead_node::naming::Instance;
use bulkhead_node::net::shape::Caps;
use bulkhead_node::net::{dns, firewall};
use bulkhead_node::sandbox::{self, Sandbox};
use bulkhead_spec::{DegradableFeature, Desired, KeySource, Profile};
use bulkhead_store::{AuditEntry, AuditOutcome, MasterKey, Store};

use crate::context::Failure;
use crate::phases;

/// bulkhead's own failures in `run` (the command's exit code passes through otherwise).
pub const EXIT_RUN_FAILED: u8 = 125;

/// How many plan/execute rounds an apply may take. Round two exists because io limits
/// name the volume's block device, known only once the volume is attached.
const MAX_ROUNDS: usize = 3;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The platform master key, from where the platform file says.
pub fn master_key(desired: &Desired) -> Result<MasterKey, Failure> {
    match &desired.platform.spec.key_source {
        KeySource::File { file } => MasterKey::load_or_create(file)
            .with_context(|| format!("cannot load the master key from {file}"))
            .map_err(Failure::from),
        KeySource::Env { env } => MasterKey::from_env(env)
            .with_context(|| format!("cannot load the master key from ${env}"))
            .map_err(Failure::from),
    }
}

/// The master key, loaded (or created) only when an action needs it: converging an
/// instance with nothing to encrypt never touches the key file.
struct LazyMaster<'a> {
    desired: &'a Desired,
    key: Option<MasterKey>,
}

impl LazyMaster<'_> {
    fn get(&mut self) -> Result<&MasterKey, String> {
        if self.key.is_none() {
            let key = master_key(self.desired).map_err(|failure| match failure {
                Failure::Other(e) => format!("{e:#}"),
                Failure::Invalid(d) => d.to_string(),
            })?;
            self.key = Some(key);
        }
        self.key.as_ref().ok_or_else(|| "no master key".to_owned())
    }
}

struct StoreSecrets<'a, 'd> {
    store: &'a Store,
    master: &'a mut LazyMaster<'d>,
    desired: &'a Desired,
}

impl Secrets for StoreSecrets<'_, '_> {
    fn tenant_key(&mut self, tenant: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, String> {
        let master = self.master.get()?;
        self.store
            .unwrap_tenant_key(master, tenant)
            .map_err(|e| format!("cannot unwrap the tenant key: {e}"))
    }

    fn address(&mut self, tenant: &str) -> Result<std::net::Ipv4Addr, String> {
        match self.store.tenant_address(tenant) {
            Ok(Some(address)) => Ok(address),
            Ok(None) => Err("no address allocated".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn resolver_zone(&mut self) -> Result<Option<dns::Zone>, String> {
        expected_zone(self.desired, self.store).map_err(|e| format!("{e:#}"))
    }

    fn id_base(&mut self, tenant: &str) -> Result<u32, String> {
        match self.store.id_range(tenant) {
            Ok(Some(range)) => Ok(range.first),
            Ok(None) => Err("no id range allocated".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Refuses, naming the feature and pointing at `bulkhead doctor`, when the host lacks
/// what the desired tenants need and the platform did not opt into running without it.
pub fn require_host_features(desired: &Desired, report: &doctor::Report) -> Result<(), Failure> {
    let allowed = &desired.platform.spec.allow_degraded;
    let mut required: Vec<Feature> = vec![
        Feature::Cgroups,
        Feature::CpuController,
        Feature::MemoryController,
        Feature::PidsController,
        Feature::UserNamespaces,
        Feature::LoopDevices,
        Feature::Ext4Tools,
    ];
    let confined = desired
        .tenants
        .values()
        .any(|t| t.spec.profile != Profile::Privileged);
    if confined {
        required.push(Feature::Seccomp);
        if !allowed.contains(&DegradableFeature::Landlock) {
            required.push(Feature::Landlock);
        }
    }
    let encrypted = desired.tenants.values().any(|t| t.spec.storage.encrypted);
    if encrypted && !allowed.contains(&DegradableFeature::Encryption) {
        required.push(Feature::Ext4Encryption);
    }
    let missing: Vec<&str> = required
        .iter()
        .filter(|feature| {
            report
                .feature(**feature)
                .is_none_or(|check| check.status == doctor::Status::Missing)
        })
        .map(|feature| feature.title())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::Other(anyhow::anyhow!(
            "this host lacks {} (see `bulkhead doctor`); refusing rather than isolating tenants less than their spec says{}",
            missing.join(", "),
            " — a platform may accept running without landlock or encryption with spec.allowDegraded"
        )))
    }
}

/// The isolation features the platform accepted running without (`spec.allowDegraded`)
/// that this host indeed lacks: each weakens every tenant, so it is audited and shown.
pub fn degraded(desired: &Desired) -> Vec<(DegradableFeature, &'static str)> {
    degraded_on(desired, &doctor::run_system())
}

/// [`degraded`] against a report already read.
fn degraded_on(
    desired: &Desired,
    report: &doctor::Report,
) -> Vec<(DegradableFeature, &'static str)> {
    let missing = |feature: Feature| {
        report
            .feature(feature)
            .is_none_or(|check| check.status == doctor::Status::Missing)
    };
    desired
        .platform
        .spec
        .allow_degraded
        .iter()
        .filter_map(|wanted| {
            let (feature, effect) = match wanted {
                DegradableFeature::Landlock => (
                    Feature::Landlock,
                    "sandboxes run without Landlock: file access rests on mounts alone",
                ),
                DegradableFeature::Encryption => {
                    (Feature::Ext4Encryption, "volumes are NOT encrypted")
                }
                DegradableFeature::IoLimits => (Feature::IoController, "no io limits are enforced"),
                DegradableFeature::Cpuset => (Feature::CpusetController, "no cpusets are enforced"),
            };
            missing(feature).then_some((*wanted, effect))
        })
        .collect()
}

/// What the host and the store show of every tenant this instance knows.
fn observe(
    host: &Host,
    store: &Store,
    desired: &Desired,
) -> Result<BTreeMap<String, TenantSeen>, Failure> {
    let names = desired.tenants.keys().map(ToString::to_string).chain(
        store
            .id_ranges()
            .context("cannot read id ranges")?
            .into_iter()
            .filter(|r| r.released_at.is_none())
            .map(|r| r.tenant),
    );
    let mut seen = host::observe_all(host, names).context("cannot observe the host")?;
    let addresses = store
        .tenant_addresses()
        .context("cannot read tenant addresses")?;
    for (tenant, state) in &mut seen {
        state.ids_allocated = store
            .id_range(tenant)
            .context("cannot read id ranges")?
            .is_some();
        state.key_stored = store
            .tenant_key_info(tenant)
            .context("cannot read tenant keys")?
            .is_some();
        let address = addresses.get(tenant).copied();
        state.address_allocated = address.is_some();
        let caps = desired
            .tenants
            .iter()
            .find(|(name, _)| name.as_str() == tenant)
            .map(|(_, t)| Caps::of(&t.spec.quota))
            .unwrap_or_default();
        (state.wired, state.link_exists, state.shaped) = host.observe_link(tenant, address, &caps);
    }
    // Tracked connections matter only for tenants whose network is being cut: suspended
    // or offboarded ones. One dump of the conntrack table serves them all.
    let cut: BTreeMap<std::net::Ipv4Addr, String> = seen
        .keys()
        .filter(|tenant| {
            desired
                .tenants
                .iter()
                .find(|(name, _)| name.as_str() == tenant.as_str())
                .is_none_or(|(_, t)| t.spec.state == bulkhead_spec::TenantState::Suspended)
        })
        .filter_map(|tenant| Some((*addresses.get(tenant)?, tenant.clone())))
        .collect();
    if !cut.is_empty() {
        let counts = bulkhead_node::net::conntrack::count(&cut.keys().copied().collect())
            .context("cannot read the conntrack table")?;
        for (address, tenant) in &cut {
            if let Some(state) = seen.get_mut(tenant) {
                state.connections = counts.get(address).copied().unwrap_or(0);
            }
        }
    }
    Ok(seen)
}

/// The firewall as the policy engine compiles it for `desired`, with the stored
/// addresses; `None` while a desired tenant has no address yet.
fn expected_firewall(
    instance: &Instance,
    desired: &Desired,
    store: &Store,
) -> anyhow::Result<Option<firewall::Ruleset>> {
    let addresses = store.tenant_addresses()?;
    let wanted: BTreeMap<String, std::net::Ipv4Addr> = addresses
        .into_iter()
        .filter(|(tenant, _)| desired.tenants.keys().any(|n| n.as_str() == tenant))
        .collect();
    if wanted.len() < desired.tenants.len() {
        return Ok(None);
    }
    Ok(Some(firewall::compile(instance, desired, &wanted)?))
}

/// The resolver's zone for `desired` with the stored addresses; `None` when the
/// platform names another resolver, or a desired tenant has no address yet.
fn expected_zone(desired: &Desired, store: &Store) -> anyhow::Result<Option<dns::Zone>> {
    let addresses = store.tenant_addresses()?;
    let wanted: BTreeMap<String, std::net::Ipv4Addr> = addresses
        .into_iter()
        .filter(|(tenant, _)| desired.tenants.keys().any(|n| n.as_str() == tenant))
        .collect();
    if wanted.len() < desired.tenants.len() || desired.tenants.is_empty() {
        return Ok(None);
    }
    Ok(dns::compile(desired, &wanted)?)
}

fn observe_network(
    host: &Host,
    instance: &Instance,
    desired: &Desired,
    store: &Store,
) -> NetworkSeen {
    let (bridge_ready, bridge_exists) = host.observe_bridge();
    let state = firewall::observe(instance).ok();
    let tables = state.as_ref().is_some_and(|s| s.inet || s.bridge);
    let expected = expected_firewall(instance, desired, store).ok().flatten();
    let firewall_in_sync = match (&expected, &state) {
        (Some(expected), Some(state)) => state.drift(expected).is_empty(),
        _ => false,
    };
    let firewall_load = match &state {
        Some(state) => firewall::how(
            expected.as_ref(),
            state,
            firewall::LoadRecord::read(instance).as_ref(),
        ),
        None => firewall::Load::Full {
            reason: "the loaded tables do not read".to_owned(),
        },
    };
    let resolver = dns::observe(instance);
    let resolver_in_sync = match expected_zone(desired, store) {
        Ok(Some(zone)) => resolver.serves(&zone),
        // Another resolver, or addresses still to allocate (the next round sees them).
        Ok(None) => !resolver.is_running() && dns::served_on_bridge(&desired.platform).is_none(),
        Err(_) => false,
    };
    NetworkSeen {
        bridge_ready,
        anything: bridge_exists || tables,
        firewall_in_sync,
        resolver_running: resolver.is_running(),
        resolver_in_sync,
        firewall_load,
    }
}

fn targets(
    host: &Host,
    desired: &Desired,
    degraded: &[DegradableFeature],
) -> Result<Vec<host::TenantTarget>, Failure> {
    desired
        .tenants
        .iter()
        .map(|(name, tenant)| {
            let workloads: Vec<_> = desired.workloads_of(name).collect();
            let mut tenant = tenant.clone();
            if degraded.contains(&DegradableFeature::Encryption) {
                tenant.spec.storage.encrypted = false;
            }
            if degraded.contains(&DegradableFeature::IoLimits) {
                tenant.spec.quota.io = bulkhead_spec::IoLimits::default();
            }
            if degraded.contains(&DegradableFeature::Cpuset) {
                tenant.spec.quota.cpuset = None;
            }
            let device = host.io_device(name.as_str());
            Host::target(&tenant, &workloads, device).context("cannot compute the tenant's limits")
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(Failure::from)
}

/// The host actions an apply would take now (for `plan`).
pub fn preview(instance: &Instance, desired: &Desired) -> Result<Vec<Action>, Failure> {
    let host = host_for(instance, desired)?;
    let (seen, network) = match crate::context::existing_store(instance)? {
        Some(store) => (
            observe(&host, &store, desired)?,
            observe_network(&host, instance, desired, &store),
        ),
        None => (
            host::observe_all(&host, desired.tenants.keys().map(ToString::to_string))
                .context("cannot observe the host")?,
            NetworkSeen::default(),
        ),
    };
    let degraded: Vec<DegradableFeature> = degraded(desired).into_iter().map(|(f, _)| f).collect();
    Ok(host::plan(
        &targets(&host, desired, &degraded)?,
        &seen,
        &network,
    ))
}

fn host_for(instance: &Instance, desired: &Desired) -> Result<Host, Failure> {
    let network = &desired.platform.spec.network;
    Ok(Host::new(instance.clone())
        .context("cannot read the host's cgroups")?
        .with_network(network.tenant_range)
        .with_nameserver(bulkhead_policy::tenancy::resolver_address(
            &desired.platform,
        )))
}

/// `desired` with the elevations approved through the control plane and the
/// noisy-neighbour tightenings in force now (both kept in the store), so that every
/// converge — `apply`, `gc`, the daemon's reconciler — enforces the same effective
/// state, and one that runs after a grant's expiry takes the host back. A grant that
/// no longer validates is left out (the revision, stricter, holds) with a warning.
/// Borrowed as it is when nothing is in force (the common case: no copy).
pub fn effective<'a>(
    desired: &'a Desired,
    store: &Store,
) -> Result<std::borrow::Cow<'a, Desired>, Failure> {
    let now = bulkhead_daemon::daemon::now_unix();
    let grants = store
        .active_elevations(now)
        .context("cannot read the active elevations")?;
    let tightenings: Vec<_> = store
        .tightenings()
        .context("cannot read the tightenings")?
        .into_iter()
        .filter(|t| t.until > now)
        .collect();
    if grants.is_empty() && tightenings.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(desired));
    }
    let (effective, skipped) = bulkhead_daemon::elevate::overlay(desired, &grants, &tightenings);
    for s in skipped {
        eprintln!("warning: {} is not applied: {}", s.id, s.why);
    }
    Ok(std::borrow::Cow::Owned(effective))
}

/// Converges the host to `desired`, auditing every action. `fail_after` stops the
/// process after that many actions, as a crash would (for crash-recovery tests).
pub fn converge(
    instance: &Instance,
    desired: &Desired,
    store: &mut Store,
    actor: &str,
    fail_after: Option<usize>,
) -> Result<Vec<String>, Failure> {
    converge_by_tenant(instance, desired, store, actor, fail_after)
        .map(|done| done.into_iter().map(|(_, action)| action).collect())
}

/// [`converge`], each action with the tenant it was about ("" for instance-wide ones).
pub fn converge_by_tenant(
    instance: &Instance,
    desired: &Desired,
    store: &mut Store,
    actor: &str,
    fail_after: Option<usize>,
) -> Result<Vec<(String, String)>, Failure> {
    if !is_root() {
        return Err(Failure::Other(anyhow::anyhow!(
            "host enforcement needs root (expected to run as root; `apply --record-only` records the revision without touching the host)"
        )));
    }
    let effective = effective(desired, store)?;
    let desired: &Desired = &effective;
    let report = doctor::run_system();
    require_host_features(desired, &report)?;
    let mut master = LazyMaster { desired, key: None };
    let host = host_for(instance, desired)?;
    let mut done = Vec::new();
    let weakened = degraded_on(desired, &report);
    for (feature, effect) in &weakened {
        let object = format!("platform/{}", desired.platform.metadata.name);
        let entry = AuditEntry::new(actor, "degrade", object, "accepted").with_detail(
            format!("host lacks {feature:?}: {effect} (spec.allowDegraded)").to_lowercase(),
        );
        store
            .append_audit(&entry)
            .context("cannot write the audit log")?;
        eprintln!(
            "warning: {effect} — this host lacks {feature:?}, accepted by spec.allowDegraded"
        );
    }
    let degraded: Vec<DegradableFeature> = weakened.into_iter().map(|(f, _)| f).collect();
    phases::mark("converge-setup");
    for _ in 0..MAX_ROUNDS {
        let seen = observe(&host, store, desired)?;
        let network = observe_network(&host, instance, desired, store);
        let actions = host::plan(&targets(&host, desired, &degraded)?, &seen, &network);
        phases::mark("observe-and-plan");
        if actions.is_empty() {
            return Ok(done);
        }
        for action in actions {
            let object = format!("tenant/{}", action.tenant());
            let intent = store
                .audit_intent(
                    AuditEntry::intent(actor, action.verb(), &object)
                        .with_detail(action.to_string()),
                )
                .context("cannot write the audit log")?;
            let result = execute(&host, instance, desired, store, &mut master, &action);
            let (outcome, detail) = match &result {
                Ok(Some(done)) => (AuditOutcome::Succeeded, Some(done.to_string())),
                Ok(None) => (AuditOutcome::Succeeded, None),
                Err(error) => (AuditOutcome::Failed, Some(format!("{error:#}"))),
            };
            store
                .audit_outcome(&intent, outcome, detail.as_deref())
                .context("cannot write the audit log")?;
            let executed = result.with_context(|| format!("{action} failed"))?;
            let action = executed.unwrap_or(action);
            done.push((action.tenant().to_owned(), action.to_string()));
            if fail_after == Some(done.len()) {
                eprintln!(
                    "error: injected failure after action {} ({action})",
                    done.len()
                );
                std::process::exit(i32::from(crate::context::EXIT_FAILED));
            }
        }
        phases::mark("execute-round");
    }
    let seen = observe(&host, store, desired)?;
    let network = observe_network(&host, instance, desired, store);
    let left = host::plan(&targets(&host, desired, &degraded)?, &seen, &network);
    if left.is_empty() {
        Ok(done)
    } else {
        Err(Failure::Other(anyhow::anyhow!(
            "the host did not converge after {MAX_ROUNDS} rounds; still to do: {}",
            left.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }
}

/// Runs one action; the action as it was done when that differs from the plan (the
/// firewall load decides between elements and a full replacement when it runs).
fn execute(
    host: &Host,
    instance: &Instance,
    desired: &Desired,
    store: &mut Store,
    master: &mut LazyMaster<'_>,
    action: &Action,
) -> anyhow::Result<Option<Action>> {
    let tenant = action.tenant();
    match action {
        Action::AllocateAddress { .. } => {
            let ipnet::IpNet::V4(range) = desired.platform.spec.network.tenant_range else {
                anyhow::bail!("the tenant range is not IPv4");
            };
            let taken = store.tenant_addresses()?.into_values().collect();
            let address = bulkhead_node::net::allocate(range, &taken)
                .ok_or_else(|| anyhow::anyhow!("no free address left in {range}"))?;
            store.assign_tenant_address(tenant, address)?;
        }
        Action::ReleaseAddress { .. } => {
            store.release_tenant_address(tenant)?;
        }
        Action::ApplyFirewall { .. } => {
            let ruleset = expected_firewall(instance, desired, store)?
                .ok_or_else(|| anyhow::anyhow!("a tenant has no address yet"))?;
            for deviation in &ruleset.deviations {
                eprintln!("note: {deviation}");
            }
            if let Some(max) = bulkhead_node::net::conntrack::table_max()
                && let Some(warning) = bulkhead_node::net::conntrack::overcommit(
                    desired.tenants.len() as u64,
                    u64::from(ruleset.connections_per_tenant),
                    max,
                )
            {
                eprintln!("note: {warning}");
            }
            let load = firewall::load(instance, &ruleset)?;
            return Ok(Some(Action::ApplyFirewall { load }));
        }
        Action::AllocateIds { .. } => {
            store.allocate_id_range(tenant)?;
        }
        Action::CreateKey { .. } => {
            let master = master.get().map_err(|e| anyhow::anyhow!(e))?;
            store.create_tenant_key(master, tenant)?;
        }
        Action::DestroyKey { .. } => {
            store.destroy_tenant_key(tenant)?;
        }
        Action::ReleaseIds { .. } => {
            store.release_id_range(tenant)?;
        }
        _ => {
            let mut secrets = StoreSecrets {
                store,
                master,
                desired,
            };
            host.execute(action, &mut secrets)?;
        }
    }
    Ok(None)
}

/// What `bulkhead run` needs to know.
pub struct RunRequest<'a> {
    /// The desired state the tenant is in.
    pub desired: &'a Desired,
    /// The tenant.
    pub tenant: &'a str,
    /// A declared workload: its cgroup, and its command and environment when none given.
    pub workload: Option<&'a str>,
    /// Program and arguments.
    pub command: &'a [String],
}

/// Runs a command inside a tenant's sandbox, stdio attached; returns its exit code.
pub fn run(instance: &Instance, request: &RunRequest<'_>) -> Result<i32, Failure> {
    let (sandbox, command, program) = prepare(instance, request)?;
    let code = sandbox
        .run(command)
        .with_context(|| format!("cannot run {program:?} in tenant {:?}", request.tenant))
        .map_err(Failure::from);
    phases::mark("run-and-wait");
    code
}

/// Starts a command inside a tenant's sandbox with stdout and stderr piped and
/// stdin closed (for the daemon's supervisor and exec).
pub fn spawn(
    instance: &Instance,
    request: &RunRequest<'_>,
) -> Result<bulkhead_node::sandbox::Process, Failure> {
    let (sandbox, mut command, program) = prepare(instance, request)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    sandbox
        .spawn(command)
        .with_context(|| format!("cannot start {program:?} in tenant {:?}", request.tenant))
        .map_err(Failure::from)
}

/// The sandbox, the confined command and its program name for a run request.
fn prepare(
    instance: &Instance,
    request: &RunRequest<'_>,
) -> Result<(Sandbox, sandbox::Command, String), Failure> {
    let desired = request.desired;
    let tenant = desired
        .tenants
        .iter()
        .find(|(name, _)| name.as_str() == request.tenant)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no tenant named {:?} (expected one of: {})",
                request.tenant,
                desired
                    .tenants
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let workload = match request.workload {
        Some(name) => Some(
            desired
                .workloads_of(&tenant.metadata.name)
                .find(|w| w.metadata.name.as_str() == name)
                .ok_or_else(|| {
                    anyhow::anyhow!("tenant {:?} has no workload {name:?}", request.tenant)
                })?,
        ),
        None => None,
    };
    let mut argv: Vec<String> = request.command.to_vec();
    if argv.is_empty() {
        argv = workload.map(|w| w.spec.command.clone()).ok_or_else(|| {
            anyhow::anyhow!("nothing to run (expected `-- COMMAND…` or --workload NAME)")
        })?;
    }
    phases::mark("find-tenant");
    let sandbox = Sandbox::open(instance, request.tenant).map_err(|e| {
        anyhow::anyhow!(
            "tenant {:?} is not running ({e}); expected `bulkhead apply` first",
            request.tenant
        )
    })?;
    phases::mark("open-sandbox");
    let host = Host::new(instance.clone()).context("cannot read the host's cgroups")?;
    phases::mark("detect-cgroups");
    let leaf = match workload {
        Some(w) => w.metadata.name.to_string(),
        None => {
            host.ensure_leaf(request.tenant, RUN_CGROUP)
                .context("cannot create the run cgroup")?;
            RUN_CGROUP.to_owned()
        }
    };
    phases::mark("run-cgroup");
    let inside = |paths: &[&str]| -> Vec<PathBuf> {
        paths
            .iter()
            .map(|p| sandbox.host_path(p))
            .filter(|p| p.exists())
            .collect()
    };
    let mut read_only = inside(SYSTEM_READ_ONLY);
    read_only.extend(inside(&["/etc", "/proc"]));
    let writable = inside(&[
        sandbox::VOLUME_PATH,
        "/tmp",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
    ]);
    let landlock_mode = if desired
        .platform
        .spec
        .allow_degraded
        .contains(&DegradableFeature::Landlock)
    {
        LandlockMode::BestEffort
    } else {
        LandlockMode::Required
    };
    let options = ConfineOptions {
        paths: LandlockPaths {
            read_only,
            writable,
        },
        landlock_mode,
        rlimits: bulkhead_node::confine::rlimit::Rlimits { nofile: Some(4096) },
    };
    phases::mark("landlock-paths");
    let confinement = std::sync::Arc::new(
        Confinement::prepare(tenant.spec.profile, &options)
            .context("cannot prepare the tenant's confinement")?,
    );
    for gap in confinement.not_enforced() {
        eprintln!(
            "warning: landlock does not enforce {gap} on this kernel (accepted by spec.allowDegraded)"
        );
    }
    phases::mark("prepare-confinement");
    let mut command = sandbox::Command::new(&argv[0]);
    command.args(&argv[1..]);
    if let Some(w) = workload {
        for (key, value) in &w.spec.env {
            command.env(key, value);
        }
    }
    let data_inside = sandbox.host_path(sandbox::VOLUME_PATH);
    let cwd = workload
        .and_then(|w| w.spec.workdir.clone())
        .unwrap_or_else(|| {
            if data_inside.is_dir() {
                sandbox::VOLUME_PATH.to_owned()
            } else {
                "/tmp".to_owned()
            }
        });
    command.current_dir(cwd);
    for procs in host.procs_files(request.tenant, &leaf) {
        command.join_cgroup(procs);
    }
    let hook = std::sync::Arc::clone(&confinement);
    command.pre_exec(move || hook.apply().map_err(Into::into));
    phases::mark("build-command");
    Ok((sandbox, command, argv[0].clone()))
}
