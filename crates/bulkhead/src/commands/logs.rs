//! `bulkhead logs TENANT/WORKLOAD [-f]`: a supervised workload's output, read from the
//! files the daemon writes (no daemon needed to read them).

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::Global;
use crate::context::{self, EXIT_OK, Outcome};

pub fn logs(global: &Global, target: &str, tail: usize, follow: bool) -> Outcome {
    let (tenant, workload) = target.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("{target:?} does not name a workload (expected TENANT/WORKLOAD)")
    })?;
    let instance = context::instance(global, None)?;
    let dir = instance.state_dir().join("logs");
    let path = bulkhead_daemon::logs::log_path(&dir, tenant, workload);
    let lines = bulkhead_daemon::logs::tail(&dir, tenant, workload, tail)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if lines.is_empty() && !path.exists() && !follow {
        return Err(anyhow::anyhow!(
            "no log for {tenant}/{workload} at {} (expected `bulkhead serve` to have run the workload)",
            path.display()
        )
        .into());
    }
    let mut out = std::io::stdout().lock();
    for line in &lines {
        writeln!(out, "{line}").context("cannot write")?;
    }
    out.flush().context("cannot write")?;
    if !follow {
        return Ok(EXIT_OK);
    }
    // Follow: read what is appended; start over when the file rotates (it shrinks or
    // is replaced).
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut inode = inode_of(&path);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = inode_of(&path);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if now != inode || len < offset {
            inode = now;
            offset = 0;
        }
        if len > offset
            && let Ok(mut file) = std::fs::File::open(&path)
        {
            file.seek(SeekFrom::Start(offset)).context("cannot seek")?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk).context("cannot read")?;
            offset += chunk.len() as u64;
            out.write_all(&chunk).context("cannot write")?;
            out.flush().context("cannot write")?;
        }
    }
}

fn inode_of(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}
