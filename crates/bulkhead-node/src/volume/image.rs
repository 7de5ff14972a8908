//! The image file behind a volume: a sparse regular file of exactly the
//! tenant's storage quota, and what its ext4 superblock says.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Byte offset of the ext4 (ext2/3) primary superblock.
const SUPERBLOCK_OFFSET: u64 = 1024;
/// Bytes of the superblock bulkhead reads (it is 1024 long; the fields used
/// end before 0x154).
const SUPERBLOCK_READ: usize = 0x160;
/// `EXT4_SUPER_MAGIC`.
const EXT4_MAGIC: u16 = 0xEF53;
/// `EXT4_FEATURE_INCOMPAT_64BIT`.
const INCOMPAT_64BIT: u32 = 0x80;
/// `EXT4_FEATURE_INCOMPAT_ENCRYPT`.
const INCOMPAT_ENCRYPT: u32 = 0x10000;

/// What the ext4 superblock of an image says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Superblock {
    /// `s_volume_name`.
    pub label: String,
    /// Filesystem block size in bytes.
    pub block_size: u64,
    /// Filesystem size in bytes (blocks × block size).
    pub fs_bytes: u64,
    /// Whether the `encrypt` feature is set (fscrypt policies allowed).
    pub encrypt_feature: bool,
    /// `s_uuid`, as the usual 8-4-4-4-12 hex text.
    pub uuid: String,
}

/// The image file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageState {
    /// Where it is.
    pub path: PathBuf,
    /// Its apparent size (`st_size`): the volume's capacity.
    pub size: u64,
    /// Bytes actually allocated on the host filesystem (`st_blocks` × 512):
    /// how much of the quota the tenant's data and the filesystem's
    /// metadata occupy; far below `size` while the image is sparse.
    pub allocated: u64,
    /// The ext4 superblock, or `None` if the image is not (yet) formatted.
    pub superblock: Option<Superblock>,
}

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: could not create the volume directory (mode 0700)")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not create the volume image (mode 0600)")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not set the volume image's size to {size} bytes")]
    SetSize {
        path: PathBuf,
        size: u64,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not read the volume image")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: volume image is not a regular file (expected a file bulkhead created)")]
    NotRegularFile { path: PathBuf },
    #[error("{path}: could not remove the volume image")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Creates `path` as a sparse file of `size` bytes (mode 0600, parent
/// directory 0700) if it does not exist. Returns whether it created it.
pub fn create_sparse(path: &Path, size: u64) -> Result<bool, ImageError> {
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| ImageError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(source) => {
            return Err(ImageError::Create {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // ftruncate: the file reads as `size` zero bytes and occupies no blocks.
    set_len(&file, path, size)?;
    file.sync_all().map_err(|source| ImageError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

/// Sets the apparent size of an existing image (growing stays sparse).
pub fn resize(path: &Path, size: u64) -> Result<(), ImageError> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    set_len(&file, path, size)?;
    file.sync_all().map_err(|source| ImageError::SetSize {
        path: path.to_path_buf(),
        size,
        source,
    })
}

fn set_len(file: &File, path: &Path, size: u64) -> Result<(), ImageError> {
    file.set_len(size).map_err(|source| ImageError::SetSize {
        path: path.to_path_buf(),
        size,
        source,
    })
}

/// The image at `path`, or `None` if there is no file there.
pub fn probe(path: &Path) -> Result<Option<ImageState>, ImageError> {
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read(source)),
    };
    let meta = file.metadata().map_err(read)?;
    if !meta.file_type().is_file() {
        return Err(ImageError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let superblock = read_superblock(&mut file, meta.len()).map_err(read)?;
    Ok(Some(ImageState {
        path: path.to_path_buf(),
        size: meta.len(),
        allocated: meta.blocks() * 512,
        superblock,
    }))
}

/// Removes the image; a missing file is not an error. Returns whether a
/// file was removed.
pub fn remove(path: &Path) -> Result<bool, ImageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ImageError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_superblock(file: &mut File, len: u64) -> io::Result<Option<Superblock>> {
    if len < SUPERBLOCK_OFFSET + SUPERBLOCK_READ as u64 {
        return Ok(None);
    }
    let mut raw = [0u8; SUPERBLOCK_READ];
    file.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))?;
    file.read_exact(&mut raw)?;
    Ok(parse_superblock(&raw))
}

fn le16(raw: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([raw[at], raw[at + 1]])
}

fn le32(raw: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]])
}

/// Parses the fields bulkhead needs from the first [`SUPERBLOCK_READ`] bytes
/// of an ext4 superblock (offsets from `struct ext4_super_block`), or `None`
/// without the ext4 magic.
fn parse_superblock(raw: &[u8; SUPERBLOCK_READ]) -> Option<Superblock> {
    if le16(raw, 0x38) != EXT4_MAGIC {
        return None;
    }
    let log_block_size = le32(raw, 0x18);
    // ext4 allows 1 KiB to 64 KiB blocks; anything else is not a
    // superblock bulkhead should trust.
    if log_block_size > 6 {
        return None;
    }
    let block_size = 1024u64 << log_block_size;
    let incompat = le32(raw, 0x60);
    let mut blocks = u64::from(le32(raw, 0x04));
    if incompat & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(raw, 0x150)) << 32;
    }
    let label_raw = &raw[0x78..0x88];
    let label_len = label_raw.iter().position(|b| *b == 0).unwrap_or(16);
    let u = &raw[0x68..0x78];
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex(&u[0..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..16])
    );
    Some(Superblock {
        label: String::from_utf8_lossy(&label_raw[..label_len]).into_owned(),
        block_size,
        fs_bytes: blocks.saturating_mul(block_size),
        encrypt_feature: incompat & INCOMPAT_ENCRYPT != 0,
        uuid,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn fake_superblock() -> [u8; SUPERBLOCK_READ] {
        let mut raw = [0u8; SUPERBLOCK_READ];
        raw[0x38..0x3a].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        raw[0x04..0x08].copy_from_slice(&4096u32.to_le_bytes());
        raw[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes());
        raw[0x60..0x64].copy_from_slice(&(INCOMPAT_ENCRYPT | INCOMPAT_64BIT).to_le_bytes());
        raw[0x78..0x7b].copy_from_slice(b"web");
        raw
    }

    #[test]
    fn parses_size_label_and_encrypt_feature() {
        let sb = parse_superblock(&fake_superblock()).unwrap();
        assert_eq!(sb.block_size, 4096);
        assert_eq!(sb.fs_bytes, 16 << 20);
        assert_eq!(sb.label, "web");
        assert!(sb.encrypt_feature);
        assert_eq!(sb.uuid, "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn no_magic_means_unformatted() {
        let mut raw = fake_superblock();
        raw[0x38] = 0;
        assert_eq!(parse_superblock(&raw), None);
        assert_eq!(parse_superblock(&[0u8; SUPERBLOCK_READ]), None);
    }

    #[test]
    fn sparse_image_has_the_exact_size_and_no_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volumes/web.img");
        assert!(create_sparse(&path, 64 << 20).unwrap());
        assert!(!create_sparse(&path, 1).unwrap(), "never recreated");
        let state = probe(&path).unwrap().unwrap();
        assert_eq!(state.size, 64 << 20);
        assert!(state.allocated < 1 << 20, "{}", state.allocated);
        assert_eq!(state.superblock, None);
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert_eq!(probe(&path).unwrap(), None);
    }
}
