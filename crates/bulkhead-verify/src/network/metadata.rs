//! A stand-in for the cloud metadata service, so that reaching
//! 169.254.169.254 from a tenant is probed without ever touching a real one.
//!
//! The verifier builds a network namespace of its own with 169.254.169.254
//! on its `eth0` and a TCP listener on [`METADATA_PORT`] there, a veth to the
//! host whose host end carries 169.254.169.253, and a policy-routing rule
//! that sends to it only what comes **in from the instance bridge** for
//! 169.254.169.254 (the host's own traffic to a real metadata service keeps
//! its route). Everything is removed when the [`StandIn`] drops. When it
//! cannot be built (no `ip`, no policy routing), the metadata rows are not
//! judged and say why; nothing is sent to 169.254.169.254 then.
//!
//! Tenant packets to it take the forward path: the bridge's forwarding
//! switch (`nat`) and the firewall's link-local drop decide, as they would
//! for a real metadata service.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;

use bulkhead_node::naming::{Instance, NETNS_RUN_DIR};
use rustix::thread::LinkNameSpaceType;

use super::{METADATA_ADDRESS, METADATA_PORT};

/// The host end's address.
const HOST_END: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);

/// The stand-in; removed on drop.
#[derive(Debug)]
pub(crate) struct StandIn {
    netns: String,
    host_if: String,
    table: u32,
    bridge: String,
    _listener: Option<TcpListener>,
}

/// The names of the stand-in's kernel objects for `instance` (one place).
fn names(instance: &Instance, nonce: &str) -> (String, String, u32) {
    let netns = format!("{}_verify-metadata-{nonce}", instance.prefix());
    let host_if = instance.interface(&format!("verify-metadata-{nonce}"), 'm');
    // A routing table number of our own (and the rule's priority).
    let table = 0x0b00_0000 | (u32::from_str_radix(nonce, 16).unwrap_or(1) & 0x00ff_ffff);
    (netns, host_if, table)
}

fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

impl StandIn {
    /// Builds it for `instance` (whose bridge tenants send from).
    pub(crate) fn build(instance: &Instance, nonce: &str) -> io::Result<StandIn> {
        let (netns, host_if, table) = names(instance, nonce);
        let mut stand_in = StandIn {
            netns,
            host_if,
            table,
            bridge: instance.bridge(),
            _listener: None,
        };
        // On failure, drop removes what was made.
        stand_in.wire()?;
        stand_in._listener = Some(stand_in.listen()?);
        Ok(stand_in)
    }

    fn wire(&self) -> io::Result<()> {
        let (ns, hif) = (self.netns.as_str(), self.host_if.as_str());
        let table = self.table.to_string();
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", hif, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        let md = format!("{METADATA_ADDRESS}/32");
        ip(&["-n", ns, "addr", "add", &md, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "route", "add", "default", "dev", "eth0"])?;
        ip(&["addr", "add", &format!("{HOST_END}/32"), "dev", hif])?;
        ip(&["link", "set", hif, "up"])?;
        ip(&["route", "add", &md, "dev", hif, "table", &table])?;
        ip(&[
            "rule",
            "add",
            "iif",
            &self.bridge,
            "to",
            &md,
            "lookup",
            &table,
            "priority",
            "99",
        ])?;
        // Answers come back in on the host end and are forwarded to the
        // bridge; the stand-in finds the tenants (not masqueraded without
        // `nat`) by proxy ARP on the host end; no reverse-path filter on our
        // own interface.
        sysctl(&format!("/proc/sys/net/ipv4/conf/{hif}/forwarding"), "1")?;
        sysctl(&format!("/proc/sys/net/ipv4/conf/{hif}/proxy_arp"), "1")?;
        sysctl(&format!("/proc/sys/net/ipv4/conf/{hif}/rp_filter"), "0")?;
        Ok(())
    }

    fn listen(&self) -> io::Result<TcpListener> {
        let file = std::fs::File::open(PathBuf::from(NETNS_RUN_DIR).join(&self.netns))?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> io::Result<TcpListener> {
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(LinkNameSpaceType::Network),
                    )?;
                    TcpListener::bind(SocketAddrV4::new(METADATA_ADDRESS, METADATA_PORT))
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let md = format!("{METADATA_ADDRESS}/32");
        let table = self.table.to_string();
        let _ = ip(&[
            "rule",
            "del",
            "iif",
            &self.bridge,
            "to",
            &md,
            "lookup",
            &table,
            "priority",
            "99",
        ]);
        let _ = ip(&["route", "flush", "table", &table]);
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}
