//! Network resources for root tests that are unique across every process on the host.
//!
//! Root tests create kernel objects that are global to the host's network namespace:
//! addresses and connected routes on an instance bridge, routes to an "outside world",
//! interface names, nft tables, conntrack entries keyed by address. Deriving them from
//! the process id (`pid % 250`, `pid % 1000`) let concurrent test binaries — this
//! workspace's, or another checkout's run on the same machine — pick the same tenant
//! range: two bridges then carry the same connected route, replies leave through the
//! wrong bridge, a DNS resolver cannot bind its address, and one test's conntrack cut
//! or `gc` removes another's state.
//!
//! A [`Slot`] is a reservation held by an exclusive `flock` on a file under
//! `/run/bulkhead-tests/` for as long as the value lives (drop it after cleanup; the
//! kernel releases the lock if the process dies). A slot is taken only if the host
//! shows no address, route, link, namespace or nft table that would clash with it, so
//! leftovers of a crashed run, or a run of older test code, are stepped over. Each
//! reservation bumps a generation stored in the lock file, so that a prefix is never
//! reused while the kernel still tears down the previous holder's veths.
//!
//! Shared between test crates with `#[path = ...] mod netslot;`; not every test uses
//! every helper.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the lock files live (tmpfs, gone at reboot with everything they guard).
const LOCK_DIR: &str = "/run/bulkhead-tests";

/// Tenant ranges: `10.208.0.0/12` in /24s, a block no other test or bench uses.
const RANGE_SLOTS: u32 = 16 * 256;

/// Outside-world links: 64 /30 transit networks in 198.51.100.0/24, each with one
/// world address in 203.0.113.64/26.
const OUTSIDE_SLOTS: u32 = 64;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One reserved slot; the reservation ends when it is dropped.
#[derive(Debug)]
pub struct Slot {
    index: u32,
    generation: u32,
    tag: char,
    _lock: File,
}

impl Slot {
    /// A tenant range and instance prefix of its own; `tag` (a lowercase letter) shows
    /// in the prefix which test binary holds it.
    pub fn tenant_range(tag: char) -> Slot {
        reserve("range", RANGE_SLOTS, tag, |s| {
            let [_, b, c, _] = s.range_network().octets();
            let net = format!("10.{b}.{c}.");
            !host_mentions(&[&net], &s.prefix())
        })
    }

    /// A transit /30 and a world address for an outside-world namespace.
    pub fn outside() -> Slot {
        reserve("outside", OUTSIDE_SLOTS, 'o', |s| {
            let transit = s.transit_host().to_string();
            let far = s.transit_far().to_string();
            let world = s.world().to_string();
            !host_mentions(&[&transit, &far, &world], &s.prefix())
        })
    }

    /// The instance prefix: `q`, the tag, three hex digits of the slot, a generation
    /// digit — at most 6 characters, so interface names keep all of it.
    pub fn prefix(&self) -> String {
        let generation = char::from_digit(self.generation % 36, 36).unwrap_or('0');
        format!("q{}{:03x}{generation}", self.tag, self.index)
    }

    fn range_network(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            208 + (self.index / 256) as u8,
            (self.index % 256) as u8,
            0,
        )
    }

    /// The tenant range, e.g. `10.208.17.0/24`.
    pub fn range(&self) -> String {
        format!("{}/24", self.range_network())
    }

    /// The range's first usable address: the instance bridge.
    pub fn bridge_address(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.range_network().octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Host end of the outside transit /30.
    pub fn transit_host(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, (self.index * 4 + 1) as u8)
    }

    /// Outside end of the transit /30.
    pub fn transit_far(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, (self.index * 4 + 2) as u8)
    }

    /// The outside world's own address, routed by the host through the transit.
    pub fn world(&self) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, (64 + self.index) as u8)
    }
}

fn reserve(pool: &str, size: u32, tag: char, free: impl Fn(&Slot) -> bool) -> Slot {
    let dir = Path::new(LOCK_DIR).join(pool);
    std::fs::create_dir_all(&dir).expect("create the test lock directory");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::SeqCst).wrapping_mul(97));
    for step in 0..size {
        let index = start.wrapping_add(step) % size;
        let path = dir.join(format!("{index}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open a test lock file");
        if file.try_lock().is_err() {
            continue;
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let generation = text.trim().parse::<u32>().unwrap_or(0).wrapping_add(1);
        file.set_len(0).expect("truncate the lock file");
        file.seek(SeekFrom::Start(0)).expect("seek");
        write!(file, "{generation}").expect("write the lock file");
        let slot = Slot {
            index,
            generation,
            tag,
            _lock: file,
        };
        if free(&slot) {
            return slot;
        }
    }
    panic!("no free {pool} slot under {LOCK_DIR}: every one is held or clashes with the host");
}

/// Whether the host's addresses, routes, links, named namespaces or nft tables
/// mention any of `needles` or an object of the instance `prefix`.
fn host_mentions(needles: &[&str], prefix: &str) -> bool {
    let mut seen = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        seen.push_str(&run("ip", args));
        seen.push('\n');
    }
    let word_start = |text: &str, needle: &str| {
        text.match_indices(needle).any(|(at, _)| {
            at == 0 || !text.as_bytes()[at - 1].is_ascii_digit() && text.as_bytes()[at - 1] != b'.'
        })
    };
    if needles.iter().any(|n| word_start(&seen, n)) {
        return true;
    }
    let links = run("ip", &["-o", "link", "show"]);
    if links.contains(&format!(": {prefix}")) {
        return true;
    }
    if std::fs::read_dir("/run/netns").is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
        })
    }) {
        return true;
    }
    run("nft", &["list", "tables"]).contains(&format!("bulkhead_{prefix}"))
}

fn run(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
