//! The host backend: turns tenants into kernel objects and back.
//!
//! ```text
//! desired (spec) ──target()──> TenantTarget ─┐
//!                                             ├─ plan() ──> [Action] ──execute()──> kernel
//! host ──observe()──> TenantSeen ─────────────┘
//! ```
//!
//! [`plan`] is pure ([`plan::plan`]); [`Host::observe`] reads cgroups, volumes and
//! sandboxes; [`Host::execute`] runs one idempotent [`Action`]. Actions that touch the
//! store (id ranges, wrapped keys) are executed by the caller, who owns the store: this
//! crate does not depend on it. A crash after any action leaves a state the next
//! `observe` + `plan` converges from: every action checks before it changes.
//!
//! Inside a tenant's cgroup, processes live only in leaves: each workload in
//! `<tenant>/<workload>`, the sandbox holder in `<tenant>/.holder`, ad-hoc `run`
//! commands in `<tenant>/.run`. Names starting with a dot cannot collide with
//! workload names (DNS labels).

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bulkhead_spec::{Tenant, TenantState, Workload};

use crate::cgroup::{CgroupError, Cgroups, Device, Limits};
use crate::naming::Instance;
use crate::sandbox::{self, SandboxConfig, SandboxError};
use crate::volume::{MountOptions, Volume, VolumeError, VolumeSpec};

pub use plan::{Action, NetworkSeen, TenantSeen, TenantTarget, offboard, plan, summarize};

use crate::net::dns;
use crate::net::link::{self, BridgeConfig, NetnsRef, TenantLink};
use crate::net::shape::{self, Caps};

/// The holder's cgroup, a sibling of the workloads'.
pub const HOLDER_CGROUP: &str = ".holder";
/// The cgroup of commands started with `bulkhead run` without `--workload`.
pub const RUN_CGROUP: &str = ".run";
/// Annotation that makes a suspended tenant's key leave the kernel.
pub const EVICT_KEY_ANNOTATION: &str = "bulkhead.dev/evict-key";
/// How tenant volumes are mounted: nosuid, nodev; executables allowed (see `volume`).
const MOUNT: MountOptions = MountOptions { noexec: false };
/// Size of each sandbox's private /tmp (counted against the tenant's memory).
pub const TMP_SIZE: u64 = 64 << 20;

/// Why a host action or observation failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A cgroup step failed.
    #[error("tenant {tenant:?}: cgroups")]
    Cgroup {
        /// Tenant.
        tenant: String,
        /// Cause.
        #[source]
        source: CgroupError,
    },
    /// A volume step failed.
    #[error("tenant {tenant:?}: volume")]
    Volume {
        /// Tenant.
        tenant: String,
        /// Cause.
        #[source]
        source: VolumeError,
    },
    /// A sandbox step failed.
    #[error("tenant {tenant:?}: sandbox")]
    Sandbox {
        /// Tenant.
        tenant: String,
        /// Cause.
        #[source]
        source: SandboxError,
    },
    /// A network step failed.
    #[error("tenant {tenant:?}: network")]
    Network {
        /// Tenant (empty for the instance bridge).
        tenant: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The platform's tenant range is not usable for wiring.
    #[error("the platform's tenant range is not an IPv4 range with room for a bridge")]
    NoBridge,
    /// A secret (key, id range) could not be had from the caller.
    #[error("tenant {tenant:?}: {message}")]
    Secret {
        /// Tenant.
        tenant: String,
        /// What went wrong.
        message: String,
    },
    /// The action belongs to the caller (store steps).
    #[error("{0} is a store action: the caller executes it")]
    NotAHostAction(String),
    /// No cgroup hierarchy could be found.
    #[error("no usable cgroup hierarchy (see `bulkhead doctor`)")]
    NoCgroups(#[source] crate::cgroup::DetectCgroupError),
}

/// What the host needs from the store while executing: the tenant's key and ids.
pub trait Secrets {
    /// The tenant's unwrapped volume key.
    fn tenant_key(&mut self, tenant: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, String>;
    /// The first host id of the tenant's range.
    fn id_base(&mut self, tenant: &str) -> Result<u32, String>;
    /// The tenant's address.
    fn address(&mut self, tenant: &str) -> Result<std::net::Ipv4Addr, String>;
    /// The resolver's zone compiled for the desired state; `None` when the platform
    /// names another resolver (then a running one is stopped).
    fn resolver_zone(&mut self) -> Result<Option<crate::net::dns::Zone>, String> {
        Err("this caller compiles no resolver zone".to_owned())
    }
}

/// One instance's host backend.
#[derive(Debug)]
pub struct Host {
    instance: Instance,
    cgroups: Cgroups,
    holder_exe: Option<PathBuf>,
    bridge: Option<BridgeConfig>,
    nameserver: Option<std::net::IpAddr>,
}

impl Host {
    /// The backend of `instance`, with the host's cgroup layout.
    pub fn new(instance: Instance) -> Result<Host, HostError> {
        let cgroups = Cgroups::detect().map_err(HostError::NoCgroups)?;
        Ok(Host {
            instance,
            cgroups,
            holder_exe: None,
            bridge: None,
            nameserver: None,
        })
    }

    /// Wires tenants to a bridge on `range` (the platform's tenant range).
    pub fn with_network(mut self, range: ipnet::IpNet) -> Host {
        if let ipnet::IpNet::V4(range) = range {
            self.bridge = Some(BridgeConfig { range });
        }
        self
    }

    /// The resolver sandboxes name in their `/etc/resolv.conf` (the platform's, by
    /// default the bridge address) instead of the host's.
    pub fn with_nameserver(mut self, nameserver: Option<std::net::IpAddr>) -> Host {
        self.nameserver = nameserver;
        self
    }

    fn bridge(&self) -> Result<&BridgeConfig, HostError> {
        self.bridge
            .as_ref()
            .filter(|b| b.address().is_some())
            .ok_or(HostError::NoBridge)
    }

    /// The shared network objects: bridge state (firewall sync is the caller's: it
    /// compiles the expected ruleset).
    pub fn observe_bridge(&self) -> (bool, bool) {
        let Ok(bridge) = self.bridge() else {
            return (false, false);
        };
        match link::observe_bridge(&self.instance, bridge) {
            Ok(state) => (
                state.is_ready(),
                state.is_ready()
                    || link::host_interface_exists(&self.instance.bridge()).unwrap_or(false),
            ),
            Err(_) => (false, false),
        }
    }

    /// A tenant's link: (wired, any part exists, caps in force equal `caps`).
    pub fn observe_link(
        &self,
        tenant: &str,
        address: Option<std::net::Ipv4Addr>,
        caps: &Caps,
    ) -> (bool, bool, bool) {
        let exists = [
            self.instance.interface(tenant, 'h'),
            self.instance.interface(tenant, 'i'),
        ]
        .iter()
        .any(|name| link::host_interface_exists(name).unwrap_or(false));
        let wired = match (self.bridge(), address) {
            (Ok(bridge), Some(address)) => link::observe_tenant(
                &self.instance,
                bridge,
                &TenantLink {
                    tenant: tenant.to_owned(),
                    netns: NetnsRef::of_tenant(&self.instance, tenant),
                    address,
                },
            )
            .is_ok_and(|state| state.is_wired()),
            _ => false,
        };
        let shaped = shape::observe(&self.instance, tenant).is_ok_and(|state| state.matches(caps));
        (wired, exists, shaped)
    }

    /// Uses `exe` as the holder binary instead of `/proc/self/exe` (tests).
    pub fn with_holder_exe(mut self, exe: PathBuf) -> Host {
        self.holder_exe = Some(exe);
        self
    }

    /// The instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The cgroups.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// The volume of a tenant.
    pub fn volume(&self, tenant: &str) -> Volume {
        Volume::new(&self.instance, tenant)
    }

    /// What a tenant should be on this host. `io_device` is the tenant volume's block
    /// device when attached; io limits apply only once it is (the next plan adds them).
    pub fn target(
        tenant: &Tenant,
        workloads: &[&Workload],
        io_device: Option<Device>,
    ) -> Result<TenantTarget, HostError> {
        let name = tenant.metadata.name.to_string();
        let mut quota = tenant.spec.quota.clone();
        if io_device.is_none() {
            quota.io = bulkhead_spec::IoLimits::default();
        }
        let limits = Limits::for_tenant(&quota, io_device).map_err(|source| HostError::Cgroup {
            tenant: name.clone(),
            source,
        })?;
        let workloads = workloads
            .iter()
            .map(|w| {
                (
                    w.metadata.name.to_string(),
                    Limits::for_workload(&w.spec.resources),
                )
            })
            .collect();
        Ok(TenantTarget {
            name,
            limits,
            workloads,
            volume_size: tenant.spec.quota.storage.get(),
            encrypted: tenant.spec.storage.encrypted,
            suspended: tenant.spec.state == TenantState::Suspended,
            evict_key_when_suspended: tenant
                .metadata
                .annotations
                .get(EVICT_KEY_ANNOTATION)
                .is_some_and(|v| v == "true"),
            caps: Caps::of(&tenant.spec.quota),
        })
    }

    /// The block device of a tenant's attached volume, for io limits.
    pub fn io_device(&self, tenant: &str) -> Option<Device> {
        let state = self.volume(tenant).observe().ok()?;
        state.loop_device.map(|d| Device {
            major: d.major,
            minor: d.minor,
        })
    }

    /// Every tenant this instance left a trace of: cgroups, volume images, sandboxes.
    pub fn tenants_on_host(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .cgroups
            .list(&self.instance)
            .map(|tenants| tenants.into_keys().collect())
            .unwrap_or_default();
        let images = self.instance.state_dir().join("volumes");
        if let Ok(entries) = std::fs::read_dir(&images) {
            for entry in entries.flatten() {
                let file = entry.file_name();
                if let Some(name) = file.to_str().and_then(|n| n.strip_suffix(".img")) {
                    names.insert(name.to_owned());
                }
            }
        }
        for dir in [
            self.instance.state_dir().join("sandboxes"),
            self.instance.state_dir().join("roots"),
        ] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.insert(name.trim_end_matches(".holder").to_owned());
                    }
                }
            }
        }
        names
    }

    /// What the host shows of one tenant (the store fields stay false: the caller
    /// fills them in).
    pub fn observe(&self, tenant: &str) -> Result<TenantSeen, HostError> {
        let listed = self.cgroups.list(&self.instance).unwrap_or_default();
        self.observe_listed(tenant, &listed)
    }

    /// Like [`Host::observe`], with the instance's cgroup listing read once by the
    /// caller (observing N tenants must not list the cgroup tree N times).
    fn observe_listed(
        &self,
        tenant: &str,
        listed: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<TenantSeen, HostError> {
        let mut seen = TenantSeen::default();
        let volume = self
            .volume(tenant)
            .observe()
            .map_err(|source| HostError::Volume {
                tenant: tenant.to_owned(),
                source,
            })?;
        seen.volume_exists = volume.image.is_some();
        seen.volume_size = volume.image.as_ref().map(|i| i.size);
        seen.volume_mounted = volume.mount.is_some();
        seen.volume_unlocked = volume.mount.is_some() && volume.encryption.is_none()
            || volume
                .encryption
                .as_ref()
                .is_some_and(|e| matches!(e.key, crate::volume::KeyStatus::Present { .. }));
        let path = self.instance.tenant_cgroup(tenant);
        if self.cgroups.exists(&path) {
            seen.limits =
                Some(
                    self.cgroups
                        .observe(&path)
                        .map_err(|source| HostError::Cgroup {
                            tenant: tenant.to_owned(),
                            source,
                        })?,
                );
            seen.frozen = self.is_frozen(&path);
            {
                for workload in listed.get(tenant).into_iter().flatten() {
                    if workload.starts_with('.') {
                        continue;
                    }
                    let limits = self
                        .cgroups
                        .observe(&self.instance.workload_cgroup(tenant, workload))
                        .map_err(|source| HostError::Cgroup {
                            tenant: tenant.to_owned(),
                            source,
                        })?;
                    seen.workloads.insert(workload.clone(), limits);
                }
            }
        }
        let sandbox =
            sandbox::observe(&self.instance, tenant).map_err(|source| HostError::Sandbox {
                tenant: tenant.to_owned(),
                source,
            })?;
        seen.sandbox_running = sandbox.is_running();
        seen.sandbox_leftovers = sandbox.has_leftovers();
        Ok(seen)
    }

    fn is_frozen(&self, path: &Path) -> bool {
        self.cgroups.layout().roots().iter().any(|root| {
            let dir = root.join(path);
            std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
                || std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        })
    }

    /// The `cgroup.procs` files of a tenant's leaf cgroup, one per hierarchy.
    pub fn procs_files(&self, tenant: &str, leaf: &str) -> Vec<PathBuf> {
        let rel = self.instance.workload_cgroup(tenant, leaf);
        self.cgroups
            .layout()
            .roots()
            .iter()
            .map(|root| root.join(&rel).join("cgroup.procs"))
            .collect()
    }

    /// Removes the instance's own cgroup directory once no tenant is left under it.
    pub fn remove_instance_cgroup(&self) -> Result<(), HostError> {
        let root = self.instance.cgroup_root();
        let tenants = self
            .cgroups
            .list(&self.instance)
            .map_err(|source| HostError::Cgroup {
                tenant: String::new(),
                source,
            })?;
        if tenants.is_empty() && self.cgroups.exists(&root) {
            self.cgroups
                .remove(&root)
                .map_err(|source| HostError::Cgroup {
                    tenant: String::new(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Makes sure a leaf cgroup for ad-hoc or holder processes exists, unlimited below
    /// the tenant's limits.
    pub fn ensure_leaf(&self, tenant: &str, leaf: &str) -> Result<(), HostError> {
        self.cgroups
            .create(&self.instance.workload_cgroup(tenant, leaf))
            .map(|_| ())
            .map_err(|source| HostError::Cgroup {
                tenant: tenant.to_owned(),
                source,
            })
    }

    /// Runs one host action. Store actions return [`HostError::NotAHostAction`].
    pub fn execute(&self, action: &Action, secrets: &mut dyn Secrets) -> Result<(), HostError> {
        let tenant = action.tenant().to_owned();
        let cg = |source| HostError::Cgroup {
            tenant: tenant.clone(),
            source,
        };
        let vol = |source| HostError::Volume {
            tenant: tenant.clone(),
            source,
        };
        let sb = |source| HostError::Sandbox {
            tenant: tenant.clone(),
            source,
        };
        let path = self.instance.tenant_cgroup(&tenant);
        match action {
            Action::AllocateIds { .. }
            | Action::CreateKey { .. }
            | Action::DestroyKey { .. }
            | Action::ReleaseIds { .. }
            | Action::AllocateAddress { .. }
            | Action::ReleaseAddress { .. }
            | Action::ApplyFirewall { .. } => {
                return Err(HostError::NotAHostAction(action.verb().to_owned()));
            }
            Action::EnsureBridge => {
                link::ensure_bridge(&self.instance, self.bridge()?)
                    .map_err(|e| net_error(&tenant, e))?;
            }
            Action::WireTenant { .. } => {
                let address = secrets
                    .address(&tenant)
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                let wiring = TenantLink {
                    tenant: tenant.clone(),
                    netns: NetnsRef::of_tenant(&self.instance, &tenant),
                    address,
                };
                link::ensure_tenant(&self.instance, self.bridge()?, &wiring)
                    .map_err(|e| net_error(&tenant, e))?;
            }
            Action::ShapeTenant { caps, .. } => {
                shape::ensure(&self.instance, &tenant, caps).map_err(|e| net_error(&tenant, e))?;
            }
            Action::CutConnections { .. } => {
                let address = secrets
                    .address(&tenant)
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                crate::net::conntrack::cut(address).map_err(|e| net_error(&tenant, e))?;
            }
            Action::UnwireTenant { .. } => {
                // Deleting the veth and the ifb device takes their qdiscs with them; asking
                // tc first would fail on a half-wired tenant whose devices are gone.
                link::remove_tenant(&self.instance, &tenant).map_err(|e| net_error(&tenant, e))?;
                // The bridge's permanent entry for its address (harmless if left:
                // it names the MAC a tenant given that address gets anyway).
                if let Ok(address) = secrets.address(&tenant) {
                    link::remove_neighbour(&self.instance, self.bridge()?, address)
                        .map_err(|e| net_error(&tenant, e))?;
                }
            }
            Action::StartResolver => {
                let zone = secrets
                    .resolver_zone()
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                match zone {
                    Some(zone) => {
                        let exe = self
                            .holder_exe
                            .clone()
                            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
                        dns::start(&self.instance, &zone, &exe)
                            .map_err(|e| net_error(&tenant, e))?;
                    }
                    None => {
                        dns::stop(&self.instance).map_err(|e| net_error(&tenant, e))?;
                    }
                }
            }
            Action::StopResolver => {
                dns::stop(&self.instance).map_err(|e| net_error(&tenant, e))?;
            }
            Action::RemoveNetwork => {
                crate::net::firewall::remove(&self.instance).map_err(|e| net_error(&tenant, e))?;
                link::remove_bridge(&self.instance).map_err(|e| net_error(&tenant, e))?;
            }
            Action::PrepareVolume {
                size, encrypted, ..
            } => {
                let volume = self.volume(&tenant);
                let spec = VolumeSpec {
                    size: bulkhead_spec::Bytes::new(*size),
                    encrypted: *encrypted,
                    mount: MOUNT,
                };
                volume.ensure(&spec).map_err(vol)?;
                volume.mount(MOUNT).map_err(vol)?;
                if !*encrypted {
                    volume.ensure_plain_data_dir().map_err(vol)?;
                    self.give_data_dir_to_tenant(&volume, &tenant, secrets)?;
                }
            }
            Action::UnlockVolume { .. } => {
                let key = secrets
                    .tenant_key(&tenant)
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                let volume = self.volume(&tenant);
                volume.mount(MOUNT).map_err(vol)?;
                volume.unlock(&key).map_err(vol)?;
                self.give_data_dir_to_tenant(&volume, &tenant, secrets)?;
            }
            Action::LockVolume { .. } => {
                self.volume(&tenant).lock().map_err(vol)?;
            }
            Action::SetTenantLimits { limits, .. } => {
                self.cgroups
                    .ensure_tenant(&self.instance, &tenant, limits)
                    .map_err(cg)?;
            }
            Action::SetWorkloadLimits {
                workload, limits, ..
            } => {
                self.cgroups
                    .ensure_workload(&self.instance, &tenant, workload, limits)
                    .map_err(cg)?;
            }
            Action::RemoveWorkloadCgroup { workload, .. } => {
                let path = self.instance.workload_cgroup(&tenant, workload);
                self.cgroups.kill_all(&path).map_err(cg)?;
                self.cgroups.remove(&path).map_err(cg)?;
            }
            Action::StartSandbox { .. } => {
                self.open_path_for_holders()
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                self.ensure_leaf(&tenant, HOLDER_CGROUP)?;
                let base = secrets
                    .id_base(&tenant)
                    .map_err(|message| HostError::Secret {
                        tenant: tenant.clone(),
                        message,
                    })?;
                let mut config = SandboxConfig::new(&tenant, base);
                config.tmp_size = TMP_SIZE;
                config.holder_cgroups = self.procs_files(&tenant, HOLDER_CGROUP);
                let data = self.volume(&tenant).data_dir().to_path_buf();
                if data.is_dir() {
                    config.volume = Some(data);
                }
                if let Some(exe) = &self.holder_exe {
                    config.holder_exe = exe.clone();
                }
                if self.bridge.is_some() {
                    config.nameserver = self.nameserver;
                }
                sandbox::start(&self.instance, &config).map_err(sb)?;
            }
            Action::StopSandbox { .. } => {
                sandbox::stop(&self.instance, &tenant).map_err(sb)?;
            }
            Action::Freeze { .. } => self.cgroups.freeze(&path).map_err(cg)?,
            Action::Thaw { .. } => self.cgroups.thaw(&path).map_err(cg)?,
            Action::RemoveCgroups { .. } => {
                if self.cgroups.exists(&path) {
                    self.cgroups.kill_all(&path).map_err(cg)?;
                    self.cgroups.remove(&path).map_err(cg)?;
                }
            }
            Action::DestroyVolume { .. } => {
                self.volume(&tenant).destroy().map_err(vol)?;
            }
        }
        Ok(())
    }
}

impl Host {
    /// A holder runs as an unprivileged host id (the tenant's range) once it is in its
    /// user namespace, and must still reach its root directory and its volume: the
    /// state directory, its parent and `mnt/` are made traversable (`0711`), never
    /// listable. Everything secret below them keeps its own mode (`state.db` 0600,
    /// `volumes/` 0700, each volume's `data` 0700 owned by the tenant).
    fn open_path_for_holders(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        let state = self.instance.state_dir();
        let dirs = [
            state.parent().map(Path::to_path_buf),
            Some(state.to_path_buf()),
            Some(state.join("mnt")),
        ];
        for dir in dirs.into_iter().flatten() {
            let Ok(metadata) = std::fs::metadata(&dir) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o011 != 0o011 {
                let wanted = (mode & 0o700) | 0o011;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(wanted)).map_err(
                    |e| {
                        format!(
                            "cannot make {} traversable for sandbox holders: {e}",
                            dir.display()
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The data directory is owned by the tenant's unprivileged user, so `/data` is
    /// writable inside and owned by no id outside the tenant's range.
    fn give_data_dir_to_tenant(
        &self,
        volume: &Volume,
        tenant: &str,
        secrets: &mut dyn Secrets,
    ) -> Result<(), HostError> {
        let secret = |message| HostError::Secret {
            tenant: tenant.to_owned(),
            message,
        };
        let base = secrets.id_base(tenant).map_err(secret)?;
        chown(
            volume.data_dir(),
            base + sandbox::TENANT_UID,
            base + sandbox::TENANT_GID,
        )
        .map_err(secret)
    }
}

fn net_error(tenant: &str, error: impl std::error::Error + Send + Sync + 'static) -> HostError {
    HostError::Network {
        tenant: tenant.to_owned(),
        source: Box::new(error),
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("cannot give {} to the tenant's user: {e}", path.display()))
}

/// Observes every tenant in `names` plus those found on the host.
pub fn observe_all(
    host: &Host,
    names: impl IntoIterator<Item = String>,
) -> Result<BTreeMap<String, TenantSeen>, HostError> {
    let mut all: BTreeSet<String> = names.into_iter().collect();
    all.extend(host.tenants_on_host());
    let listed = host.cgroups.list(&host.instance).unwrap_or_default();
    all.into_iter()
        .map(|name| host.observe_listed(&name, &listed).map(|seen| (name, seen)))
        .collect()
}
