//! A tenant's volume: a size-limited ext4 filesystem in a sparse image file,
//! encrypted per tenant with fscrypt v2.
//!
//! # Flow
//!
//! ```text
//!  ensure ──> attach ──> mount ──> unlock ──> (tenant runs) ──> lock ──> unmount ──> detach
//!  image +    loop dev   nosuid,   key in                      key out   autoclear
//!  mkfs                  nodev     kernel,                     of kernel releases the
//!                                  policy on data/                       loop device
//!                                                     destroy = lock + unmount + detach + delete image
//! ```
//!
//! Every step is idempotent and checks the world before it acts, so a plan
//! can be re-run after a crash and converge:
//!
//! - [`Volume::ensure`] creates the image ([`image`]) as a sparse file of
//!   exactly the quota (`ftruncate`) if it is missing, and formats it
//!   ([`ext4::mkfs_args`] has the exact flags) only if its superblock has no
//!   ext4 magic — a formatted image is never reformatted. A larger quota
//!   grows an unmounted volume (`resize2fs`); a smaller one is refused,
//!   because shrinking would cut off the tenant's data.
//! - [`Volume::attach`] reuses the loop device that already backs the image,
//!   else binds a free one ([`loopdev`]).
//! - [`Volume::mount`] skips a volume already mounted at its mount point
//!   (checked in `/proc/self/mountinfo`), else attaches and mounts it with
//!   `nosuid,nodev` at [`Instance::volume_mount`] and arms the loop device's
//!   autoclear.
//! - [`Volume::unlock`] adds the tenant key to the kernel and, the first
//!   time, creates the `data` directory ([`Instance::volume_data_dir`]) with
//!   the v2 policy ([`fscrypt`]); it is created under a temporary name and
//!   renamed, so `data` never exists without its policy.
//! - [`Volume::lock`] removes the key; [`Volume::unmount`], [`Volume::detach`]
//!   and [`Volume::destroy`] take the rest down.
//! - [`Volume::observe`] reports all of it as a [`VolumeState`], including
//!   the block device's `major:minor` for io limits.
//!
//! # `noexec`
//!
//! The host mount is `nosuid,nodev` but not `noexec` unless the caller asks
//! ([`ext4::MountOptions`]): a tenant's workloads may legitimately run what
//! they install on their volume (virtualenvs, build output). Set-id bits
//! and device nodes never take effect, which is what protects the host. The
//! mount point's parents are mode 0700, so no other host user reaches the
//! files, and the sandbox bind-mounts `data` with its own flags.
//!
//! # Threat model
//!
//! Protected at rest (volume locked, or the host powered off, or the image
//! copied): file contents (AES-256-XTS) and file names (AES-256-CTS, padded
//! to 32 bytes) under `data`. The key lives in the kernel only while the
//! tenant is active; the store keeps it wrapped by the master key
//! (`bulkhead-store`'s `keys`), and destroying the wrapped key
//! crypto-shreds the volume.
//!
//! Not protected:
//!
//! - while unlocked, anyone with root on the host (or the kernel) reads the
//!   plaintext: fscrypt is at-rest protection, not isolation between
//!   tenants — that is the sandbox's job;
//! - metadata: file sizes (to 4 KiB blocks), timestamps, permissions, the
//!   directory tree's shape, the number of files, and extended attributes
//!   stay visible in the image;
//! - the volume root outside `data` is not encrypted (ext4 cannot encrypt a
//!   filesystem root); bulkhead keeps nothing there;
//! - a locked volume still mounted keeps names of files open at lock time
//!   until they are closed ([`fscrypt::KeyStatus::IncompletelyRemoved`]);
//! - no integrity: fscrypt does not authenticate; someone who can write the
//!   image can corrupt (not read) files;
//! - unencrypted volumes ([`VolumeSpec::encrypted`] false) leave their
//!   data in the image and in the host filesystem's freed blocks after
//!   destroy.

pub mod ext4;
pub mod fscrypt;
pub mod image;
pub mod loopdev;

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bulkhead_spec::Bytes;

use crate::naming::Instance;
pub use ext4::{Ext4Error, MountOptions};
pub use fscrypt::{FscryptError, KeyIdentifier, KeyStatus, Policy};
pub use image::{ImageError, ImageState, Superblock};
pub use loopdev::{LoopDevice, LoopError};

/// Smallest volume bulkhead makes: room for ext4's metadata and journal
/// with space left for data.
pub const MIN_VOLUME_BYTES: u64 = 8 << 20;

/// Where the host's kernel interfaces are; tests and containers may point
/// them elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// devtmpfs (`/dev`).
    pub dev: PathBuf,
    /// The mount table of the calling process (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
        }
    }
}

/// What a tenant's volume should be, from its validated spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Capacity: `spec.quota.storage`.
    pub size: Bytes,
    /// Format with `-O encrypt` and keep `data` under an fscrypt policy:
    /// `spec.storage.encrypted`.
    pub encrypted: bool,
    /// How to mount.
    pub mount: MountOptions,
}

impl VolumeSpec {
    /// The volume a validated tenant asks for.
    pub fn for_tenant(tenant: &bulkhead_spec::Tenant) -> VolumeSpec {
        VolumeSpec {
            size: tenant.spec.quota.storage,
            encrypted: tenant.spec.storage.encrypted,
            mount: MountOptions { noexec: false },
        }
    }
}

/// One tenant's volume on this host: the names of its objects (all from
/// [`Instance`]) and where the kernel interfaces are.
#[derive(Debug, Clone)]
pub struct Volume {
    tenant: String,
    image: PathBuf,
    mount_point: PathBuf,
    data_dir: PathBuf,
    label: String,
    host: HostPaths,
}

/// What [`Volume::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Ensured {
    /// The image file was created.
    pub created: bool,
    /// `mkfs.ext4` ran.
    pub formatted: bool,
    /// The image grew from this many bytes.
    pub grown_from: Option<u64>,
}

/// What [`Volume::mount`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mounted {
    /// The loop device under the mount.
    pub device: Option<LoopDevice>,
    /// It was mounted already; nothing changed.
    pub already: bool,
}

/// What [`Volume::unlock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Unlocked {
    /// The identifier the kernel derived from the key.
    pub key: KeyIdentifier,
    /// The `data` directory and its policy were created now.
    pub created_data_dir: bool,
}

/// What [`Volume::lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Locked {
    /// The volume is not mounted: no key can be in the kernel.
    NotMounted,
    /// There is no encrypted `data` directory: nothing to lock.
    NoPolicy,
    /// The key was not in the kernel.
    AlreadyLocked(KeyIdentifier),
    /// The key was removed; `files_busy` means some files were open and
    /// keep their plaintext until closed (lock again to finish).
    Removed {
        /// The key.
        key: KeyIdentifier,
        /// Files were in use.
        files_busy: bool,
    },
}

/// What [`Volume::destroy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Destroyed {
    /// The key was removed from the kernel first.
    pub locked: bool,
    /// The filesystem was unmounted.
    pub unmounted: bool,
    /// A loop device was detached (explicitly or by autoclear).
    pub detached: bool,
    /// The image file was deleted.
    pub image_removed: bool,
}

/// The mount as found in the mount table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountState {
    /// Where.
    pub mount_point: PathBuf,
    /// What (`/dev/loopN`).
    pub source: String,
    /// Filesystem type (`ext4`).
    pub fs_type: String,
    /// Per-mount options as the kernel lists them.
    pub options: Vec<String>,
}

impl MountState {
    /// Whether the kernel lists `option` (`nosuid`, `nodev`, `noexec`).
    pub fn has(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// Encryption as the kernel reports it on `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EncryptionState {
    /// The policy on `data`.
    pub policy: Policy,
    /// Whether its key is in the kernel.
    pub key: KeyStatus,
}

/// Everything observable about a tenant's volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeState {
    /// The tenant.
    pub tenant: String,
    /// The image file, if it exists.
    pub image: Option<ImageState>,
    /// The loop device backing it, if any.
    pub loop_device: Option<LoopDevice>,
    /// The mount, if mounted.
    pub mount: Option<MountState>,
    /// `data`'s policy and key status, if mounted and encrypted.
    pub encryption: Option<EncryptionState>,
}

/// Why a volume step failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Loop(#[from] LoopError),
    #[error(transparent)]
    Ext4(#[from] Ext4Error),
    #[error(transparent)]
    Fscrypt(#[from] FscryptError),
    #[error("volume of tenant {tenant:?}: {size} bytes is below the minimum of {min} bytes")]
    TooSmall { tenant: String, size: u64, min: u64 },
    #[error(
        "{image}: volume holds a filesystem of {current} bytes; shrinking it to {requested} bytes could cut off the tenant's data (expected a quota of at least {current} bytes; to shrink, back up, destroy and recreate the volume)"
    )]
    WouldShrink {
        image: PathBuf,
        current: u64,
        requested: u64,
    },
    #[error(
        "{image}: cannot grow the volume to {requested} bytes while it is mounted at {mount_point} (unmount it first)"
    )]
    GrowWhileMounted {
        image: PathBuf,
        mount_point: PathBuf,
        requested: u64,
    },
    #[error("{image}: {program} failed while growing the volume: {detail}")]
    Grow {
        image: PathBuf,
        program: &'static str,
        detail: String,
    },
    #[error("{image}: no volume image (expected `ensure` first)")]
    NoImage { image: PathBuf },
    #[error("{image}: image holds no ext4 filesystem (expected `ensure` to have formatted it)")]
    NotFormatted { image: PathBuf },
    #[error(
        "{image}: filesystem lacks the `encrypt` feature (expected a volume created encrypted; `tune2fs -O encrypt` can add it while unmounted)"
    )]
    NoEncryptFeature { image: PathBuf },
    #[error(
        "{mount_point}: something other than tenant {tenant:?}'s volume is mounted here ({source_device}, {fs_type})"
    )]
    ForeignMount {
        tenant: String,
        mount_point: PathBuf,
        source_device: String,
        fs_type: String,
    },
    #[error("{mount_point}: volume is not mounted (expected `mount` first)")]
    NotMounted { mount_point: PathBuf },
    #[error(
        "{data_dir}: encrypted with key {expected} but the key given has identifier {given} (expected the tenant's own key; was it destroyed and recreated?)"
    )]
    WrongKey {
        data_dir: PathBuf,
        expected: KeyIdentifier,
        given: KeyIdentifier,
    },
    #[error("{data_dir}: has policy {found:?}, not bulkhead's AES-256-XTS/AES-256-CTS v2 policy")]
    UnexpectedPolicy { data_dir: PathBuf, found: Policy },
    #[error(
        "{data_dir}: exists without an encryption policy and is not empty (refusing to encrypt over plaintext)"
    )]
    PlaintextDataDir { data_dir: PathBuf },
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Volume {
    /// Tenant `tenant`'s volume in `instance`, on this host's `/sys`,
    /// `/dev` and `/proc/self/mountinfo`.
    pub fn new(instance: &Instance, tenant: &str) -> Volume {
        Volume {
            tenant: tenant.to_owned(),
            image: instance.volume_image(tenant),
            mount_point: instance.volume_mount(tenant),
            data_dir: instance.volume_data_dir(tenant),
            label: instance.volume_label(tenant),
            host: HostPaths::default(),
        }
    }

    /// The same volume with other kernel interface paths.
    pub fn with_host_paths(mut self, host: HostPaths) -> Volume {
        self.host = host;
        self
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The image file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The mount point.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The encrypted directory the tenant sees.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates the image if missing and formats it if unformatted; grows an
    /// unmounted volume whose quota grew; refuses to shrink a formatted one.
    pub fn ensure(&self, spec: &VolumeSpec) -> Result<Ensured, VolumeError> {
        let size = spec.size.get();
        if size < MIN_VOLUME_BYTES {
            return Err(VolumeError::TooSmall {
                tenant: self.tenant.clone(),
                size,
                min: MIN_VOLUME_BYTES,
            });
        }
        let created = image::create_sparse(&self.image, size)?;
        let state = image::probe(&self.image)?.ok_or_else(|| VolumeError::NoImage {
            image: self.image.clone(),
        })?;
        let Some(superblock) = state.superblock else {
            // Unformatted (new, or a crash before mkfs finished): nothing of
            // the tenant's is in it, so its size may simply be set.
            if state.size != size {
                image::resize(&self.image, size)?;
            }
            ext4::mkfs(&self.image, &self.label, spec.encrypted)?;
            return Ok(Ensured {
                created,
                formatted: true,
                grown_from: None,
            });
        };
        if spec.encrypted && !superblock.encrypt_feature {
            return Err(VolumeError::NoEncryptFeature {
                image: self.image.clone(),
            });
        }
        let current = state.size.max(superblock.fs_bytes);
        if size < current {
            return Err(VolumeError::WouldShrink {
                image: self.image.clone(),
                current,
                requested: size,
            });
        }
        let mut grown_from = None;
        if size > state.size || size > superblock.fs_bytes {
            self.grow(state.size, size)?;
            grown_from = Some(state.size);
        }
        Ok(Ensured {
            created,
            formatted: false,
            grown_from,
        })
    }

    /// Offline grow: extend the file, check the filesystem, resize it.
    fn grow(&self, from: u64, to: u64) -> Result<(), VolumeError> {
        if ext4::find_mount(&self.host.mountinfo, &self.mount_point)?.is_some() {
            return Err(VolumeError::GrowWhileMounted {
                image: self.image.clone(),
                mount_point: self.mount_point.clone(),
                requested: to,
            });
        }
        if to > from {
            image::resize(&self.image, to)?;
        }
        // resize2fs insists on a freshly checked filesystem. e2fsck exit
        // codes 0 and 1 mean clean or fixed.
        run_tool(&self.image, "e2fsck", &["-f", "-p"], &[0, 1])?;
        run_tool(&self.image, "resize2fs", &[], &[0])?;
        Ok(())
    }

    /// The loop device backing the image: the existing one, or a new one.
    /// Returns it and whether it was reused.
    pub fn attach(&self) -> Result<(LoopDevice, bool), VolumeError> {
        let state = image::probe(&self.image)?.ok_or_else(|| VolumeError::NoImage {
            image: self.image.clone(),
        })?;
        if state.superblock.is_none() {
            return Err(VolumeError::NotFormatted {
                image: self.image.clone(),
            });
        }
        Ok(loopdev::attach(
            &self.host.sys,
            &self.host.dev,
            &self.image,
        )?)
    }

    /// Mounts the volume at its mount point unless it is already there.
    pub fn mount(&self, options: MountOptions) -> Result<Mounted, VolumeError> {
        if let Some(existing) = self.current_mount()? {
            let device = loopdev::find_backing(&self.host.sys, &self.host.dev, &self.image)?;
            let ours = device
                .as_ref()
                .is_some_and(|d| Path::new(&existing.source) == d.path);
            if !ours || existing.fs_type != "ext4" {
                return Err(VolumeError::ForeignMount {
                    tenant: self.tenant.clone(),
                    mount_point: self.mount_point.clone(),
                    source_device: existing.source,
                    fs_type: existing.fs_type,
                });
            }
            return Ok(Mounted {
                device,
                already: true,
            });
        }
        let (device, _reused) = self.attach()?;
        ext4::create_mount_point(&self.mount_point)?;
        ext4::mount(&device.path, &self.mount_point, options)?;
        // From now on the mount holds the device; unmounting releases it.
        loopdev::arm_autoclear(&device, &self.image)?;
        let device =
            loopdev::find_backing(&self.host.sys, &self.host.dev, &self.image)?.or(Some(device));
        Ok(Mounted {
            device,
            already: false,
        })
    }

    /// Gives the tenant key to the kernel and makes sure `data` exists under
    /// bulkhead's policy for it. Fails with [`VolumeError::WrongKey`] (and
    /// takes back the key it added) if `data` is encrypted under another key.
    pub fn unlock(&self, key: &[u8; 32]) -> Result<Unlocked, VolumeError> {
        self.require_mounted()?;
        let existing = match std::fs::symlink_metadata(&self.data_dir) {
            Ok(_) => Some(fscrypt::get_policy(&self.data_dir)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(VolumeError::Io {
                    path: self.data_dir.clone(),
                    what: "could not inspect the data directory",
                    source,
                });
            }
        };
        if let Some(Some(policy)) = existing {
            let before = fscrypt::key_status(&self.mount_point, &policy.key)?;
            let given = fscrypt::add_key(&self.mount_point, key)?;
            if given != policy.key {
                // Take back the key we just added; leave one that was there.
                if matches!(
                    fscrypt::key_status(&self.mount_point, &given)?,
                    KeyStatus::Present { .. }
                ) && before == KeyStatus::Absent
                {
                    let _ = fscrypt::remove_key(&self.mount_point, &given);
                }
                return Err(VolumeError::WrongKey {
                    data_dir: self.data_dir.clone(),
                    expected: policy.key,
                    given,
                });
            }
            if policy != Policy::bulkhead(given) {
                return Err(VolumeError::UnexpectedPolicy {
                    data_dir: self.data_dir.clone(),
                    found: policy,
                });
            }
            return Ok(Unlocked {
                key: given,
                created_data_dir: false,
            });
        }
        let given = fscrypt::add_key(&self.mount_point, key)?;
        if let Some(None) = existing {
            // `data` without a policy: encrypt it only if nothing is in it.
            let empty = std::fs::read_dir(&self.data_dir)
                .map_err(|source| VolumeError::Io {
                    path: self.data_dir.clone(),
                    what: "could not list the data directory",
                    source,
                })?
                .next()
                .is_none();
            if !empty {
                return Err(VolumeError::PlaintextDataDir {
                    data_dir: self.data_dir.clone(),
                });
            }
            fscrypt::set_policy(&self.data_dir, &given)?;
        } else {
            self.create_encrypted_data_dir(&given)?;
        }
        Ok(Unlocked {
            key: given,
            created_data_dir: true,
        })
    }

    /// Creates `data` for an unencrypted volume (no key, no policy).
    pub fn ensure_plain_data_dir(&self) -> Result<bool, VolumeError> {
        self.require_mounted()?;
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.data_dir)
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(VolumeError::Io {
                path: self.data_dir.clone(),
                what: "could not create the data directory",
                source,
            }),
        }
    }

    /// `data` is made as `.data-new`, given its policy, then renamed, so
    /// that no one ever sees a `data` without its policy.
    fn create_encrypted_data_dir(&self, key: &KeyIdentifier) -> Result<(), VolumeError> {
        let staging = self.mount_point.join(".data-new");
        match std::fs::remove_dir(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(VolumeError::Io {
                    path: staging,
                    what: "could not remove a leftover staging directory",
                    source,
                });
            }
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|source| VolumeError::Io {
                path: staging.clone(),
                what: "could not create the staging data directory",
                source,
            })?;
        fscrypt::set_policy(&staging, key)?;
        std::fs::rename(&staging, &self.data_dir).map_err(|source| VolumeError::Io {
            path: self.data_dir.clone(),
            what: "could not rename the staging directory into place",
            source,
        })
    }

    /// Removes the tenant key from the kernel (for all users).
    pub fn lock(&self) -> Result<Locked, VolumeError> {
        if self.current_mount()?.is_none() {
            return Ok(Locked::NotMounted);
        }
        let policy = match fscrypt::get_policy(&self.data_dir) {
            Ok(Some(policy)) => policy,
            Ok(None) => return Ok(Locked::NoPolicy),
            Err(FscryptError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(Locked::NoPolicy);
            }
            Err(e) => return Err(e.into()),
        };
        // Settle dirty pages while the key is still there to encrypt them.
        sync_fs(&self.mount_point)?;
        match fscrypt::remove_key(&self.mount_point, &policy.key)? {
            None => Ok(Locked::AlreadyLocked(policy.key)),
            Some(removal) => Ok(Locked::Removed {
                key: policy.key,
                files_busy: removal.files_busy,
            }),
        }
    }

    /// Unmounts the volume; returns whether it was mounted.
    pub fn unmount(&self) -> Result<bool, VolumeError> {
        if self.current_mount()?.is_none() {
            return Ok(false);
        }
        ext4::unmount(&self.mount_point)?;
        Ok(true)
    }

    /// Detaches the loop device backing the image; returns whether there
    /// was one. Refuses while the volume is mounted.
    pub fn detach(&self) -> Result<bool, VolumeError> {
        self.require_unmounted()?;
        Ok(loopdev::detach(
            &self.host.sys,
            &self.host.dev,
            &self.image,
        )?)
    }

    /// Lock, unmount, detach, delete the image and the mount point. The
    /// tenant key itself lives in the store; destroying it there is what
    /// makes the data unrecoverable (crypto-shredding).
    pub fn destroy(&self) -> Result<Destroyed, VolumeError> {
        let locked = matches!(self.lock()?, Locked::Removed { .. });
        let unmounted = self.unmount()?;
        let detached = loopdev::detach(&self.host.sys, &self.host.dev, &self.image)? || unmounted;
        let image_removed = image::remove(&self.image)?;
        match std::fs::remove_dir(&self.mount_point) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(VolumeError::Io {
                    path: self.mount_point.clone(),
                    what: "could not remove the mount point",
                    source,
                });
            }
        }
        Ok(Destroyed {
            locked,
            unmounted,
            detached,
            image_removed,
        })
    }

    /// Everything the host says about the volume.
    pub fn observe(&self) -> Result<VolumeState, VolumeError> {
        let image = image::probe(&self.image)?;
        let loop_device = if image.is_some() {
            loopdev::find_backing(&self.host.sys, &self.host.dev, &self.image)?
        } else {
            None
        };
        let mount = self.current_mount()?;
        let encryption = match &mount {
            Some(_) => match fscrypt::get_policy(&self.data_dir) {
                Ok(Some(policy)) => Some(EncryptionState {
                    policy,
                    key: fscrypt::key_status(&self.mount_point, &policy.key)?,
                }),
                Ok(None) => None,
                Err(FscryptError::Open { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        Ok(VolumeState {
            tenant: self.tenant.clone(),
            image,
            loop_device,
            mount,
            encryption,
        })
    }

    fn current_mount(&self) -> Result<Option<MountState>, VolumeError> {
        Ok(
            ext4::find_mount(&self.host.mountinfo, &self.mount_point)?.map(|m| MountState {
                mount_point: m.mount_point,
                source: m.source,
                fs_type: m.fs_type,
                options: m.mount_options.split(',').map(str::to_owned).collect(),
            }),
        )
    }

    fn require_mounted(&self) -> Result<MountState, VolumeError> {
        self.current_mount()?
            .ok_or_else(|| VolumeError::NotMounted {
                mount_point: self.mount_point.clone(),
            })
    }

    fn require_unmounted(&self) -> Result<(), VolumeError> {
        match self.current_mount()? {
            None => Ok(()),
            Some(m) => Err(VolumeError::ForeignMount {
                tenant: self.tenant.clone(),
                mount_point: self.mount_point.clone(),
                source_device: m.source,
                fs_type: m.fs_type,
            }),
        }
    }
}

/// `syncfs(2)` on the filesystem holding `path`.
fn sync_fs(path: &Path) -> Result<(), VolumeError> {
    let io_err = |source| VolumeError::Io {
        path: path.to_path_buf(),
        what: "could not sync the filesystem",
        source,
    };
    let dir = std::fs::File::open(path).map_err(io_err)?;
    rustix::fs::syncfs(&dir).map_err(|e| io_err(e.into()))
}

fn run_tool(
    image: &Path,
    program: &'static str,
    args: &[&str],
    ok: &[i32],
) -> Result<(), VolumeError> {
    let output = Command::new(program)
        .args(args)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VolumeError::Grow {
            image: image.to_path_buf(),
            program,
            detail: format!("could not run it: {e}"),
        })?;
    match output.status.code() {
        Some(code) if ok.contains(&code) => Ok(()),
        _ => Err(VolumeError::Grow {
            image: image.to_path_buf(),
            program,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}
