//! The sandbox launcher: long-lived namespaces per tenant, and processes
//! started inside them.
//!
//! # Shape
//!
//! Every tenant gets one **holder** process (like Kubernetes' pause container
//! or an Incus container's init): pid 1 of the tenant's pid namespace, owner of
//! its user, pid, mount, ipc, uts, net and cgroup namespaces. It reaps the
//! zombies orphaned inside the tenant and exits on `SIGTERM`/`SIGINT` (or dies
//! on `SIGKILL`); when it goes, the kernel kills every process of the tenant.
//!
//! - [`start`] re-executes the current binary (`/proc/self/exe`, or
//!   [`SandboxConfig::holder_exe`]) with the hidden environment variable
//!   [`HOLDER_ENV`]; that binary's `main` must call [`holder_main`] first thing
//!   when [`is_holder_invocation`] says so (before starting any thread: a
//!   process can only enter a new user namespace while it has one thread).
//!   The new process unshares a user namespace, waits while the launcher
//!   writes its uid/gid map (host ids `base..base+65536` are `0..65536`
//!   inside) and moves it into the caller's cgroups, unshares the other six
//!   namespaces and forks the holder, which builds the root file system,
//!   sets the hostname to the tenant name, brings `lo` up, `pivot_root`s and
//!   reports ready. The launcher records the holder's pid and start time at
//!   [`Instance::holder_record`](crate::naming::Instance::holder_record) and
//!   bind-mounts its network namespace at
//!   [`Instance::netns_path`](crate::naming::Instance::netns_path) so that
//!   `ip netns exec` works.
//! - [`Sandbox::spawn`] / [`Sandbox::run`] (and [`exec`], the same for a
//!   tenant found by name, like `nsenter`) start a [`Command`] inside: a
//!   forked child opens nothing new, it joins the holder's namespaces with
//!   `setns` (**user first**, so it holds the capabilities the others need,
//!   then cgroup, ipc, uts, net, pid, and mount last since it changes the
//!   root), then forks again so the workload is inside the pid namespace (a
//!   `setns` into a pid namespace only applies to children). The intermediate
//!   stays outside, waits, and ends exactly as the workload ended, so the
//!   caller's [`std::process::Child`] reports the workload's status;
//!   [`Process::wait`] turns a signal `n` into `128 + n` like a shell. The
//!   workload dies with `SIGKILL` if the intermediate is killed.
//!   In the workload, in this order: write itself into each
//!   [`Command::join_cgroup`] file (opened by the launcher before the fork, so
//!   the host's permissions apply although the path is not visible inside),
//!   `chdir`, drop supplementary groups, set gid and uid (the capabilities
//!   of the tenant's user namespace stay effective for the hook, and
//!   `execve` clears them for a non-zero uid), run [`Command::pre_exec`]
//!   (confinement goes there: [`Confinement::apply`](crate::confine::Confinement::apply),
//!   with Landlock paths prepared through [`Sandbox::host_path`]), `execve`
//!   with an empty environment plus [`DEFAULT_PATH`] and what the caller set.
//! - [`observe`] reads the record, the process and the `/run/netns` entry and
//!   says whether the sandbox runs, is gone, or left something behind;
//!   [`stop`] kills the holder (`SIGKILL` through a pidfd; everything in the
//!   pid namespace dies with it), waits for it, unmounts and removes the
//!   `/run/netns` entry, removes the (empty) root directory and the record.
//!   Both are idempotent and work on a crashed holder.
//!
//! # The root file system
//!
//! Built in the tenant's mount namespace (propagation private, so nothing
//! leaks back to the host) on a small tmpfs mounted at
//! [`Instance::sandbox_root`](crate::naming::Instance::sandbox_root); the host
//! directory itself stays empty. Every mount is `nosuid`; every mount is
//! `nodev` except the device nodes bound into `/dev` and `/dev/pts`, which
//! would not work otherwise.
//!
//! | path | what | flags |
//! |---|---|---|
//! | `/` | tmpfs holding only mount points and symlinks | ro, nosuid, nodev, noexec |
//! | `/usr`, `/bin`, `/sbin`, `/lib`, `/lib64`, `/lib32` | host's, those that exist; a host symlink (merged `/usr`) is copied as a symlink | bind, ro, nosuid, nodev |
//! | `/proc` | new procfs mounted by pid 1 of the tenant: only the tenant's pids. No `hidepid`: the pid namespace already separates tenants, and inside one tenant `ps` should see the tenant's processes | nosuid, nodev, noexec |
//! | `/proc/{sys,sysrq-trigger,irq,bus,fs}` | read-only (as runc does) | bind, ro |
//! | `/proc/{kcore,keys,timer_list,sched_debug,latency_stats}` | masked by a `nodev` bind of `/dev/null` (opening fails) | bind, ro, nodev |
//! | `/proc/{acpi,scsi}` | masked by an empty read-only tmpfs | ro |
//! | `/dev` | tmpfs with only `null`, `zero`, `full`, `random`, `urandom`, `tty` (bind mounts of the host's nodes), symlinks `ptmx`, `fd`, `stdin`, `stdout`, `stderr` | ro, nosuid, nodev, noexec |
//! | `/dev/{null,…}` | bind of the host node | nosuid, noexec (not nodev) |
//! | `/dev/pts` | new devpts instance, `ptmxmode=0666,mode=0620,gid=5` | nosuid, noexec (not nodev) |
//! | `/tmp` | private tmpfs, mode 1777, size from [`SandboxConfig::tmp_size`]; its pages are charged to the memory cgroup of the process that writes them | nosuid, nodev |
//! | `/etc` | tmpfs with the subset below | ro, nosuid, nodev, noexec |
//! | `/data` | the tenant's volume, if [`SandboxConfig::volume`] is given | bind, nosuid, nodev |
//!
//! There is no `/sys`, `/run`, `/home` or `/dev/shm`; `HOME` is not set (use
//! `/tmp`).
//!
//! # The `/etc` subset
//!
//! [`ETC_SYNTHESIZED`], [`ETC_COPIED`] and [`ETC_BOUND`]: what a dynamically
//! linked program, a resolver and a TLS client need, and nothing that names
//! the host's users, keys or services.
//!
//! - synthesized: `passwd` and `group` for the tenant's id range (root 0,
//!   `tenant` 1000, `nobody` 65534; groups root, tty 5 for `/dev/pts`, tenant,
//!   nogroup), `hosts` (localhost and the tenant name), `hostname`;
//! - copied at start (following symlinks, except that a symlink into `/usr`
//!   stays a symlink, e.g. `localtime`, `os-release`): `resolv.conf`,
//!   `nsswitch.conf`, `host.conf`, `gai.conf` (name resolution),
//!   `ld.so.cache` (the dynamic loader), `localtime` (time zone),
//!   `os-release`, `protocols`, `services` (`getaddrinfo` with names),
//!   `ssl/openssl.cnf`; except that with [`SandboxConfig::nameserver`]
//!   (a tenant on the instance's network) `resolv.conf` is written instead,
//!   naming only the instance's resolver;
//! - bound read-only: `ssl/certs` and `pki` (CA certificates, Debian and
//!   Fedora layouts), `alternatives` (Debian's `/usr/bin` symlinks point
//!   there).
//!
//! Not copied on purpose: `shadow`, `gshadow`, `sudoers`, `ssh/`, `machine-id`
//! (identifies the host), `fstab`, `mtab` and everything of host services.
//!
//! # Hooks for the rest of `bulkhead-node`
//!
//! - cgroups: [`SandboxConfig::holder_cgroups`] (the holder's `cgroup.procs`
//!   files; its cgroup namespace is rooted there) and
//!   [`Command::join_cgroup`] (each workload's);
//! - confinement (seccomp, capabilities, `no_new_privs`, Landlock, rlimits):
//!   [`Command::pre_exec`] and [`Sandbox::host_path`];
//! - the encrypted volume: [`SandboxConfig::volume`], normally
//!   [`Instance::volume_mount`](crate::naming::Instance::volume_mount), whose
//!   root the volume module should own by an id of the tenant's range.

mod error;
mod etc;
mod holder;
mod lifecycle;
mod netns;
pub(crate) mod record;
mod rootfs;
mod run;
mod start;

pub use error::SandboxError;
pub use etc::{ETC_BOUND, ETC_COPIED, ETC_SYNTHESIZED, TENANT_GID, TENANT_UID};
pub use holder::{HOLDER_ENV, holder_main, is_holder_invocation};
pub use lifecycle::{HolderState, Observed, StopReport, observe, stop};
pub use netns::NetnsEntry;
pub use rootfs::{DEV_NODES, HOST_DIRS, VOLUME_PATH};
pub use run::{Command, DEFAULT_PATH, Process, exec, exit_code};
pub use start::{ID_RANGE, Sandbox, SandboxConfig, start};
