//! Tenant networks on one host: wiring ([`link`]), the firewall
//! ([`firewall`]), bandwidth caps ([`shape`]), the DNS view ([`dns`]) and
//! cutting a tenant's tracked connections ([`conntrack`]). Library only: `apply`
//! calls these idempotent functions, `observe` reads back what is there.
//!
//! # Wiring ([`link`])
//!
//! The instance bridge [`Instance::bridge`](crate::naming::Instance::bridge)
//! carries the first usable address of `platform.spec.network.tenantRange`
//! (the *gateway*) and a fixed MAC ([`gateway_mac`]), and routes what
//! arrives on it (its own `forwarding` switch; the host-wide one is never
//! touched). Per tenant, one veth pair made in a single netlink request: the
//! host end [`Instance::interface`](crate::naming::Instance::interface)`(tenant, 'h')`
//! enslaved to the bridge as an **isolated** port, the peer created directly
//! as `eth0` inside the tenant's namespace (opened from
//! `/run/netns/<instance>-<tenant>` or `/proc/<pid>/ns/net`) with a MAC
//! derived from its address ([`tenant_mac`]), `lo` and `eth0` up. Addresses
//! come from the store, which allocates them with [`allocate`] (lowest free
//! host address, never network, broadcast or bridge).
//!
//! Tenants are **routed, not bridged**: a tenant's address is a `/32`, its
//! only routes are the gateway on the link and the default via it, and
//! every packet to a peer goes to the gateway, through the host's routing
//! and the `inet` firewall, and back out of the bridge. Isolated ports pass
//! no frame from one tenant port to another, whatever a tenant writes into
//! its own tables. Both sides hold **permanent** neighbour entries — the
//! gateway's MAC in the tenant's namespace, the tenant's MAC on the bridge —
//! so nothing is resolved by ARP: the bridge table drops every ARP frame
//! from a tenant port, no ARP packet can redirect anyone's traffic, and
//! tenants add nothing to the host's neighbour table, which is one table
//! for every namespace (`gc_thresh3`, 1,024 by default: with a shared
//! subnet, N tenants reaching each other needed about N² entries and 50
//! tenants overflowed it). The host would send ICMP redirects ("reach the
//! peer directly") for traffic it routes back out of the link it came in
//! on, and a tenant that followed one would ARP for its peer: the
//! firewall's `output` chain drops them (a per-namespace
//! `accept_redirects` switch would need `/proc/sys` lookups whose cost
//! grows with the number of namespaces). [`link::observe_tenant`] checks
//! every other fact above, and
//! [`link::ensure_tenant`] repairs any that drifted.
//!
//! **Bridge shards.** Adding a port costs the kernel work that grows with
//! the ports already on the bridge (promiscuity, adjacency lists and static
//! FDB entries are walked per port), so tenants are spread over bridges of
//! at most [`link::PORTS_PER_BRIDGE`] (128) ports by address: shard `k`
//! ([`Instance::bridge_shard`](crate::naming::Instance::bridge_shard), `k` ≥ 1:
//! `<instance>-b<k in hex>`) holds addresses `128k … 128k+127` of the range.
//! Shard 0 is the instance bridge with the gateway address; each other shard
//! carries no address, the gateway's MAC, snooping and IPv6 off, routing on,
//! and the host's route to its block (`10.x.y.128/25 dev <shard> src
//! <gateway>`), made when its first tenant is wired. A tenant sees no
//! difference: its gateway has the same address and MAC on every shard. The
//! firewall names the shards in one `bridges` set (elements, so a new shard
//! is an incremental edit). Bridge multicast snooping and IPv6 on the host
//! ends are off (both add per-device work that walks every device). Measured
//! (`bench/README.md`, `net-onboarding`, `wiring-scale`): per-tenant wiring
//! at N=1,000 about 1.2× that at N=100, against 1.6–2.3× on one bridge.
//! Because tenants are routed, a range another interface of the host
//! already routes (a host network, another instance) is refused
//! ([`LinkError::RangeInUse`]): the two would take each other's traffic.
//!
//! Netlink is spoken directly (`netlink.rs`, about 400 lines over `rustix`
//! sockets, no `unsafe`), not through `rtnetlink`: no async runtime for a
//! handful of request/acknowledge exchanges, and a socket inside a tenant's
//! namespace comes from a short thread that joined it. Measured here
//! (unpinned, debug build): about 1-2 ms per tenant over netlink against
//! about 17 ms with one `ip` exec per step.
//!
//! # The firewall ([`firewall`])
//!
//! [`firewall::compile`] asks the policy engine
//! ([`bulkhead_policy::tenancy`], the one translation of tenant rules) and
//! turns its answers into set elements; nothing is written per rule. Two
//! tables, both [`Instance::nft_table`](crate::naming::Instance::nft_table):
//!
//! - `table bridge` — anti-spoofing, stateless (this kernel has no bridge
//!   conntrack): a frame from a tenant port must be IPv4 and carry that
//!   port's MAC and address (`iifname . ether saddr . ip saddr @port_addrs`);
//!   anything else — ARP (never needed, see above), IPv6, any other ether
//!   type — is dropped and counted per port (`spoof_drops`).
//! - `table inet` — stateful: every tenant packet is routed by the host, so
//!   it meets the `inet` hooks whether or not `br_netfilter` is loaded (no
//!   frame crosses the bridge from one tenant port to another; were one to,
//!   the isolated ports would drop it). `forward` sends packets from the
//!   bridge to `from_tenant` and to it to `to_tenant`; `input` sends
//!   packets from the bridge to `tenant_to_host`. Each chain: established
//!   and related accepted, IPv6 dropped, 169.254.0.0/16 dropped unless
//!   `allowLinkLocal` (and, without NAT, anything routed out of another
//!   interface: `from_tenant` drops `oifname != <bridge>`), then **one** lookup
//!   `ip saddr . ip daddr . meta l4proto . th dport @allow`, then a counted
//!   drop (`egress_drops`/`ingress_drops`, one counter per tenant). Toward
//!   the host only the resolver (through `@allow`) and `hostPorts`
//!   (`@host_ports`) are open, whatever address a tenant aims at. With
//!   `nat: true` a `postrouting` chain masquerades what leaves the host;
//!   without, a rule a tenant has toward an address beyond the host is
//!   narrowed ([`firewall::NarrowReason::NoNat`]) and `plan` says so.
//!
//! The conntrack table is one kernel table for the whole host. So that no
//! tenant fills it for the others, `from_tenant` and `tenant_to_host` refuse
//! (chain `over_share`: a TCP reset, so the client sees ECONNREFUSED at once,
//! else ICMP port unreachable — which the kernel rate-limits per peer, so a
//! TCP client would mostly time out on it) a new
//! connection from a tenant address that already has
//! `platform.spec.network.connectionsPerTenant` tracked connections (default
//! 16,384): `ct state new add @tenant_conns { ip saddr ct count over N } jump
//! over_share`, one rule per chain, the count kept per tenant in the dynamic set's
//! elements (`nft_connlimit`; closed and TIME_WAIT connections do not count).
//! One value for every tenant, because a connlimit's number belongs to the
//! rule: per-tenant values would make the rules grow with the distinct
//! values. Connections from off the host to a tenant are not counted here.
//!
//! `allow` is an interval set of (source, destination, protocol, port
//! range). Tenant-to-tenant entries are single addresses; addresses outside
//! the range are cut into *classes* at every ipBlock and `except` boundary
//! of every policy (plus the resolver and the link-local range), each class
//! asked of the engine once through a representative external endpoint and
//! written as an address range. So each packet costs one set lookup
//! whatever the number of tenants and rules (a pipapo lookup, not a rule
//! walk), the rule count is constant (32 with or without NAT, 30 with
//! `allowLinkLocal`; [`firewall::Ruleset::chain_rules`]), and only elements
//! grow: per tenant 3 anti-spoofing/counter elements in each table plus one
//! `allow` element per allowed (peer, port range). The examples' four
//! tenants load 10 `allow` elements; 1,000 tenants with similar rules need a
//! few thousand; the worst case, every tenant to every tenant on one port,
//! is N·(N−1) ≈ 1M elements (HOST-FACTS: such a set forwards at
//! 12.5 Gbit/s where per-pair rules managed 0.31 Mbit/s).
//!
//! [`firewall::apply`] replaces both tables in one `nft -f -` transaction;
//! [`firewall::update`] moves from the loaded ruleset to a new one by
//! adding and deleting elements only ([`firewall::Ruleset::delta`]: adding a
//! tenant is its own elements, nothing else), falling back to the atomic
//! replacement when more changed. Element edits go to the kernel directly
//! over nfnetlink (`netlink.rs`: `NFT_MSG_DELSETELEM` then
//! `NFT_MSG_NEWSETELEM` for both tables between one batch begin and end,
//! so one transaction, each message acknowledged; keys encoded as the kernel
//! stores them): no `nft` process and no fetch of the table and its
//! elements first, which made each edit cost grow with the tenants. Deltas
//! over 2,000 elements still go through `nft -f -` (a batch is one datagram).
//! A root test adds and deletes every kind of element this way and reads
//! them back with `nft -j`. [`firewall::observe`] reads the tables
//! back (`nft -j`) for drift ([`firewall::FirewallState::drift`]) and the
//! per-tenant counters.
//!
//! `apply` loads through [`firewall::load`], which never trusts a cache the
//! kernel disagrees with: after each full replacement it records what the
//! kernel then lists (tables, chains, rules and set declarations, without
//! handles and per-tenant elements) in
//! [`Instance::firewall_record`](crate::naming::Instance::firewall_record).
//! A later load edits set elements only ([`firewall::Ruleset::delta_from`],
//! computed from the elements the kernel holds, not from what we think we
//! loaded) when both tables exist, the kernel still lists exactly the
//! recorded rules and the new ruleset has the recorded shape
//! ([`firewall::Ruleset::shape`]); otherwise — first load, a changed
//! range/resolver/`hostPorts`/NAT/link-local, drift such as a flushed table,
//! or a failed element transaction — it replaces both tables atomically and
//! records again. [`firewall::how`] says which, with the reason; `plan` and
//! `apply` print it. Element edits leave the other tenants' counters and
//! their tracked connections untouched; a full replacement restarts the
//! counters from zero.
//!
//! # What is narrowed, and why
//!
//! All workloads of a tenant share its namespace and so its one address:
//! the host cannot tell them apart. A rule that holds for some workloads
//! only (a `workloads`/`workloadSelector` selector, a named port that
//! resolves differently per workload) is kept only where it holds for
//! **every** workload pair (the intersection: narrow, never widen), and each
//! loss is a [`firewall::Deviation::Narrowed`] that `plan` can print.
//! Link-local destinations dropped by the platform are reported the same
//! way. Traffic between workloads of one tenant never leaves its namespace:
//! where the engine denies some of it (`sameTenant: deny`, selectors), the
//! host cannot enforce it, reported as [`firewall::Deviation::NotEnforced`].
//! Without selectors or named ports the firewall equals the engine (a
//! property test checks both claims). Host-originated traffic is not
//! filtered (the host is trusted, and the verifier probes from it).
//!
//! # Bandwidth ([`shape`])
//!
//! `quota.egress`: the host end's ingress redirects to a per-tenant `ifb`
//! whose `tbf` shapes; `quota.ingress`: a `tbf` on the host end. Both on
//! host-owned devices the tenant cannot reach; `tc` is called, not encoded.
//! Bytes, packets and drops come from `tc -s -j`, drop counters per tenant
//! from the firewall's sets.

mod addr;
pub mod conntrack;
pub mod dns;
mod error;
pub mod firewall;
pub mod link;
mod netlink;
pub mod report;
pub mod shape;

pub use addr::{allocate, bridge_address, format_mac, gateway_mac, tenant_mac};
pub use error::{CommandError, FirewallError, LinkError, ShapeError};
