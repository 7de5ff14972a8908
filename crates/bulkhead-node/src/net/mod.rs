//! Tenant networks (placeholder docs, completed below).

mod addr;
mod error;
pub mod firewall;
pub mod link;
mod netlink;
pub mod shape;

pub use addr::{allocate, bridge_address, format_mac, tenant_mac};
pub use error::{CommandError, FirewallError, LinkError, ShapeError};
