//! `net::conntrack` against the kernel's table (root; CI is root): real UDP flows
//! between addresses on the loopback of a network namespace this test creates
//! (its own conntrack table, so nothing of the host's is read or cut), counted and
//! cut through the kernel-filtered dumps, and compared with the kernel's own listing
//! (`/proc/<thread>/net/nf_conntrack`, read from inside the namespace).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd as _;
use std::process::Command;

use bulkhead_node::net::conntrack;

#[path = "support/netslot.rs"]
mod netslot;
use netslot::Slot;

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// Deletes the namespace on drop, also when an assertion fails.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `f` on a thread that joined the namespace `name`.
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

fn a(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

/// Per address, the IPv4 entries that have it as original source or destination
/// (once per entry), as the kernel lists them for the calling thread's namespace.
fn kernel_listing() -> BTreeMap<Ipv4Addr, usize> {
    let text = std::fs::read_to_string("/proc/thread-self/net/nf_conntrack")
        .expect("read /proc/thread-self/net/nf_conntrack");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("ipv4")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<Ipv4Addr>().ok())
        };
        let ends: BTreeSet<Ipv4Addr> = [field("src="), field("dst=")]
            .into_iter()
            .flatten()
            .collect();
        for end in ends {
            *out.entry(end).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn count_and_cut_take_one_address_from_the_kernel_table() {
    if !root() {
        eprintln!("skipped: needs root (network namespaces, conntrack)");
        return;
    }
    if !std::path::Path::new("/proc/net/nf_conntrack").exists() {
        eprintln!(
            "skipped: this kernel lists no conntrack table in /proc (CONFIG_NF_CONNTRACK_PROCFS)"
        );
        return;
    }
    let slot = Slot::tenant_range('c');
    let name = format!("{}-ct", slot.prefix());
    ip(&["netns", "add", &name]);
    let _guard = NetnsGuard(name.clone());
    ip(&["-n", &name, "link", "set", "lo", "up"]);
    for last in 1..=4 {
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{}/32", a(last)),
            "dev",
            "lo",
        ]);
    }
    // A `ct` rule makes the namespace track connections.
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &name, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    std::io::Write::write_all(
        nft.stdin.as_mut().expect("stdin"),
        b"table inet t {\n chain out {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n",
    )
    .expect("write ruleset");
    drop(nft.stdin.take());
    assert!(nft.wait().expect("nft").success(), "load the tracking rule");

    in_netns(&name, || {
        // Flows: .1 -> .2 three times, .3 -> .1 twice, .3 -> .4 once, .1 -> .1 once.
        let flows = [(1, 2), (1, 2), (1, 2), (3, 1), (3, 1), (3, 4), (1, 1)];
        let listeners: Vec<UdpSocket> = [1, 2, 4]
            .iter()
            .map(|l| UdpSocket::bind((a(*l), 7000)).expect("listen"))
            .collect();
        let mut senders = Vec::new();
        for (from, to) in flows {
            let socket = UdpSocket::bind((a(from), 0)).expect("bind source");
            socket.send_to(b"x", (a(to), 7000)).expect("send");
            senders.push(socket);
        }
        let expected: BTreeMap<Ipv4Addr, usize> = [(a(1), 6), (a(2), 3), (a(3), 3), (a(4), 1)]
            .into_iter()
            .collect();
        assert_eq!(
            kernel_listing(),
            expected,
            "the kernel tracks the flows sent"
        );

        // The kernel filters: .2's dumps carry its three entries (as destination),
        // .1's its six, the one from and to itself in both directions' dumps.
        assert_eq!(conntrack::filtered_dump_size(a(2)).expect("dump .2"), 3);
        assert_eq!(conntrack::filtered_dump_size(a(1)).expect("dump .1"), 7);

        // Filtered dumps (a few addresses) and the whole dump (more than
        // FILTERED_DUMPS_UP_TO) agree with the kernel's listing.
        let few: BTreeSet<Ipv4Addr> = (1..=4).map(a).collect();
        assert_eq!(conntrack::count(&few).expect("count"), expected);
        let many: BTreeSet<Ipv4Addr> = (1..=(conntrack::FILTERED_DUMPS_UP_TO as u8 + 4))
            .map(a)
            .collect();
        assert_eq!(conntrack::count(&many).expect("count all"), expected);
        assert_eq!(
            conntrack::count(&[a(2)].into_iter().collect()).expect("count one"),
            [(a(2), 3)].into_iter().collect()
        );

        // Cutting .1 deletes its six entries and nothing else.
        assert_eq!(conntrack::cut(a(1)).expect("cut"), 6);
        let after: BTreeMap<Ipv4Addr, usize> = [(a(3), 1), (a(4), 1)].into_iter().collect();
        assert_eq!(kernel_listing(), after, "only .3 -> .4 is left");
        assert_eq!(conntrack::count(&few).expect("count after"), after);
        assert_eq!(conntrack::cut(a(1)).expect("cut again"), 0);
        drop((listeners, senders));
    });
    drop(slot);
}
