//! The holder record (`<state>/sandboxes/<tenant>.holder`) and what
//! `/proc/<pid>/stat` says about the process it names.

use std::io;
use std::path::Path;

use super::SandboxError;

/// What the launcher remembers about a tenant's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HolderRecord {
    /// Host pid of the holder.
    pub(crate) pid: u32,
    /// Its start time (clock ticks after boot, field 22 of `stat`), so that a
    /// recycled pid is never taken for the holder.
    pub(crate) start_time: u64,
    /// Host uid/gid that is 0 inside.
    pub(crate) id_base: u32,
}

impl HolderRecord {
    pub(crate) fn render(&self) -> String {
        format!(
            "pid={}\nstart_time={}\nid_base={}\n",
            self.pid, self.start_time, self.id_base
        )
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut pid = None;
        let mut start_time = None;
        let mut id_base = None;
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key {
                "pid" => pid = value.parse().ok(),
                "start_time" => start_time = value.parse().ok(),
                "id_base" => id_base = value.parse().ok(),
                _ => {}
            }
        }
        Some(HolderRecord {
            pid: pid?,
            start_time: start_time?,
            id_base: id_base?,
        })
    }

    /// Reads the record; `None` if there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, SandboxError> {
        match std::fs::read_to_string(path) {
            Ok(text) => HolderRecord::parse(&text).map(Some).ok_or_else(|| {
                SandboxError::io(
                    "read holder record",
                    path,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "expected lines pid=, start_time=, id_base=",
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SandboxError::io("read holder record", path, e)),
        }
    }

    /// Writes the record atomically (temporary file, then rename).
    pub(crate) fn store(&self, path: &Path) -> Result<(), SandboxError> {
        let tmp = path.with_extension("holder.tmp");
        std::fs::write(&tmp, self.render())
            .map_err(|e| SandboxError::io("write holder record", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| SandboxError::io("write holder record", path, e))
    }

    /// Whether the process this record names still runs (not a zombie, same
    /// start time).
    pub(crate) fn is_alive(&self) -> bool {
        matches!(ProcStat::read(self.pid), Some(stat) if stat.start_time == self.start_time && stat.state != 'Z' && stat.state != 'X')
    }
}

/// The fields of `/proc/<pid>/stat` the launcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) state: char,
    pub(crate) start_time: u64,
}

impl ProcStat {
    pub(crate) fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// Parses `stat`; the command name (field 2) may hold spaces and
    /// parentheses, so fields are counted after its last `)`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Field 3 is the state; start time is field 22, i.e. 19 further on.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcStat { state, start_time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let record = HolderRecord {
            pid: 42,
            start_time: 123_456,
            id_base: 200_000,
        };
        assert_eq!(HolderRecord::parse(&record.render()), Some(record));
        assert_eq!(HolderRecord::parse("pid=1\n"), None);
        assert_eq!(HolderRecord::parse("garbage"), None);
    }

    #[test]
    fn stat_with_odd_command_names() {
        let text = "77 (a) b (c) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(
            ProcStat::parse(text),
            Some(ProcStat {
                state: 'S',
                start_time: 98765
            })
        );
    }

    #[test]
    fn own_stat_is_alive() {
        // The main thread may be running or waiting for the test threads.
        let me = ProcStat::read(std::process::id());
        assert!(
            matches!(me, Some(ProcStat { state: 'R' | 'S', start_time }) if start_time > 0),
            "{me:?}"
        );
    }
}
