//! The firewall compiler without a kernel: the examples' ruleset (golden),
//! and the compiled sets against the policy engine on random desired states.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bulkhead_node::naming::Instance;
use bulkhead_node::net::firewall::{self, Ruleset};

fn examples() -> bulkhead_spec::Desired {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[dir]).expect("the examples are valid")
}

/// Addresses in name order from .2, as the store would allocate them.
fn addresses(desired: &bulkhead_spec::Desired) -> BTreeMap<String, Ipv4Addr> {
    let range = match desired.platform.spec.network.tenant_range {
        ipnet::IpNet::V4(r) => r,
        ipnet::IpNet::V6(_) => panic!("IPv4 range expected"),
    };
    let mut taken = std::collections::BTreeSet::new();
    desired
        .tenants
        .keys()
        .map(|t| {
            let a = bulkhead_node::net::allocate(range, &taken).expect("room");
            taken.insert(a);
            (t.to_string(), a)
        })
        .collect()
}

fn compiled(desired: &bulkhead_spec::Desired) -> Ruleset {
    let instance = Instance::new("bh", Path::new("/var/lib/bulkhead"));
    firewall::compile(&instance, desired, &addresses(desired)).expect("compiles")
}

#[test]
fn examples_ruleset_is_pinned() {
    let ruleset = compiled(&examples());
    insta::assert_snapshot!("examples_ruleset", ruleset.render());
    let deviations: Vec<String> = ruleset.deviations.iter().map(ToString::to_string).collect();
    insta::assert_debug_snapshot!("examples_deviations", deviations);
}

mod properties {
    //! Random small desired states (the policy crate's generator, condensed):
    //! the compiled ruleset never allows what the engine denies, and allows
    //! exactly what it allows when no rule depends on which workload of a
    //! tenant is talking (no workload selectors, no named ports).

    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use bulkhead_node::naming::Instance;
    use bulkhead_node::net::FirewallError;
    use bulkhead_node::net::firewall;
    use bulkhead_policy::tenancy::{self, TENANT_ENDPOINT, TenancyError, TenancyOptions};
    use bulkhead_policy::{EndpointId, Protocol};
    use proptest::prelude::*;

    const TENANTS: usize = 3;

    const PLATFORM: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata: { name: p }
spec:
  network: { tenantRange: 10.240.0.0/24, nat: true }
  sharedServices:
    - { name: svc, tenant: t0, workloadSelector: { matchLabels: { app: a } }, ports: [8000-8100/tcp, 53/udp] }
    - { name: ext, cidr: 198.51.100.0/24, ports: [443/tcp] }
";

    /// Peers; `SELECTOR_PEERS` depend on which workload is meant.
    const PEERS: [&str; 13] = [
        "{ tenant: t0 }",
        "{ tenant: t1, workloadSelector: { matchLabels: { app: a } } }",
        "{ tenant: t2 }",
        "{ tenantSelector: {} }",
        "{ tenantSelector: { matchLabels: { team: red } } }",
        "{ tenantSelector: { matchLabels: { team: red } }, workloadSelector: { matchExpressions: [{ key: app, operator: NotIn, values: [a] }] } }",
        "{ cidr: 203.0.113.0/24, except: [203.0.113.0/29] }",
        "{ cidr: 198.51.100.0/24 }",
        "{ dns: true }",
        "{ service: svc }",
        "{ service: ext }",
        "{ tenant: t1 }",
        "{ cidr: 169.254.0.0/16 }",
    ];
    const SELECTOR_PEERS: [usize; 3] = [1, 5, 9];
    const PORTS: [&str; 6] = [
        "",
        "8080/tcp",
        "53/udp",
        "8000-9000/tcp",
        "1-65535/udp",
        "http",
    ];
    const NAMED_PORTS: usize = 5;

    const PROBES: [(Protocol, u16); 12] = [
        (Protocol::Tcp, 1),
        (Protocol::Tcp, 53),
        (Protocol::Udp, 53),
        (Protocol::Tcp, 443),
        (Protocol::Tcp, 7999),
        (Protocol::Tcp, 8000),
        (Protocol::Tcp, 8080),
        (Protocol::Tcp, 9000),
        (Protocol::Tcp, 9090),
        (Protocol::Udp, 8080),
        (Protocol::Sctp, 80),
        (Protocol::Tcp, 65535),
    ];

    /// Externals the engine is asked about, none of them a compile-time class
    /// representative: the classes must stand for every address inside.
    const EXTERNALS: [(&str, [u8; 4]); 6] = [
        ("outside", [203, 0, 113, 10]),
        ("hole", [203, 0, 113, 5]),
        ("ext-svc", [198, 51, 100, 7]),
        ("metadata", [169, 254, 169, 254]),
        ("far", [192, 0, 2, 77]),
        ("top", [255, 255, 255, 254]),
    ];

    #[derive(Debug, Clone)]
    struct Rule {
        ingress: bool,
        workloads: bool,
        peers: Vec<usize>,
        ports: usize,
    }

    #[derive(Debug, Clone)]
    struct TenantCase {
        red: bool,
        same_tenant: bool,
        workloads: Vec<(Option<&'static str>, u16)>,
        rules: Vec<Rule>,
    }

    fn rule() -> impl Strategy<Value = Rule> {
        let peer = prop_oneof![
            4 => Just(3usize),
            4 => prop_oneof![Just(0usize), Just(1), Just(2), Just(11)],
            3 => 0..PEERS.len(),
        ];
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(peer, 1..=2),
            prop_oneof![3 => Just(0usize), 2 => 0..PORTS.len()],
        )
            .prop_map(|(ingress, workloads, mut peers, ports)| {
                peers.sort_unstable();
                peers.dedup();
                // Ingress names must be declared by the tenant's own workloads.
                let ports = if ingress && ports == NAMED_PORTS {
                    0
                } else {
                    ports
                };
                Rule {
                    ingress,
                    workloads,
                    peers,
                    ports,
                }
            })
    }

    fn tenant_case() -> impl Strategy<Value = TenantCase> {
        let workload = (
            prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
            prop_oneof![Just(8080u16), Just(9090u16)],
        );
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(workload, 0..=2),
            prop::collection::vec(rule(), 0..=4),
        )
            .prop_map(|(red, same_tenant, workloads, rules)| TenantCase {
                red,
                same_tenant,
                workloads,
                rules,
            })
    }

    fn render(tenants: &[TenantCase]) -> String {
        let mut out = PLATFORM.to_owned();
        for (t, case) in tenants.iter().enumerate() {
            let team = if case.red { "red" } else { "blue" };
            let same = if case.same_tenant { "allow" } else { "deny" };
            out.push_str(&format!(
                "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata: {{ name: t{t}, labels: {{ team: {team} }} }}\nspec:\n  network:\n    sameTenant: {same}\n"
            ));
            for (ingress, key, side) in [(true, "ingress", "from"), (false, "egress", "to")] {
                let rules: Vec<&Rule> =
                    case.rules.iter().filter(|r| r.ingress == ingress).collect();
                if rules.is_empty() {
                    continue;
                }
                out.push_str(&format!("    {key}:\n"));
                for r in rules {
                    let peers: Vec<&str> = r.peers.iter().map(|&i| PEERS[i]).collect();
                    let mut line = format!("      - {{ {side}: [{}]", peers.join(", "));
                    if !PORTS[r.ports].is_empty() {
                        line.push_str(&format!(", ports: [{}]", PORTS[r.ports]));
                    }
                    if r.workloads {
                        line.push_str(", workloads: { matchLabels: { app: a } }");
                    }
                    out.push_str(&line);
                    out.push_str(" }\n");
                }
            }
            for (w, (app, port)) in case.workloads.iter().enumerate() {
                let labels = app
                    .map(|a| format!(", labels: {{ app: {a} }}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: w{w}, tenant: t{t}{labels} }}\nspec: {{ command: [/bin/w], ports: [{{ name: http, port: {port} }}] }}\n"
                ));
            }
        }
        out
    }

    fn workload_blind(tenants: &[TenantCase]) -> bool {
        tenants.iter().flat_map(|t| &t.rules).all(|r| {
            !r.workloads
                && r.ports != NAMED_PORTS
                && !r.peers.iter().any(|p| SELECTOR_PEERS.contains(p))
        })
    }

    fn address(t: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 240, 0, 10 + t as u8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn compiled_sets_never_widen_the_engine(
            tenants in prop::collection::vec(tenant_case(), TENANTS..=TENANTS)
        ) {
            let yaml = render(&tenants);
            let desired = bulkhead_spec::load_str("case.yaml", &yaml)
                .map_err(|e| TestCaseError::fail(format!("{e:?}\n{yaml}")))?;
            let addresses: BTreeMap<String, Ipv4Addr> =
                (0..TENANTS).map(|t| (format!("t{t}"), address(t))).collect();
            let instance = Instance::new("pt", Path::new("/nonexistent"));
            let ruleset = match firewall::compile(&instance, &desired, &addresses) {
                Ok(r) => r,
                // The translation refuses some port combinations on purpose.
                Err(FirewallError::Policy(TenancyError::Translate(_))) => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("{e:?}\n{yaml}"))),
            };
            // Without NAT nothing leaves the host: the same tenants compiled with
            // `nat: false` reach no address beyond it, and say so when the engine
            // would have allowed some.
            let closed_yaml = yaml.replace("nat: true", "nat: false");
            let closed_desired = bulkhead_spec::load_str("case.yaml", &closed_yaml)
                .map_err(|e| TestCaseError::fail(format!("{e:?}\n{closed_yaml}")))?;
            let closed = firewall::compile(&instance, &closed_desired, &addresses)
                .map_err(|e| TestCaseError::fail(format!("{e:?}\n{closed_yaml}")))?;
            let leaving = ruleset.allow.iter().any(|a| {
                !ruleset.range.contains(&a.dst.first) && a.dst != firewall::AddrRange::one(ruleset.bridge_address)
            });
            prop_assert_eq!(
                leaving,
                closed.deviations.iter().any(|d| matches!(d, firewall::Deviation::Narrowed { reason: firewall::NarrowReason::NoNat, .. })),
                "{}", closed_yaml
            );
            for a in 0..TENANTS {
                for (_, ip) in EXTERNALS {
                    for (proto, port) in PROBES {
                        prop_assert!(!closed.allows(address(a), Ipv4Addr::from(ip), false, proto, port),
                            "t{a} leaves the host without NAT\n{}", closed_yaml);
                    }
                }
            }
            let mut options = TenancyOptions::new().tenant_endpoints(true);
            for (t, a) in &addresses {
                options = options.address(t.clone(), IpAddr::V4(*a));
            }
            for (name, ip) in EXTERNALS {
                options = options.external(name, IpAddr::from(ip));
            }
            let engine = tenancy::engine_for(&desired, &options)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
            let exact = workload_blind(&tenants);
            let endpoints = |t: usize| -> Vec<EndpointId> {
                let case = &tenants[t];
                if case.workloads.is_empty() {
                    engine.pod(&format!("t{t}"), TENANT_ENDPOINT).into_iter().collect()
                } else {
                    (0..case.workloads.len())
                        .filter_map(|w| engine.pod(&format!("t{t}"), &format!("w{w}")))
                        .collect()
                }
            };
            let check = |fw: bool, engine_says: bool, what: String| -> Result<(), TestCaseError> {
                prop_assert!(!fw || engine_says, "firewall wider than the engine: {}\n{}", what, yaml);
                if exact {
                    prop_assert_eq!(fw, engine_says, "{}\n{}", what, yaml);
                }
                Ok(())
            };
            for a in 0..TENANTS {
                for b in (0..TENANTS).filter(|b| *b != a) {
                    for (proto, port) in PROBES {
                        let fw = ruleset.allows(address(a), address(b), false, proto, port);
                        for s in endpoints(a) {
                            for d in endpoints(b) {
                                check(fw, engine.allowed(s, d, proto, port),
                                    format!("t{a}->t{b} {proto} {port}"))?;
                            }
                        }
                    }
                }
                for (name, ip) in EXTERNALS.iter().map(|(n, ip)| (*n, Ipv4Addr::from(*ip)))
                    .chain([("dns", Ipv4Addr::new(10, 240, 0, 1))])
                {
                    let Some(x) = engine.external(name) else { continue };
                    let link_local = ip.octets()[..2] == [169, 254];
                    let local = ip == Ipv4Addr::new(10, 240, 0, 1);
                    for (proto, port) in PROBES {
                        let out = ruleset.allows(address(a), ip, local, proto, port);
                        let back = ruleset.allows(ip, address(a), false, proto, port);
                        for s in endpoints(a) {
                            let egress = engine.allowed(s, x, proto, port);
                            let ingress = engine.allowed(x, s, proto, port);
                            if link_local {
                                prop_assert!(!out, "link-local reached\n{}", yaml);
                                prop_assert!(!back || ingress);
                            } else {
                                check(out, egress, format!("t{a}->{name} {proto} {port}"))?;
                                // The host (the resolver) is not filtered toward tenants.
                                if !local {
                                    check(back, ingress, format!("{name}->t{a} {proto} {port}"))?;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
