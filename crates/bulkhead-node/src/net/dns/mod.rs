//! The instance's DNS view: a resolver on the bridge address that answers
//! the platform's names, each tenant seeing only the names it may reach.
//!
//! - [`zone`]: [`compile`] asks the policy engine (the same translation as
//!   the firewall, [`bulkhead_policy::tenancy`]) and writes, per tenant
//!   address, which of `<tenant>` and `<workload>.<tenant>` it may resolve:
//!   `<tenant B>` when some endpoint of it may reach some endpoint of B on
//!   some port, `<w>.<B>` when it may reach workload `w`; its own names
//!   always. Everything else
//!   under a tenant name is `NXDOMAIN` (so is a single label); other names
//!   go to `platform.spec.network.upstreamDns` if it lists servers (those
//!   only), else `NXDOMAIN` too. A source that is no tenant is `REFUSED`.
//! - [`wire`]: the DNS message format, written here (about 200 lines: one
//!   question in, A records out) rather than taken from a crate: the DNS
//!   crates we know (hickory, domain) bring a full server or an async
//!   runtime for what is a header, a name and a few fixed-size records, and
//!   a small parser is easier to fuzz and to audit.
//! - [`server`]: the long-lived process (the `bulkhead` binary re-executed
//!   with [`RESOLVER_ENV`], like the sandbox holder): UDP and TCP 53 on the
//!   bridge address, then it drops to uid/gid 65534. Forwarding relays the
//!   tenant's query unchanged and its answer unchanged (id and question
//!   checked), at most 64 forwards or TCP clients at once.
//! - [`process`]: [`start`] (the host action `StartResolver`, planned when it
//!   does not run or its zone's digest differs from the compiled one),
//!   [`observe`], [`stop`] (`gc --all`, or the last tenant gone).
//!
//! Tenants reach the resolver only through the firewall's `@allow` set
//! (a `dns: true` egress rule), and their sandbox's `/etc/resolv.conf`
//! names it (`SandboxConfig::nameserver`). The bridge's anti-spoofing table
//! pins each tenant to its own source address, which selects its view.
//!
//! What the view does not hide: with `upstreamDns` set, a two-label name
//! whose last label is not a tenant is forwarded, one that is is answered
//! here, so timing can tell a tenant name from another name. Names are not
//! secret in the spec's threat model (they appear in rules); what a tenant
//! may reach is.

mod process;
pub mod server;
pub mod wire;
pub mod zone;

pub use process::{ResolverError, ResolverState, observe, start, stop};
pub use server::{RESOLVER_ENV, is_resolver_invocation, resolver_main};
pub use zone::{Answer, Index, Zone, compile, served_on_bridge};
