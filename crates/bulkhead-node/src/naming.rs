//! Names of every host object bulkhead creates, derived from the instance prefix and the
//! tenant (and workload) name in exactly one function each, so that apply, observe,
//! delete, `bulkhead gc` and tests never guess them.
//!
//! | object | name |
//! |---|---|
//! | state directory | `<state_root>/<instance>/` (default `/var/lib/bulkhead/bh/`) |
//! | cgroup of a tenant | `<instance>/<tenant>` under each hierarchy (v1) or the unified tree (v2) |
//! | cgroup of a workload | `<instance>/<tenant>/<workload>` |
//! | network namespace | `<instance>-<tenant>` (also under `/run/netns` for `ip netns`) |
//! | volume image | `<state>/volumes/<tenant>.img` |
//! | volume mount point | `<state>/mnt/<tenant>` |
//! | volume's encrypted directory (what the tenant sees) | `<state>/mnt/<tenant>/data` |
//! | volume's ext4 label | the tenant name, or its first 7 characters + `-` + 8 hex digits of a hash when longer than 16 |
//! | sandbox root (pivot_root target) | `<state>/roots/<tenant>` |
//! | sandbox holder record (pid, start time) | `<state>/sandboxes/<tenant>.holder` |
//! | network namespace bind mount for `ip netns` | `/run/netns/<instance>-<tenant>` |
//! | interfaces | `<instance>` + short hash of the tenant + role suffix, within IFNAMSIZ |
//! | resolver zone (names and per-tenant views) | `<state>/resolver/zone.json` |
//! | resolver record (pid, start time, zone digest) | `<state>/resolver/resolver.record` |
//! | resolver log (its stderr) | `<state>/resolver/resolver.log` |

use std::path::{Path, PathBuf};

/// Default parent of every instance's state directory.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/bulkhead";

/// Name of the encrypted directory at the root of each tenant volume.
pub const VOLUME_DATA_DIR: &str = "data";

/// Longest ext4 volume label (`s_volume_name` is 16 bytes).
pub const MAX_EXT4_LABEL: usize = 16;

/// Where `ip netns` looks for named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
pub const MAX_IFNAME: usize = 15;

/// One bulkhead installation on a host: a prefix and a state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    prefix: String,
    state_dir: PathBuf,
}

impl Instance {
    /// An instance with its state under `<state_root>/<prefix>`.
    pub fn new(prefix: &str, state_root: &Path) -> Self {
        Instance {
            prefix: prefix.to_owned(),
            state_dir: state_root.join(prefix),
        }
    }

    /// The instance prefix (`bh` by default; tests use their own).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `/var/lib/bulkhead/<prefix>`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }

    /// The cgroup directory of the instance, relative to a hierarchy root.
    pub fn cgroup_root(&self) -> PathBuf {
        PathBuf::from(&self.prefix)
    }

    /// A tenant's cgroup, relative to a hierarchy root.
    pub fn tenant_cgroup(&self, tenant: &str) -> PathBuf {
        self.cgroup_root().join(tenant)
    }

    /// A workload's cgroup, relative to a hierarchy root.
    pub fn workload_cgroup(&self, tenant: &str, workload: &str) -> PathBuf {
        self.tenant_cgroup(tenant).join(workload)
    }

    /// A tenant's network namespace name.
    pub fn netns(&self, tenant: &str) -> String {
        format!("{}-{tenant}", self.prefix)
    }

    /// The file a tenant's network namespace is bind-mounted on, so that
    /// `ip netns exec <name>` finds it.
    pub fn netns_path(&self, tenant: &str) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(self.netns(tenant))
    }

    /// The record of a tenant's namespace holder process (its pid and start
    /// time), read by `observe`, `run` and `stop`.
    pub fn holder_record(&self, tenant: &str) -> PathBuf {
        self.state_dir
            .join("sandboxes")
            .join(format!("{tenant}.holder"))
    }

    /// A tenant's volume image file.
    pub fn volume_image(&self, tenant: &str) -> PathBuf {
        self.state_dir.join("volumes").join(format!("{tenant}.img"))
    }

    /// Where a tenant's volume is mounted on the host.
    pub fn volume_mount(&self, tenant: &str) -> PathBuf {
        self.state_dir.join("mnt").join(tenant)
    }

    /// The directory inside a tenant's mounted volume that carries the
    /// fscrypt policy and is all the tenant sees of its volume (the root of
    /// an ext4 filesystem cannot be encrypted).
    pub fn volume_data_dir(&self, tenant: &str) -> PathBuf {
        self.volume_mount(tenant).join(VOLUME_DATA_DIR)
    }

    /// The ext4 label of a tenant's volume (at most 16 bytes, ext4's limit):
    /// the tenant name when it fits, else a readable start and a hash.
    pub fn volume_label(&self, tenant: &str) -> String {
        if tenant.len() <= MAX_EXT4_LABEL {
            return tenant.to_owned();
        }
        let keep = tenant
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|i| *i <= 7)
            .last()
            .unwrap_or(0);
        format!(
            "{}-{:08x}",
            &tenant[..keep],
            fnv1a(tenant.as_bytes()) as u32
        )
    }

    /// The directory a tenant's sandboxes pivot into.
    pub fn sandbox_root(&self, tenant: &str) -> PathBuf {
        self.state_dir.join("roots").join(tenant)
    }

    /// An interface name for a tenant: prefix, 8 hex digits of a hash of the tenant name,
    /// and a one-letter role (`h` host end of the veth, `t` tenant end), cut to IFNAMSIZ.
    /// The instance bridge is [`Instance::bridge`].
    pub fn interface(&self, tenant: &str, role: char) -> String {
        let hash = fnv1a(tenant.as_bytes());
        let mut name = format!("{}{:08x}{role}", self.prefix, hash as u32);
        if name.len() > MAX_IFNAME {
            let keep = MAX_IFNAME - 9;
            name = format!(
                "{}{:08x}{role}",
                &self.prefix[..keep.min(self.prefix.len())],
                hash as u32
            );
        }
        name
    }

    /// The zone file the instance's DNS resolver reads at start.
    pub fn resolver_zone(&self) -> PathBuf {
        self.state_dir.join("resolver").join("zone.json")
    }

    /// The record of the running resolver: pid, start time, zone digest.
    pub fn resolver_record(&self) -> PathBuf {
        self.state_dir.join("resolver").join("resolver.record")
    }

    /// Where the resolver's stderr goes.
    pub fn resolver_log(&self) -> PathBuf {
        self.state_dir.join("resolver").join("resolver.log")
    }

    /// What the last full firewall load left in the kernel (rules, chains, set
    /// declarations), so that later loads can verify the tables before editing
    /// only their elements.
    pub fn firewall_record(&self) -> PathBuf {
        self.state_dir.join("firewall.loaded")
    }

    /// The instance bridge's name: shard 0 of [`Instance::bridge_shard`], the
    /// one with the gateway address.
    pub fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// The name of bridge shard `k` (`k` = 0 is [`Instance::bridge`]): tenants
    /// are spread over bridges of at most
    /// [`PORTS_PER_BRIDGE`](crate::net::link::PORTS_PER_BRIDGE) ports, by address.
    pub fn bridge_shard(&self, k: u32) -> String {
        if k == 0 {
            self.bridge()
        } else {
            format!("{}-b{k:x}", self.prefix)
        }
    }

    /// Whether `name` is one of the instance's bridges.
    pub fn is_bridge_shard(&self, name: &str) -> bool {
        name == self.bridge()
            || name
                .strip_prefix(&format!("{}-b", self.prefix))
                .is_some_and(|k| {
                    !k.is_empty() && k.len() <= 6 && k.bytes().all(|b| b.is_ascii_hexdigit())
                })
    }

    /// The nftables table of the instance.
    pub fn nft_table(&self) -> String {
        format!("bulkhead_{}", self.prefix)
    }
}

/// FNV-1a, 64 bit: stable across releases and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_prefix_and_tenant() {
        let instance = Instance::new("bh", Path::new(DEFAULT_STATE_ROOT));
        assert_eq!(instance.state_dir(), Path::new("/var/lib/bulkhead/bh"));
        assert_eq!(instance.tenant_cgroup("web"), PathBuf::from("bh/web"));
        assert_eq!(
            instance.workload_cgroup("web", "app"),
            PathBuf::from("bh/web/app")
        );
        assert_eq!(instance.netns("web"), "bh-web");
        assert_eq!(
            instance.volume_image("web"),
            PathBuf::from("/var/lib/bulkhead/bh/volumes/web.img")
        );
    }

    #[test]
    fn volume_names() {
        let instance = Instance::new("bh", Path::new(DEFAULT_STATE_ROOT));
        assert_eq!(
            instance.volume_data_dir("web"),
            PathBuf::from("/var/lib/bulkhead/bh/mnt/web/data")
        );
        assert_eq!(instance.volume_label("web"), "web");
        assert_eq!(
            instance.volume_label("exactly-16-chars"),
            "exactly-16-chars"
        );
        let long = instance.volume_label("a-rather-long-tenant-name");
        assert_eq!(long.len(), MAX_EXT4_LABEL);
        assert!(long.starts_with("a-rathe-"), "{long}");
        assert_ne!(long, instance.volume_label("a-rather-long-tenant-name2"));
    }

    #[test]
    fn interface_names_fit_ifnamsiz_and_differ() {
        let instance = Instance::new("longpref", Path::new("/tmp"));
        let a = instance.interface(&"a".repeat(63), 'h');
        let b = instance.interface(&"b".repeat(63), 'h');
        assert!(a.len() <= MAX_IFNAME, "{a}");
        assert_ne!(a, b);
        assert_ne!(
            instance.interface("web", 'h'),
            instance.interface("web", 't')
        );
    }
}
