//! The audit anchor: the head `(seq, hash)` kept in a small file next to the
//! database, so that records cut off the end of the log are noticed.
//!
//! Format (text, one line after the header):
//!
//! ```text
//! bulkhead-audit-head v1
//! <seq> <hash>
//! ```
//!
//! It is replaced atomically (write a temporary file, fsync, rename, fsync
//! the directory) and only ever moves forward: a writer that lost a race
//! with a newer append leaves the newer anchor in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

const HEADER: &str = "bulkhead-audit-head v1";

/// The last record of the chain: its seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// Read the anchor; `Ok(None)` when the file does not exist.
pub(crate) fn read(path: &Path) -> io::Result<Option<AuditHead>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse(&text).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected \"{HEADER}\" then \"<seq> <64 hex digits>\""),
        )
    })
}

fn parse(text: &str) -> Option<AuditHead> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let (seq, hash) = lines.next()?.split_once(' ')?;
    let seq = seq.parse().ok()?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if lines.next().is_some_and(|l| !l.is_empty()) {
        return None;
    }
    Some(AuditHead {
        seq,
        hash: hash.to_owned(),
    })
}

/// Move the anchor forward to `head`, unless it already points at or past
/// `head.seq`.
pub(crate) fn advance(path: &Path, head: &AuditHead) -> io::Result<()> {
    // An unreadable anchor is overwritten: the verifier reports it until
    // then, and refusing here would only keep it broken.
    if let Ok(Some(current)) = read(path)
        && current.seq >= head.seq
    {
        return Ok(());
    }
    // Unique per process and call, so concurrent writers never share it.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let result = write_then_rename(&tmp, path, head);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, head: &AuditHead) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    writeln!(f, "{HEADER}\n{} {}", head.seq, head.hash)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_only_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db.audit-head");
        assert_eq!(read(&path).unwrap(), None);
        let h = |seq, c: char| AuditHead {
            seq,
            hash: c.to_string().repeat(64),
        };
        advance(&path, &h(2, 'a')).unwrap();
        assert_eq!(read(&path).unwrap(), Some(h(2, 'a')));
        advance(&path, &h(1, 'b')).unwrap();
        assert_eq!(read(&path).unwrap(), Some(h(2, 'a')));
        advance(&path, &h(3, 'c')).unwrap();
        assert_eq!(read(&path).unwrap(), Some(h(3, 'c')));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{HEADER}\n3 {}\n", "c".repeat(64))
        );
    }

    #[test]
    fn garbage_is_invalid_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head");
        fs::write(&path, "nonsense").unwrap();
        assert_eq!(read(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
