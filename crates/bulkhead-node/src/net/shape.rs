//! Bandwidth caps with `tc`, all on host-owned devices a tenant cannot reach.
//!
//! - **Egress** (`quota.egress`, what the tenant sends): its packets enter
//!   the host through the host end of its veth. This kernel has no police
//!   action (and no matchall classifier), so the host end's ingress redirects
//!   everything (`u32 match u32 0 0`, `mirred egress redirect`) to an `ifb`
//!   device, [`Instance::interface`]`(tenant, 'i')`, whose root `tbf` shapes
//!   it: a queue, not a policer, so TCP sees delay before loss.
//! - **Ingress** (`quota.ingress`, what the tenant receives): a root `tbf` on
//!   the host end, whose egress is the tenant's inbound traffic.
//!
//! A `tbf` on the tenant's `eth0` would be simpler but sits in a namespace
//! the tenant's user namespace owns; it could delete it.
//!
//! We call `tc` rather than encode `tbf` attributes: `tc` computes the rate
//! tables the kernel expects, this runs once per change, and its JSON output
//! gives the statistics.

use std::process::Command;

use bulkhead_spec::Bandwidth;

use super::error::{CommandError, ShapeError, run};
use super::link;
use crate::naming::Instance;

/// Role letter of the tenant's `ifb` device in [`Instance::interface`].
pub const IFB_ROLE: char = 'i';

/// Queue `tbf` may hold, as delay at the capped rate.
const LATENCY: &str = "50ms";

/// The caps of one tenant (`None`: uncapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// What the tenant may send.
    pub egress: Option<Bandwidth>,
    /// What the tenant may receive.
    pub ingress: Option<Bandwidth>,
}

impl Caps {
    /// From a tenant's quota.
    pub fn of(quota: &bulkhead_spec::Quota) -> Self {
        Caps {
            egress: quota.egress,
            ingress: quota.ingress,
        }
    }
}

/// Bytes, packets and drops of one direction's shaper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShaperStats {
    /// The rate in force, bits per second.
    pub rate_bits: u64,
    /// Bytes sent through it.
    pub bytes: u64,
    /// Packets sent through it.
    pub packets: u64,
    /// Packets dropped (queue full).
    pub drops: u64,
}

/// What is in place for one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShapeState {
    /// The egress shaper (on the `ifb`), if any and if the redirect to it is
    /// in place.
    pub egress: Option<ShaperStats>,
    /// The ingress shaper (root of the host end), if any.
    pub ingress: Option<ShaperStats>,
}

impl ShapeState {
    /// Whether the rates in force are `caps`.
    pub fn matches(&self, caps: &Caps) -> bool {
        self.egress.map(|s| s.rate_bits) == caps.egress.map(|b| b.bits_per_second())
            && self.ingress.map(|s| s.rate_bits) == caps.ingress.map(|b| b.bits_per_second())
    }
}

fn tc(args: &[&str]) -> Result<String, ShapeError> {
    Ok(run(Command::new("tc").args(args), None)?)
}

/// `tc qdisc del`, quiet when there is nothing to delete.
fn tc_del(args: &[&str]) -> Result<(), ShapeError> {
    match run(Command::new("tc").args(args), None) {
        Ok(_) => Ok(()),
        Err(CommandError::Failed { stderr, .. })
            if stderr.contains("Cannot find")
                || stderr.contains("No such file")
                || stderr.contains("Invalid handle")
                || stderr.contains("Cannot delete qdisc with handle of zero") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `tbf` burst: 10 ms at the rate, at least 16 KiB (a few full frames;
/// the veth hands over GSO packets that `tbf` segments).
fn burst(rate: Bandwidth) -> String {
    let bytes = (rate.bits_per_second() / 8 / 100).max(16 * 1024);
    format!("{bytes}b")
}

fn tbf(device: &str, rate: Bandwidth) -> Result<(), ShapeError> {
    let rate_text = format!("{}bit", rate.bits_per_second());
    tc(&[
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "tbf",
        "rate",
        &rate_text,
        "burst",
        &burst(rate),
        "latency",
        LATENCY,
    ])
    .map(drop)
}

/// Sets `caps` on the tenant's host-side devices (the veth must be wired);
/// removes a cap that is `None`. Does nothing when [`observe`] already
/// matches.
pub fn ensure(instance: &Instance, tenant: &str, caps: &Caps) -> Result<bool, ShapeError> {
    if observe(instance, tenant)?.matches(caps) {
        return Ok(false);
    }
    let host = instance.interface(tenant, 'h');
    let ifb = instance.interface(tenant, IFB_ROLE);
    match caps.egress {
        Some(rate) => {
            link::ensure_ifb(&ifb)?;
            tbf(&ifb, rate)?;
            // Re-create the redirect: filters have no cheap idempotent form.
            tc_del(&["qdisc", "del", "dev", &host, "ingress"])?;
            tc(&["qdisc", "add", "dev", &host, "handle", "ffff:", "ingress"])?;
            tc(&[
                "filter", "add", "dev", &host, "parent", "ffff:", "protocol", "all", "prio", "1",
                "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                &ifb,
            ])?;
        }
        None => {
            tc_del(&["qdisc", "del", "dev", &host, "ingress"])?;
            tc_del(&["qdisc", "del", "dev", &ifb, "root"])?;
        }
    }
    match caps.ingress {
        Some(rate) => tbf(&host, rate)?,
        None => tc_del(&["qdisc", "del", "dev", &host, "root"])?,
    }
    Ok(true)
}

/// The root `tbf` of `device`, if there is one.
fn root_tbf(device: &str) -> Result<Option<ShaperStats>, ShapeError> {
    let json = match run(
        Command::new("tc").args(["-s", "-j", "qdisc", "show", "dev", device]),
        None,
    ) {
        Ok(json) => json,
        Err(CommandError::Failed { stderr, .. })
            if stderr.contains("Cannot find device") || stderr.contains("No such device") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let bad = |message: String| ShapeError::Json {
        interface: device.to_owned(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| bad(e.to_string()))?;
    let Some(qdiscs) = value.as_array() else {
        return Err(bad("expected an array".to_owned()));
    };
    Ok(qdiscs
        .iter()
        .find(|q| q["kind"] == "tbf" && q["root"] == true)
        .map(|q| ShaperStats {
            // tc reports the rate in bytes per second.
            rate_bits: q["options"]["rate"].as_u64().unwrap_or(0) * 8,
            bytes: q["bytes"].as_u64().unwrap_or(0),
            packets: q["packets"].as_u64().unwrap_or(0),
            drops: q["drops"].as_u64().unwrap_or(0),
        }))
}

/// Whether the host end's ingress redirects to the `ifb`.
fn redirected(host: &str, ifb: &str) -> Result<bool, ShapeError> {
    match run(
        Command::new("tc").args(["-j", "filter", "show", "dev", host, "ingress"]),
        None,
    ) {
        Ok(json) => Ok(json.contains("mirred") && json.contains(&format!("\"{ifb}\""))),
        Err(CommandError::Failed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The shapers in place and their counters.
pub fn observe(instance: &Instance, tenant: &str) -> Result<ShapeState, ShapeError> {
    let host = instance.interface(tenant, 'h');
    let ifb = instance.interface(tenant, IFB_ROLE);
    let egress = match root_tbf(&ifb)? {
        Some(stats) if redirected(&host, &ifb)? => Some(stats),
        _ => None,
    };
    Ok(ShapeState {
        egress,
        ingress: root_tbf(&host)?,
    })
}

/// Removes both caps (the `ifb` goes with [`link::remove_tenant`]).
pub fn remove(instance: &Instance, tenant: &str) -> Result<(), ShapeError> {
    ensure(instance, tenant, &Caps::default()).map(drop)
}
