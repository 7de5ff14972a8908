//! Parsing of `/proc/<pid>/mountinfo` (see `proc_pid_mountinfo(5)`).

use std::path::PathBuf;

/// One line of `mountinfo`: the fields bulkhead uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// Root of the mount within its filesystem (e.g. `/` or `/tenant-a`).
    pub root: PathBuf,
    /// Mount point relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: String,
    /// Filesystem type (`cgroup`, `cgroup2`, `ext4`).
    pub fs_type: String,
    /// Mount source (device or a name such as `cgroup`).
    pub source: String,
    /// Per-superblock options; for cgroup v1 they name the controllers
    /// (`rw,cpu,cpuacct` or `rw,name=systemd`).
    pub super_options: String,
}

impl MountInfo {
    /// The per-superblock options, split on commas.
    pub fn super_options(&self) -> impl Iterator<Item = &str> {
        self.super_options.split(',').filter(|o| !o.is_empty())
    }
}

/// A `mountinfo` line that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "mountinfo line {line}: {reason} (expected `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`)"
)]
pub struct ParseMountinfoError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// Parses the whole text of a `mountinfo` file, in order.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>, ParseMountinfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| ParseMountinfoError {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    let mut fields = line.split(' ');
    let mut next = |what: &'static str| fields.next().filter(|f| !f.is_empty()).ok_or(what);
    let mount_id = next("missing mount id")?
        .parse()
        .map_err(|_| "mount id is not a number")?;
    let parent_id = next("missing parent id")?
        .parse()
        .map_err(|_| "parent id is not a number")?;
    let _dev = next("missing major:minor")?;
    let root = unescape(next("missing root")?);
    let mount_point = unescape(next("missing mount point")?);
    let mount_options = next("missing mount options")?.to_owned();
    loop {
        match fields.next() {
            Some("-") => break,
            Some(_) => continue,
            None => return Err("missing `-` separator"),
        }
    }
    let fs_type = fields.next().ok_or("missing filesystem type")?.to_owned();
    let source = unescape(fields.next().ok_or("missing mount source")?);
    let super_options = fields.next().ok_or("missing super options")?.to_owned();
    Ok(MountInfo {
        mount_id,
        parent_id,
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_v1_and_v2_lines() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:2 - cgroup2 cgroup2 rw,nsdelegate
";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].fs_type, "cgroup");
        assert_eq!(mounts[0].super_options().collect::<Vec<_>>(), ["rw", "cpu"]);
        assert_eq!(
            mounts[1].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(mounts[1].fs_type, "cgroup2");
        assert_eq!(mounts[1].parent_id, 31);
    }

    #[test]
    fn unescapes_spaces_in_mount_points() {
        let text = "50 1 8:1 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my disk"));
    }

    #[test]
    fn trailing_backslash_is_kept() {
        assert_eq!(unescape("a\\"), "a\\");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\134b"), "a\\b");
    }

    #[test]
    fn reports_the_bad_line() {
        let text = "32 31 0:29 / /x rw - cgroup cgroup rw,cpu\n33 nope\n";
        let err = parse_mountinfo(text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string()
                .starts_with("mountinfo line 2: parent id is not a number")
        );
    }
}
