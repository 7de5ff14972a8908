//! `plan(desired, observed) -> Vec<Action>`: pure, shown to users before anything
//! changes, and converging: executing a plan and planning again yields nothing.
//!
//! Order per tenant, onboarding: allocate ids → create key → volume (create, mount,
//! unlock) → cgroups (tenant, then each workload) → sandbox. Suspension freezes the
//! tenant's cgroup and, when asked, evicts the volume key; resuming does the reverse.
//! Offboarding (a tenant present on the host but no longer desired) runs the reverse:
//! stop sandbox → kill and remove cgroups → lock and destroy the volume → destroy the
//! wrapped key (crypto-shred) → release the id range.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::cgroup::Limits;

/// What one tenant should be, as the host backend needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantTarget {
    /// Tenant name.
    pub name: String,
    /// Limits of the tenant cgroup.
    pub limits: Limits,
    /// Limits of each workload's cgroup, by workload name.
    pub workloads: BTreeMap<String, Limits>,
    /// Volume size in bytes.
    pub volume_size: u64,
    /// Whether the volume is encrypted with the tenant's own key.
    pub encrypted: bool,
    /// Whether the tenant is suspended (frozen).
    pub suspended: bool,
    /// Whether a suspended tenant's key must leave the kernel.
    pub evict_key_when_suspended: bool,
    /// Bandwidth caps on the tenant's link.
    pub caps: crate::net::shape::Caps,
}

/// What the host shows of one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantSeen {
    /// The store holds an id range for it.
    pub ids_allocated: bool,
    /// The store holds a wrapped key for it.
    pub key_stored: bool,
    /// The volume image exists.
    pub volume_exists: bool,
    /// Its size, if it exists.
    pub volume_size: Option<u64>,
    /// The volume is mounted at its mount point.
    pub volume_mounted: bool,
    /// The tenant's key is in the kernel (or the volume is unencrypted and mounted).
    pub volume_unlocked: bool,
    /// The tenant cgroup's limits, when it exists.
    #[serde(skip)]
    pub limits: Option<Limits>,
    /// Each workload cgroup's limits.
    #[serde(skip)]
    pub workloads: BTreeMap<String, Limits>,
    /// The tenant cgroup is frozen.
    pub frozen: bool,
    /// The sandbox holder runs.
    pub sandbox_running: bool,
    /// A dead holder left a record, a netns entry or a root directory behind.
    pub sandbox_leftovers: bool,
    /// The store holds an address for it.
    pub address_allocated: bool,
    /// Its veth is in place: host end on the bridge, `eth0` inside with its address.
    pub wired: bool,
    /// Any part of its link exists (host end, shaping device).
    pub link_exists: bool,
    /// The bandwidth caps in force equal the desired ones.
    pub shaped: bool,
    /// Connections the host's conntrack table tracks from or to its address (read
    /// only for tenants that are suspended or offboarded; 0 otherwise).
    pub connections: usize,
}

/// What the host shows of the instance's shared network objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkSeen {
    /// The bridge exists, is up and has its address.
    pub bridge_ready: bool,
    /// The bridge (or the firewall tables) exist at all.
    pub anything: bool,
    /// The firewall tables match what the policy engine compiles for the desired state.
    pub firewall_in_sync: bool,
    /// The instance's DNS resolver runs.
    pub resolver_running: bool,
    /// The resolver runs on the zone the desired state compiles to (or does not run
    /// when the platform names another resolver).
    pub resolver_in_sync: bool,
    /// How loading the firewall would go: set elements only when the loaded rules
    /// verify against the last full load, else a full replacement.
    pub firewall_load: crate::net::firewall::Load,
}

/// One idempotent step. Store steps (ids, keys) run in the caller, host steps in
/// [`super::Executor`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Reserve the tenant's host uid/gid range in the store.
    AllocateIds {
        /// Tenant.
        tenant: String,
    },
    /// Reserve the tenant's address in the platform's tenant range.
    AllocateAddress {
        /// Tenant.
        tenant: String,
    },
    /// Create the instance bridge with the range's first address.
    EnsureBridge,
    /// Wire the tenant: veth to the bridge, `eth0` with its address, default route.
    WireTenant {
        /// Tenant.
        tenant: String,
    },
    /// Bring the tenant's bandwidth caps to the desired ones.
    ShapeTenant {
        /// Tenant.
        tenant: String,
        /// The caps.
        #[serde(skip)]
        caps: crate::net::shape::Caps,
        /// Human summary.
        summary: String,
    },
    /// Load the firewall compiled from the policy engine (atomic; element-only when it can).
    ApplyFirewall {
        /// Set elements only, or the whole tables (and why).
        load: crate::net::firewall::Load,
    },
    /// Delete the conntrack entries from or to the tenant's address, so that its
    /// established connections meet the firewall's default deny (suspension,
    /// offboarding).
    CutConnections {
        /// Tenant.
        tenant: String,
        /// How many were tracked when observed.
        connections: usize,
    },
    /// Remove the tenant's veth and shaping device.
    UnwireTenant {
        /// Tenant.
        tenant: String,
    },
    /// Free the tenant's address.
    ReleaseAddress {
        /// Tenant.
        tenant: String,
    },
    /// Remove the instance bridge and firewall tables (no tenant left).
    RemoveNetwork,
    /// (Re)start the instance's DNS resolver on the zone compiled from the policy
    /// engine (each tenant resolves only what it may reach); stop it when the platform
    /// names another resolver.
    StartResolver,
    /// Stop the instance's DNS resolver (no tenant left).
    StopResolver,
    /// Create and store the tenant's wrapped volume key.
    CreateKey {
        /// Tenant.
        tenant: String,
    },
    /// Create (or grow) the image, format it, attach and mount it.
    PrepareVolume {
        /// Tenant.
        tenant: String,
        /// Size in bytes.
        size: u64,
        /// Encrypted.
        encrypted: bool,
    },
    /// Put the tenant's key into the kernel.
    UnlockVolume {
        /// Tenant.
        tenant: String,
    },
    /// Remove the tenant's key from the kernel.
    LockVolume {
        /// Tenant.
        tenant: String,
    },
    /// Create the tenant cgroup or bring its limits to the desired ones.
    SetTenantLimits {
        /// Tenant.
        tenant: String,
        /// Limits.
        #[serde(skip)]
        limits: Limits,
        /// Human summary of the limits.
        summary: String,
    },
    /// Create a workload cgroup or bring its limits to the desired ones.
    SetWorkloadLimits {
        /// Tenant.
        tenant: String,
        /// Workload.
        workload: String,
        /// Limits.
        #[serde(skip)]
        limits: Limits,
        /// Human summary.
        summary: String,
    },
    /// Kill what runs in a workload cgroup that is no longer declared and remove it.
    RemoveWorkloadCgroup {
        /// Tenant.
        tenant: String,
        /// Workload.
        workload: String,
    },
    /// Start the tenant's namespace holder.
    StartSandbox {
        /// Tenant.
        tenant: String,
    },
    /// Stop the holder (everything in the tenant's pid namespace dies) and clean up.
    StopSandbox {
        /// Tenant.
        tenant: String,
    },
    /// Freeze every process of the tenant.
    Freeze {
        /// Tenant.
        tenant: String,
    },
    /// Thaw the tenant.
    Thaw {
        /// Tenant.
        tenant: String,
    },
    /// Kill every process in the tenant's cgroups and remove them.
    RemoveCgroups {
        /// Tenant.
        tenant: String,
    },
    /// Lock, unmount, detach and delete the volume image.
    DestroyVolume {
        /// Tenant.
        tenant: String,
    },
    /// Delete the wrapped key from the store: crypto-shredding.
    DestroyKey {
        /// Tenant.
        tenant: String,
    },
    /// Release the id range once no data owned by it remains.
    ReleaseIds {
        /// Tenant.
        tenant: String,
    },
}

impl Action {
    /// The tenant the action is about; empty for instance-wide actions.
    pub fn tenant(&self) -> &str {
        match self {
            Action::EnsureBridge
            | Action::ApplyFirewall { .. }
            | Action::RemoveNetwork
            | Action::StartResolver
            | Action::StopResolver => "",
            Action::AllocateAddress { tenant }
            | Action::WireTenant { tenant }
            | Action::ShapeTenant { tenant, .. }
            | Action::UnwireTenant { tenant }
            | Action::CutConnections { tenant, .. }
            | Action::ReleaseAddress { tenant } => tenant,
            Action::AllocateIds { tenant }
            | Action::CreateKey { tenant }
            | Action::PrepareVolume { tenant, .. }
            | Action::UnlockVolume { tenant }
            | Action::LockVolume { tenant }
            | Action::SetTenantLimits { tenant, .. }
            | Action::SetWorkloadLimits { tenant, .. }
            | Action::RemoveWorkloadCgroup { tenant, .. }
            | Action::StartSandbox { tenant }
            | Action::StopSandbox { tenant }
            | Action::Freeze { tenant }
            | Action::Thaw { tenant }
            | Action::RemoveCgroups { tenant }
            | Action::DestroyVolume { tenant }
            | Action::DestroyKey { tenant }
            | Action::ReleaseIds { tenant } => tenant,
        }
    }

    /// A short verb for the audit log.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::AllocateAddress { .. } => "allocate-address",
            Action::EnsureBridge => "ensure-bridge",
            Action::WireTenant { .. } => "wire-tenant",
            Action::ShapeTenant { .. } => "shape-tenant",
            Action::ApplyFirewall { .. } => "apply-firewall",
            Action::UnwireTenant { .. } => "unwire-tenant",
            Action::CutConnections { .. } => "cut-connections",
            Action::ReleaseAddress { .. } => "release-address",
            Action::RemoveNetwork => "remove-network",
            Action::StartResolver => "start-resolver",
            Action::StopResolver => "stop-resolver",
            Action::AllocateIds { .. } => "allocate-ids",
            Action::CreateKey { .. } => "create-key",
            Action::PrepareVolume { .. } => "prepare-volume",
            Action::UnlockVolume { .. } => "unlock-volume",
            Action::LockVolume { .. } => "lock-volume",
            Action::SetTenantLimits { .. } => "set-tenant-limits",
            Action::SetWorkloadLimits { .. } => "set-workload-limits",
            Action::RemoveWorkloadCgroup { .. } => "remove-workload-cgroup",
            Action::StartSandbox { .. } => "start-sandbox",
            Action::StopSandbox { .. } => "stop-sandbox",
            Action::Freeze { .. } => "freeze",
            Action::Thaw { .. } => "thaw",
            Action::RemoveCgroups { .. } => "remove-cgroups",
            Action::DestroyVolume { .. } => "destroy-volume",
            Action::DestroyKey { .. } => "destroy-key",
            Action::ReleaseIds { .. } => "release-ids",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AllocateAddress { tenant } => write!(f, "allocate an address for {tenant}"),
            Action::EnsureBridge => write!(f, "create the instance bridge"),
            Action::WireTenant { tenant } => write!(
                f,
                "wire {tenant}: veth to the bridge, its address, default route"
            ),
            Action::ShapeTenant {
                tenant, summary, ..
            } => write!(f, "cap {tenant}'s bandwidth: {summary}"),
            Action::ApplyFirewall { load } => write!(
                f,
                "load the default-deny firewall compiled from the policy engine: {load}"
            ),
            Action::UnwireTenant { tenant } => write!(f, "remove {tenant}'s network link"),
            Action::CutConnections {
                tenant,
                connections,
            } => write!(
                f,
                "cut {tenant}'s {connections} tracked connection(s) (conntrack entries from or to its address)"
            ),
            Action::ReleaseAddress { tenant } => write!(f, "release {tenant}'s address"),
            Action::RemoveNetwork => write!(f, "remove the instance bridge and firewall"),
            Action::StartResolver => write!(
                f,
                "(re)start the DNS resolver on the bridge with each tenant's view of the names"
            ),
            Action::StopResolver => write!(f, "stop the DNS resolver"),
            Action::AllocateIds { tenant } => write!(f, "allocate a host id range for {tenant}"),
            Action::CreateKey { tenant } => write!(
                f,
                "create {tenant}'s volume key (wrapped by the master key)"
            ),
            Action::PrepareVolume {
                tenant,
                size,
                encrypted,
            } => write!(
                f,
                "prepare {tenant}'s volume: {} ext4{}, loop-mounted nosuid,nodev",
                bulkhead_spec::Bytes::new(*size),
                if *encrypted {
                    " with fscrypt v2"
                } else {
                    ", NOT encrypted"
                }
            ),
            Action::UnlockVolume { tenant } => {
                write!(f, "unlock {tenant}'s volume (key into the kernel)")
            }
            Action::LockVolume { tenant } => {
                write!(f, "lock {tenant}'s volume (key out of the kernel)")
            }
            Action::SetTenantLimits {
                tenant, summary, ..
            } => write!(f, "set {tenant}'s cgroup limits: {summary}"),
            Action::SetWorkloadLimits {
                tenant,
                workload,
                summary,
                ..
            } => write!(f, "set {tenant}/{workload}'s cgroup limits: {summary}"),
            Action::RemoveWorkloadCgroup { tenant, workload } => {
                write!(
                    f,
                    "remove the cgroup of {tenant}/{workload} (no longer declared)"
                )
            }
            Action::StartSandbox { tenant } => {
                write!(
                    f,
                    "start {tenant}'s sandbox (user, pid, mount, ipc, uts, net, cgroup namespaces)"
                )
            }
            Action::StopSandbox { tenant } => write!(f, "stop {tenant}'s sandbox"),
            Action::Freeze { tenant } => write!(f, "freeze every process of {tenant}"),
            Action::Thaw { tenant } => write!(f, "thaw {tenant}"),
            Action::RemoveCgroups { tenant } => {
                write!(f, "kill {tenant}'s processes and remove its cgroups")
            }
            Action::DestroyVolume { tenant } => write!(f, "destroy {tenant}'s volume image"),
            Action::DestroyKey { tenant } => {
                write!(f, "destroy {tenant}'s wrapped key (crypto-shred)")
            }
            Action::ReleaseIds { tenant } => write!(f, "release {tenant}'s host id range"),
        }
    }
}

/// A readable summary of limits for plans.
pub fn summarize(limits: &Limits) -> String {
    let mut parts = vec![format!("weight {}", limits.cpu_weight)];
    if let Some(cpu) = &limits.cpu_max {
        parts.push(format!("cpu {}us/{}us", cpu.quota_us, cpu.period_us));
    }
    if let Some(memory) = limits.memory_max {
        parts.push(format!("memory {}", bulkhead_spec::Bytes::new(memory)));
    }
    if let Some(pids) = limits.pids_max {
        parts.push(format!("pids {pids}"));
    }
    if !limits.io.is_empty() {
        parts.push(format!("io limits on {} device(s)", limits.io.len()));
    }
    if let Some(cpuset) = &limits.cpuset {
        parts.push(format!("cpuset {:?}", cpuset.cpus));
    }
    parts.join(", ")
}

/// Compares desired tenants with what the host shows and lists the actions, tenants in
/// name order, onboarding before offboarding.
pub fn plan(
    desired: &[TenantTarget],
    seen: &BTreeMap<String, TenantSeen>,
    network: &NetworkSeen,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let none = TenantSeen::default();
    let wanted: BTreeSet<&str> = desired.iter().map(|t| t.name.as_str()).collect();
    if !desired.is_empty() && !network.bridge_ready {
        actions.push(Action::EnsureBridge);
    }
    for target in desired {
        let tenant = target.name.clone();
        let seen = seen.get(&target.name).unwrap_or(&none);
        if !seen.ids_allocated {
            actions.push(Action::AllocateIds {
                tenant: tenant.clone(),
            });
        }
        if !seen.address_allocated {
            actions.push(Action::AllocateAddress {
                tenant: tenant.clone(),
            });
        }
        if target.encrypted && !seen.key_stored {
            actions.push(Action::CreateKey {
                tenant: tenant.clone(),
            });
        }
        let size_differs = seen
            .volume_size
            .is_some_and(|size| size != target.volume_size);
        if !seen.volume_exists || !seen.volume_mounted || size_differs {
            actions.push(Action::PrepareVolume {
                tenant: tenant.clone(),
                size: target.volume_size,
                encrypted: target.encrypted,
            });
        }
        let keep_locked = target.suspended && target.evict_key_when_suspended;
        if target.encrypted && !keep_locked && (!seen.volume_unlocked || !seen.volume_mounted) {
            actions.push(Action::UnlockVolume {
                tenant: tenant.clone(),
            });
        }
        if seen.limits.as_ref() != Some(&target.limits) {
            actions.push(Action::SetTenantLimits {
                tenant: tenant.clone(),
                summary: summarize(&target.limits),
                limits: target.limits.clone(),
            });
        }
        for (workload, limits) in &target.workloads {
            if seen.workloads.get(workload) != Some(limits) {
                actions.push(Action::SetWorkloadLimits {
                    tenant: tenant.clone(),
                    workload: workload.clone(),
                    summary: summarize(limits),
                    limits: limits.clone(),
                });
            }
        }
        for workload in seen.workloads.keys() {
            if !target.workloads.contains_key(workload) && !workload.starts_with('.') {
                actions.push(Action::RemoveWorkloadCgroup {
                    tenant: tenant.clone(),
                    workload: workload.clone(),
                });
            }
        }
        if seen.sandbox_leftovers && !seen.sandbox_running {
            actions.push(Action::StopSandbox {
                tenant: tenant.clone(),
            });
        }
        if !seen.sandbox_running {
            actions.push(Action::StartSandbox {
                tenant: tenant.clone(),
            });
        }
        // A new holder means a new network namespace: it needs wiring again.
        if !seen.sandbox_running || !seen.wired {
            actions.push(Action::WireTenant {
                tenant: tenant.clone(),
            });
        }
        if !seen.sandbox_running || !seen.wired || !seen.shaped {
            actions.push(Action::ShapeTenant {
                tenant: tenant.clone(),
                caps: target.caps,
                summary: format!(
                    "egress {}, ingress {}",
                    target
                        .caps
                        .egress
                        .map_or_else(|| "uncapped".to_owned(), |b| b.to_string()),
                    target
                        .caps
                        .ingress
                        .map_or_else(|| "uncapped".to_owned(), |b| b.to_string())
                ),
            });
        }
        match (target.suspended, seen.frozen) {
            (true, false) => actions.push(Action::Freeze {
                tenant: tenant.clone(),
            }),
            (false, true) => actions.push(Action::Thaw {
                tenant: tenant.clone(),
            }),
            _ => {}
        }
        if keep_locked && target.encrypted && seen.volume_unlocked {
            actions.push(Action::LockVolume { tenant });
        }
    }
    let mut offboarded = false;
    for (tenant, seen) in seen {
        if wanted.contains(tenant.as_str()) {
            continue;
        }
        let steps = offboard(tenant, seen);
        offboarded |= !steps.is_empty();
        actions.extend(steps);
    }
    let tenants_changed = actions.iter().any(|a| {
        matches!(
            a,
            Action::WireTenant { .. }
                | Action::UnwireTenant { .. }
                | Action::Freeze { .. }
                | Action::Thaw { .. }
        )
    });
    if !desired.is_empty() && (!network.firewall_in_sync || tenants_changed || offboarded) {
        actions.push(Action::ApplyFirewall {
            load: network.firewall_load.clone(),
        });
    }
    // After the firewall has dropped a suspended tenant's elements: its tracked
    // connections would otherwise keep flowing (`ct state established` comes first).
    for target in desired.iter().filter(|t| t.suspended) {
        if let Some(seen) = seen.get(&target.name)
            && seen.connections > 0
        {
            actions.push(Action::CutConnections {
                tenant: target.name.clone(),
                connections: seen.connections,
            });
        }
    }
    if !desired.is_empty() && !network.resolver_in_sync {
        actions.push(Action::StartResolver);
    }
    if desired.is_empty() && network.resolver_running {
        actions.push(Action::StopResolver);
    }
    if desired.is_empty() && network.anything {
        actions.push(Action::RemoveNetwork);
    }
    actions
}

/// The actions that remove every trace of a tenant that the host still shows.
pub fn offboard(tenant: &str, seen: &TenantSeen) -> Vec<Action> {
    let tenant = tenant.to_owned();
    let mut actions = Vec::new();
    // A frozen task cannot act on SIGKILL until it is thawed.
    if seen.frozen {
        actions.push(Action::Thaw {
            tenant: tenant.clone(),
        });
    }
    if seen.sandbox_running || seen.sandbox_leftovers {
        actions.push(Action::StopSandbox {
            tenant: tenant.clone(),
        });
    }
    if seen.link_exists {
        actions.push(Action::UnwireTenant {
            tenant: tenant.clone(),
        });
    }
    // Before the address is released: a tenant given it later must not inherit
    // these entries.
    if seen.connections > 0 {
        actions.push(Action::CutConnections {
            tenant: tenant.clone(),
            connections: seen.connections,
        });
    }
    if seen.limits.is_some() || !seen.workloads.is_empty() {
        actions.push(Action::RemoveCgroups {
            tenant: tenant.clone(),
        });
    }
    if seen.volume_exists || seen.volume_mounted {
        actions.push(Action::DestroyVolume {
            tenant: tenant.clone(),
        });
    }
    if seen.key_stored {
        actions.push(Action::DestroyKey {
            tenant: tenant.clone(),
        });
    }
    if seen.address_allocated {
        actions.push(Action::ReleaseAddress {
            tenant: tenant.clone(),
        });
    }
    if seen.ids_allocated {
        actions.push(Action::ReleaseIds { tenant });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> TenantTarget {
        TenantTarget {
            name: name.to_owned(),
            limits: Limits::unlimited(),
            workloads: BTreeMap::from([("app".to_owned(), Limits::unlimited())]),
            volume_size: 16 << 20,
            encrypted: true,
            suspended: false,
            evict_key_when_suspended: false,
            caps: crate::net::shape::Caps::default(),
        }
    }

    fn net_ok() -> NetworkSeen {
        NetworkSeen {
            bridge_ready: true,
            anything: true,
            firewall_in_sync: true,
            resolver_running: true,
            resolver_in_sync: true,
            firewall_load: crate::net::firewall::Load::default(),
        }
    }

    fn converged(t: &TenantTarget) -> TenantSeen {
        TenantSeen {
            ids_allocated: true,
            key_stored: true,
            volume_exists: true,
            volume_size: Some(t.volume_size),
            volume_mounted: true,
            volume_unlocked: true,
            limits: Some(t.limits.clone()),
            workloads: t.workloads.clone(),
            frozen: false,
            sandbox_running: true,
            sandbox_leftovers: false,
            address_allocated: true,
            wired: true,
            link_exists: true,
            shaped: true,
            connections: 0,
        }
    }

    #[test]
    fn fresh_tenant_is_onboarded_in_order() {
        let actions = plan(&[target("web")], &BTreeMap::new(), &NetworkSeen::default());
        let verbs: Vec<&str> = actions.iter().map(Action::verb).collect();
        assert_eq!(
            verbs,
            [
                "ensure-bridge",
                "allocate-ids",
                "allocate-address",
                "create-key",
                "prepare-volume",
                "unlock-volume",
                "set-tenant-limits",
                "set-workload-limits",
                "start-sandbox",
                "wire-tenant",
                "shape-tenant",
                "apply-firewall",
                "start-resolver"
            ]
        );
    }

    #[test]
    fn converged_tenant_needs_nothing() {
        let t = target("web");
        let seen = BTreeMap::from([("web".to_owned(), converged(&t))]);
        assert_eq!(plan(&[t], &seen, &net_ok()), Vec::new());
    }

    #[test]
    fn drift_is_repaired_one_action_each() {
        let t = target("web");
        let mut seen = converged(&t);
        seen.limits = Some(Limits {
            pids_max: Some(99_999),
            ..Limits::unlimited()
        });
        seen.sandbox_running = false;
        seen.sandbox_leftovers = true;
        let actions = plan(&[t], &BTreeMap::from([("web".to_owned(), seen)]), &net_ok());
        let verbs: Vec<&str> = actions.iter().map(Action::verb).collect();
        assert_eq!(
            verbs,
            [
                "set-tenant-limits",
                "stop-sandbox",
                "start-sandbox",
                "wire-tenant",
                "shape-tenant",
                "apply-firewall"
            ]
        );
    }

    #[test]
    fn suspension_freezes_and_evicts_when_asked() {
        let mut t = target("web");
        t.suspended = true;
        t.evict_key_when_suspended = true;
        let seen = BTreeMap::from([("web".to_owned(), converged(&t))]);
        let verbs: Vec<&str> = plan(&[t], &seen, &net_ok())
            .iter()
            .map(Action::verb)
            .collect();
        assert_eq!(verbs, ["freeze", "lock-volume", "apply-firewall"]);
    }

    #[test]
    fn suspension_cuts_tracked_connections_after_the_firewall() {
        let mut t = target("web");
        t.suspended = true;
        let mut seen = converged(&t);
        seen.connections = 3;
        let verbs: Vec<&str> = plan(&[t], &BTreeMap::from([("web".to_owned(), seen)]), &net_ok())
            .iter()
            .map(Action::verb)
            .collect();
        assert_eq!(verbs, ["freeze", "apply-firewall", "cut-connections"]);
    }

    #[test]
    fn offboarding_cuts_tracked_connections_before_releasing_the_address() {
        let t = target("old");
        let mut seen = converged(&t);
        seen.connections = 1;
        let verbs: Vec<&str> = offboard("old", &seen).iter().map(Action::verb).collect();
        let cut = verbs.iter().position(|v| *v == "cut-connections");
        let release = verbs.iter().position(|v| *v == "release-address");
        assert!(cut.is_some() && cut < release, "{verbs:?}");
    }

    #[test]
    fn a_changed_zone_restarts_the_resolver_alone() {
        let t = target("web");
        let seen = BTreeMap::from([("web".to_owned(), converged(&t))]);
        let network = NetworkSeen {
            resolver_in_sync: false,
            ..net_ok()
        };
        assert_eq!(plan(&[t], &seen, &network), vec![Action::StartResolver]);
    }

    #[test]
    fn a_frozen_tenant_is_thawed_before_it_is_stopped() {
        let t = target("old");
        let mut seen = converged(&t);
        seen.frozen = true;
        let verbs: Vec<&str> = offboard("old", &seen).iter().map(Action::verb).collect();
        assert_eq!(verbs[..2], ["thaw", "stop-sandbox"]);
    }

    #[test]
    fn undesired_tenant_is_offboarded_completely() {
        let t = target("old");
        let seen = BTreeMap::from([("old".to_owned(), converged(&t))]);
        let verbs: Vec<&str> = plan(&[], &seen, &net_ok())
            .iter()
            .map(Action::verb)
            .collect();
        assert_eq!(
            verbs,
            [
                "stop-sandbox",
                "unwire-tenant",
                "remove-cgroups",
                "destroy-volume",
                "destroy-key",
                "release-address",
                "release-ids",
                "stop-resolver",
                "remove-network"
            ]
        );
    }
}
