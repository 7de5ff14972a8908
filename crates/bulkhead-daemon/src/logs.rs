//! Workload logs: stdout and stderr of each supervised workload, line by line, in
//! `<state>/logs/<tenant>/<workload>.log`, rotated to `.1` … `.N` when a file would
//! pass its size, so one workload's logs never take more than `(N + 1) × size`.
//! A chatty or hostile workload fills its own files, nobody else's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Longest line kept; longer ones are cut (and marked) so a line without a newline
/// cannot grow memory without bound.
pub const MAX_LINE: usize = 16 * 1024;

/// How big log files may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes per file before it rotates.
    pub file_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            file_bytes: 4 << 20,
            keep: 3,
        }
    }
}

/// The file of one workload's log (the live one; rotated ones add `.1`, `.2`, …).
pub fn log_path(dir: &Path, tenant: &str, workload: &str) -> PathBuf {
    dir.join(tenant).join(format!("{workload}.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends lines to one workload's log, rotating it.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl LogWriter {
    /// Opens (creating) the log of `tenant`/`workload` under `dir`.
    pub fn open(dir: &Path, tenant: &str, workload: &str, limits: LogLimits) -> io::Result<Self> {
        let path = log_path(dir, tenant, workload);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path,
            limits,
            file,
            size,
        })
    }

    /// Writes one line (a newline is added when missing).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + u64::from(!line.ends_with(b"\n"));
        if self.size > 0 && self.size + len > self.limits.file_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        if !line.ends_with(b"\n") {
            self.file.write_all(b"\n")?;
        }
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.limits.keep == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            for n in (1..self.limits.keep).rev() {
                fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1))
                    .or_else(ignore_missing)?;
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Copies `reader` into `writer` line by line until end of file (on a thread of its
/// own: the reads block).
pub fn pump(reader: Box<dyn Read + Send>, writer: Arc<Mutex<LogWriter>>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.len() >= MAX_LINE && !line.ends_with(b"\n") {
                    line.extend_from_slice(b" [line cut]\n");
                }
                let Ok(mut writer) = writer.lock() else {
                    return;
                };
                if writer.write_line(&line).is_err() {
                    return;
                }
            }
        }
    }
}

/// The last `lines` lines of a workload's log, across rotated files, oldest first.
pub fn tail(dir: &Path, tenant: &str, workload: &str, lines: usize) -> io::Result<Vec<String>> {
    let path = log_path(dir, tenant, workload);
    let mut files = vec![path.clone()];
    let mut n = 1;
    while rotated(&path, n).exists() {
        files.push(rotated(&path, n));
        n += 1;
    }
    let mut out: Vec<String> = Vec::new();
    for file in files {
        if out.len() >= lines {
            break;
        }
        let text = match fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut these: Vec<String> = text.lines().map(str::to_owned).collect();
        let wanted = lines - out.len();
        if these.len() > wanted {
            these.drain(..these.len() - wanted);
        }
        these.append(&mut out);
        out = these;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_caps_the_total_and_tail_reads_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            file_bytes: 100,
            keep: 2,
        };
        let mut writer = LogWriter::open(dir.path(), "t", "w", limits).unwrap();
        for i in 0..100 {
            writer
                .write_line(format!("line {i:03}").as_bytes())
                .unwrap();
        }
        let total: u64 = fs::read_dir(dir.path().join("t"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 300, "{total} bytes kept");
        assert!(!rotated(&log_path(dir.path(), "t", "w"), 3).exists());
        let last = tail(dir.path(), "t", "w", 12).unwrap();
        let expected: Vec<String> = (88..100).map(|i| format!("line {i:03}")).collect();
        assert_eq!(last, expected);
    }

    #[test]
    fn pump_cuts_endless_lines() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(Mutex::new(
            LogWriter::open(dir.path(), "t", "w", LogLimits::default()).unwrap(),
        ));
        let input = vec![b'x'; MAX_LINE * 2 + 10];
        pump(Box::new(io::Cursor::new(input)), writer);
        let lines = tail(dir.path(), "t", "w", 10).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("[line cut]"));
    }
}
