//! Capabilities: what a workload keeps of root's powers inside its user
//! namespace.
//!
//! The workload runs as uid 0 in its own user namespace. On `execve`, root's
//! new permitted set is its inheritable set plus its **bounding** set (file
//! capabilities count as all-ones for root), so emptying the effective set is
//! not enough: [`CapabilityPolicy::DropAll`] empties the bounding and ambient
//! sets first (dropping from the bounding set needs `CAP_SETPCAP`, still held
//! then) and then the effective, permitted and inheritable sets. Afterwards
//! the program that is executed starts with no capability at all, and
//! no_new_privs keeps setuid and file capabilities from adding any.
//!
//! Everything here is a `prctl` or `capset` call through rustix and allocates
//! nothing, so it runs between `fork` and `execve`.

use rustix::thread::{
    self, CapabilitySet, CapabilitySets, clear_ambient_capability_set,
    remove_capability_from_bounding_set,
};

/// Where the highest capability number the kernel knows is published.
pub const CAP_LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// Highest capability number bulkhead can name (`CAP_CHECKPOINT_RESTORE`, Linux 5.9);
/// used when [`CAP_LAST_CAP_PATH`] cannot be read.
pub const FALLBACK_LAST_CAP: u32 = 40;

/// What happens to the capability sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityPolicy {
    /// Empty every set: bounding, ambient, inheritable, permitted, effective.
    DropAll {
        /// Highest capability number to drop from the bounding set.
        last_cap: u32,
    },
    /// Leave the sets alone: the process keeps what root has in its user
    /// namespace (which is nothing over the host's objects).
    KeepUserNamespace,
}

impl CapabilityPolicy {
    /// [`CapabilityPolicy::DropAll`] for this kernel's capabilities; reads
    /// [`CAP_LAST_CAP_PATH`] (so call it in the parent).
    pub fn drop_all() -> Self {
        let last_cap = std::fs::read_to_string(CAP_LAST_CAP_PATH)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|last| *last < 64)
            .unwrap_or(FALLBACK_LAST_CAP);
        CapabilityPolicy::DropAll { last_cap }
    }

    /// Applies the policy to the calling thread. Returns the errno on failure.
    pub fn apply(&self) -> Result<(), i32> {
        let CapabilityPolicy::DropAll { last_cap } = *self else {
            return Ok(());
        };
        clear_ambient_capability_set().map_err(|e| e.raw_os_error())?;
        for cap in 0..=last_cap.min(63) {
            match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
                Ok(()) => {}
                // Past the kernel's last capability (the fallback guessed high).
                Err(e) if e == rustix::io::Errno::INVAL => break,
                Err(e) => return Err(e.raw_os_error()),
            }
        }
        thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| e.raw_os_error())
    }
}
