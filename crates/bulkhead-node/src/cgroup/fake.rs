//! A cgroup2 filesystem emulated in an ordinary directory, written to
//! Documentation/admin-guide/cgroup-v2.rst: creating a directory creates the
//! interface files of the controllers its parent delegates; `cgroup.subtree_control`
//! takes `+name`/`-name` and refuses controllers the cgroup does not have;
//! `cgroup.procs` moves a pid and refuses cgroups that delegate controllers (no
//! internal processes); `cgroup.freeze` and `cgroup.kill` update `cgroup.events`;
//! `io.max` merges per device; memory sizes round down to the page; `rmdir`
//! refuses populated cgroups and cgroups with children. Every write is recorded,
//! so tests can assert on exactly what was written and that a second apply writes
//! nothing. Signals are recorded, never sent.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::fs::CgroupFs;
use super::limits::page_size;

/// Controllers the fake root offers by default.
pub const FAKE_CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// A cgroup2 tree under `root`, for tests.
#[derive(Debug)]
pub struct FakeCgroupFs {
    root: PathBuf,
    writes: Mutex<Vec<(PathBuf, String)>>,
    killed: Mutex<Vec<u32>>,
    partition_error: Mutex<Option<String>>,
    swap: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn other(msg: &str) -> io::Error {
    io::Error::other(msg.to_owned())
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl FakeCgroupFs {
    /// Lays out a cgroup2 root in the (existing, empty) directory `root`, offering
    /// `controllers` (see [`FAKE_CONTROLLERS`]) and swap accounting when `swap`.
    pub fn new(root: &Path, controllers: &[&str], swap: bool) -> io::Result<Self> {
        let fake = FakeCgroupFs {
            root: root.to_owned(),
            writes: Mutex::new(Vec::new()),
            killed: Mutex::new(Vec::new()),
            partition_error: Mutex::new(None),
            swap,
        };
        std::fs::write(
            root.join("cgroup.controllers"),
            controllers.join(" ") + "\n",
        )?;
        std::fs::write(root.join("cgroup.subtree_control"), "\n")?;
        std::fs::write(root.join("cgroup.procs"), "")?;
        std::fs::write(root.join("cpuset.cpus.effective"), "0-3\n")?;
        std::fs::write(
            root.join("cpu.stat"),
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        )?;
        Ok(fake)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every write so far: file and value.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        lock(&self.writes).clone()
    }

    /// Forgets the recorded writes.
    pub fn clear_writes(&self) {
        lock(&self.writes).clear();
    }

    /// Pids sent SIGKILL (by [`CgroupFs::kill`] or `cgroup.kill`).
    pub fn killed(&self) -> Vec<u32> {
        lock(&self.killed).clone()
    }

    /// Makes `cpuset.cpus.partition` read `root invalid (<reason>)` after "root"
    /// is written, as the kernel does when the parent is not a partition root.
    pub fn fail_partitions(&self, reason: &str) {
        *lock(&self.partition_error) = Some(reason.to_owned());
    }

    /// Replaces a file's content without recording a write, as the kernel (or
    /// another writer) would: to stage usage counters or simulate drift.
    pub fn set(&self, path: &Path, content: &str) -> io::Result<()> {
        std::fs::write(path, content)
    }

    fn words(path: &Path) -> io::Result<BTreeSet<String>> {
        Ok(std::fs::read_to_string(path)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    fn write_words(path: &Path, words: &BTreeSet<String>) -> io::Result<()> {
        // The kernel lists controllers in its own order; sorted is as good here.
        let list: Vec<&str> = words.iter().map(String::as_str).collect();
        std::fs::write(path, list.join(" ") + "\n")
    }

    /// Default interface files of `controller` in a new (or newly delegated) cgroup.
    fn controller_files(&self, dir: &Path, controller: &str) -> io::Result<()> {
        let files: Vec<(&str, String)> = match controller {
            "cpu" => vec![
                ("cpu.max", "max 100000\n".to_owned()),
                ("cpu.weight", "100\n".to_owned()),
                (
                    "cpu.stat",
                    "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
                        .to_owned(),
                ),
            ],
            "memory" => {
                let mut f = vec![
                    ("memory.max", "max\n".to_owned()),
                    ("memory.current", "0\n".to_owned()),
                    (
                        "memory.events",
                        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n".to_owned(),
                    ),
                ];
                if self.swap {
                    f.push(("memory.swap.max", "max\n".to_owned()));
                }
                f
            }
            "pids" => vec![
                ("pids.max", "max\n".to_owned()),
                ("pids.current", "0\n".to_owned()),
            ],
            "io" => vec![("io.max", String::new()), ("io.stat", String::new())],
            "cpuset" => vec![
                ("cpuset.cpus", "\n".to_owned()),
                ("cpuset.mems", "\n".to_owned()),
                ("cpuset.cpus.partition", "member\n".to_owned()),
                ("cpuset.cpus.exclusive", "\n".to_owned()),
            ],
            _ => Vec::new(),
        };
        for (name, content) in files {
            let path = dir.join(name);
            if !path.exists() {
                std::fs::write(path, content)?;
            }
        }
        Ok(())
    }

    fn is_cgroup(&self, dir: &Path) -> bool {
        dir.starts_with(&self.root) && dir.join("cgroup.procs").exists()
    }

    fn child_cgroups(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    fn all_cgroups(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
        out.push(dir.to_owned());
        for child in Self::child_cgroups(dir)? {
            Self::all_cgroups(&child, out)?;
        }
        Ok(())
    }

    fn procs(dir: &Path) -> io::Result<Vec<u32>> {
        Ok(std::fs::read_to_string(dir.join("cgroup.procs"))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    fn set_procs(dir: &Path, pids: &[u32]) -> io::Result<()> {
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(dir.join("cgroup.procs"), text)
    }

    /// Recomputes `populated` and `frozen` in every non-root `cgroup.events`.
    fn refresh_events(&self) -> io::Result<()> {
        let mut all = Vec::new();
        Self::all_cgroups(&self.root, &mut all)?;
        for dir in all.iter().filter(|d| **d != self.root) {
            let mut subtree = Vec::new();
            Self::all_cgroups(dir, &mut subtree)?;
            let mut populated = false;
            for d in &subtree {
                populated |= !Self::procs(d)?.is_empty();
            }
            // Frozen when it or an ancestor asks to be.
            let mut frozen = false;
            let mut up = Some(dir.as_path());
            while let Some(d) = up.filter(|d| *d != self.root) {
                frozen |= std::fs::read_to_string(d.join("cgroup.freeze"))?.trim() == "1";
                up = d.parent();
            }
            std::fs::write(
                dir.join("cgroup.events"),
                format!(
                    "populated {}\nfrozen {}\n",
                    u8::from(populated),
                    u8::from(frozen)
                ),
            )?;
        }
        Ok(())
    }

    fn write_subtree_control(&self, path: &Path, value: &str) -> io::Result<()> {
        let dir = path.parent().ok_or_else(|| other("no parent"))?;
        let available = Self::words(&dir.join("cgroup.controllers"))?;
        let mut enabled = Self::words(path)?;
        for token in value.split_whitespace() {
            let (add, name) = match token.split_at(1) {
                ("+", name) => (true, name),
                ("-", name) => (false, name),
                _ => return Err(errno(libc::EINVAL)),
            };
            if !available.contains(name) {
                return Err(errno(libc::ENOENT));
            }
            if add {
                enabled.insert(name.to_owned());
            } else {
                enabled.remove(name);
            }
        }
        if dir != self.root && !Self::procs(dir)?.is_empty() {
            // No internal processes.
            return Err(errno(libc::EBUSY));
        }
        Self::write_words(path, &enabled)?;
        for child in Self::child_cgroups(dir)? {
            Self::write_words(&child.join("cgroup.controllers"), &enabled)?;
            for c in &enabled {
                self.controller_files(&child, c)?;
            }
        }
        Ok(())
    }

    fn write_procs(&self, path: &Path, value: &str) -> io::Result<()> {
        let dir = path.parent().ok_or_else(|| other("no parent"))?;
        let pid: u32 = value.trim().parse().map_err(|_| errno(libc::EINVAL))?;
        if dir != self.root
            && !std::fs::read_to_string(dir.join("cgroup.subtree_control"))?
                .trim()
                .is_empty()
        {
            return Err(errno(libc::EBUSY));
        }
        let mut all = Vec::new();
        Self::all_cgroups(&self.root, &mut all)?;
        for d in &all {
            let mut pids = Self::procs(d)?;
            if pids.contains(&pid) {
                pids.retain(|p| *p != pid);
                Self::set_procs(d, &pids)?;
            }
        }
        let mut pids = Self::procs(dir)?;
        pids.push(pid);
        Self::set_procs(dir, &pids)?;
        self.refresh_events()
    }

    fn write_kill(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().ok_or_else(|| other("no parent"))?;
        let mut subtree = Vec::new();
        Self::all_cgroups(dir, &mut subtree)?;
        for d in subtree {
            lock(&self.killed).extend(Self::procs(&d)?);
            Self::set_procs(&d, &[])?;
        }
        self.refresh_events()
    }

    /// `io.max` keeps one line per device; a line whose limits are all `max`
    /// disappears.
    fn write_io_max(path: &Path, value: &str) -> io::Result<()> {
        let mut fields = value.split_whitespace();
        let device = fields.next().ok_or_else(|| errno(libc::EINVAL))?.to_owned();
        let current = std::fs::read_to_string(path)?;
        let mut keys = [
            ("rbps", "max".to_owned()),
            ("wbps", "max".to_owned()),
            ("riops", "max".to_owned()),
            ("wiops", "max".to_owned()),
        ];
        if let Some(line) = current
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&device))
        {
            for field in line.split_whitespace().skip(1) {
                if let Some((k, v)) = field.split_once('=')
                    && let Some(slot) = keys.iter_mut().find(|(key, _)| *key == k)
                {
                    slot.1 = v.to_owned();
                }
            }
        }
        for field in fields {
            let (k, v) = field.split_once('=').ok_or_else(|| errno(libc::EINVAL))?;
            let slot = keys
                .iter_mut()
                .find(|(key, _)| *key == k)
                .ok_or_else(|| errno(libc::EINVAL))?;
            if v != "max" && v.parse::<u64>().is_err() {
                return Err(errno(libc::EINVAL));
            }
            slot.1 = v.to_owned();
        }
        let mut lines: Vec<String> = current
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(&device))
            .map(str::to_owned)
            .collect();
        if keys.iter().any(|(_, v)| v != "max") {
            let rendered: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            lines.push(format!("{device} {}", rendered.join(" ")));
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text)
    }

    fn write_value(&self, path: &Path, name: &str, value: &str) -> io::Result<()> {
        let value = value.trim();
        let stored = match name {
            "memory.max" | "memory.swap.max" | "memory.high" | "memory.low" => {
                if value == "max" {
                    "max".to_owned()
                } else {
                    let bytes: u64 = value.parse().map_err(|_| errno(libc::EINVAL))?;
                    (bytes / page_size() * page_size()).to_string()
                }
            }
            "pids.max" => {
                if value != "max" && value.parse::<u64>().is_err() {
                    return Err(errno(libc::EINVAL));
                }
                value.to_owned()
            }
            "cpu.weight" => match value.parse::<u32>() {
                Ok(w) if (1..=10_000).contains(&w) => value.to_owned(),
                _ => return Err(errno(libc::ERANGE)),
            },
            "cpu.max" => {
                let old = std::fs::read_to_string(path)?;
                let old_period = old.split_whitespace().nth(1).unwrap_or("100000").to_owned();
                let mut fields = value.split_whitespace();
                let quota = fields.next().ok_or_else(|| errno(libc::EINVAL))?;
                let period = fields.next().unwrap_or(&old_period);
                if quota != "max" && quota.parse::<u64>().is_err() {
                    return Err(errno(libc::EINVAL));
                }
                if period.parse::<u64>().is_err() {
                    return Err(errno(libc::EINVAL));
                }
                format!("{quota} {period}")
            }
            "cpuset.cpus.partition" => match value {
                "member" => "member".to_owned(),
                "root" | "isolated" => match lock(&self.partition_error).as_ref() {
                    Some(reason) => format!("{value} invalid ({reason})"),
                    None => value.to_owned(),
                },
                _ => return Err(errno(libc::EINVAL)),
            },
            "cpuset.cpus" | "cpuset.mems" | "cpuset.cpus.exclusive" => {
                if !value.is_empty() && bulkhead_spec::parse_cpuset(value).is_none() {
                    return Err(errno(libc::EINVAL));
                }
                value.to_owned()
            }
            _ => value.to_owned(),
        };
        std::fs::write(path, stored + "\n")
    }
}

impl CgroupFs for FakeCgroupFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let dir = path.parent().ok_or_else(|| other("no parent"))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| other("no file name"))?;
        // Interface files exist only where the kernel would create them.
        if !self.is_cgroup(dir) || (!path.exists() && name != "cgroup.kill") {
            return Err(errno(libc::ENOENT));
        }
        if name == "cgroup.kill" && dir == self.root {
            return Err(errno(libc::ENOENT));
        }
        match name {
            "cgroup.subtree_control" => self.write_subtree_control(path, value)?,
            "cgroup.procs" => self.write_procs(path, value)?,
            "cgroup.kill" if value.trim() == "1" => self.write_kill(path)?,
            "cgroup.freeze" => {
                if !matches!(value.trim(), "0" | "1") {
                    return Err(errno(libc::EINVAL));
                }
                std::fs::write(path, format!("{}\n", value.trim()))?;
                self.refresh_events()?;
            }
            "io.max" => Self::write_io_max(path, value)?,
            "cgroup.controllers" | "cgroup.events" | "memory.current" | "memory.events"
            | "pids.current" | "cpu.stat" | "io.stat" => return Err(errno(libc::EACCES)),
            _ => self.write_value(path, name, value)?,
        }
        lock(&self.writes).push((path.to_owned(), value.to_owned()));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().ok_or_else(|| other("no parent"))?;
        if !self.is_cgroup(parent) {
            return Err(errno(libc::ENOENT));
        }
        std::fs::create_dir(path)?;
        let delegated = Self::words(&parent.join("cgroup.subtree_control"))?;
        Self::write_words(&path.join("cgroup.controllers"), &delegated)?;
        std::fs::write(path.join("cgroup.subtree_control"), "\n")?;
        std::fs::write(path.join("cgroup.procs"), "")?;
        std::fs::write(path.join("cgroup.freeze"), "0\n")?;
        std::fs::write(path.join("cgroup.kill"), "")?;
        std::fs::write(
            path.join("cpu.stat"),
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        )?;
        for c in &delegated {
            self.controller_files(path, c)?;
        }
        self.refresh_events()
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        if !self.is_cgroup(path) || path == self.root {
            return Err(errno(libc::ENOENT));
        }
        if !Self::child_cgroups(path)?.is_empty() || !Self::procs(path)?.is_empty() {
            return Err(errno(libc::EBUSY));
        }
        std::fs::remove_dir_all(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        Ok(Self::child_cgroups(path)?
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn kill(&self, pid: u32) -> io::Result<()> {
        lock(&self.killed).push(pid);
        let mut all = Vec::new();
        Self::all_cgroups(&self.root, &mut all)?;
        for d in &all {
            let mut pids = Self::procs(d)?;
            if pids.contains(&pid) {
                pids.retain(|p| *p != pid);
                Self::set_procs(d, &pids)?;
            }
        }
        self.refresh_events()
    }
}
