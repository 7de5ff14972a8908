//! Property tests for the tenant translation: random small desired states (three
//! tenants, a few workloads, random rules over every peer kind), written as YAML and
//! loaded by the spec crate, so every case is a state a user could write.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_policy::tenancy::{self, TenancyOptions, TenantMatrix, TranslateProblem};
use bulkhead_policy::{EndpointId, EndpointKey, Engine, GroupKey, Protocol, diff};
use proptest::prelude::*;

const TENANTS: usize = 3;

const PLATFORM: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata: { name: p }
spec:
  network: { tenantRange: 10.240.0.0/24 }
  sharedServices:
    - { name: svc, tenant: t0, workloadSelector: { matchLabels: { app: a } }, ports: [8000-8100/tcp, 53/udp] }
    - { name: ext, cidr: 198.51.100.0/24, ports: [443/tcp] }
";

/// Peers a rule may name; each at most once per rule (two CIDR peers never overlap).
const PEERS: [&str; 12] = [
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
];

/// Port lists; the named one only in egress (ingress names must be declared locally).
const PORTS: [&str; 6] = [
    "",
    "8080/tcp",
    "53/udp",
    "8000-9000/tcp",
    "1-65535/udp",
    "http",
];

const PROBES: [(Protocol, u16); 14] = [
    (Protocol::Tcp, 1),
    (Protocol::Tcp, 53),
    (Protocol::Udp, 53),
    (Protocol::Tcp, 443),
    (Protocol::Tcp, 7999),
    (Protocol::Tcp, 8000),
    (Protocol::Tcp, 8080),
    (Protocol::Tcp, 8100),
    (Protocol::Tcp, 8101),
    (Protocol::Tcp, 9000),
    (Protocol::Tcp, 9090),
    (Protocol::Udp, 8080),
    (Protocol::Sctp, 80),
    (Protocol::Tcp, 65535),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone)]
struct Rule {
    direction: Direction,
    workloads: bool,
    peers: Vec<usize>,
    ports: usize,
}

impl Rule {
    fn yaml(&self) -> String {
        let key = match self.direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        let peers: Vec<&str> = self.peers.iter().map(|&i| PEERS[i]).collect();
        let mut out = format!("{{ {key}: [{}]", peers.join(", "));
        if !PORTS[self.ports].is_empty() {
            out.push_str(&format!(", ports: [{}]", PORTS[self.ports]));
        }
        if self.workloads {
            out.push_str(", workloads: { matchLabels: { app: a } }");
        }
        out.push_str(" }");
        out
    }
}

#[derive(Debug, Clone)]
struct TenantCase {
    red: bool,
    same_tenant: bool,
    /// (app label, http port) per workload.
    workloads: Vec<(Option<&'static str>, u16)>,
    rules: Vec<Rule>,
}

fn rule(direction: Direction) -> impl Strategy<Value = Rule> {
    let ports = match direction {
        Direction::Ingress => 0..PORTS.len() - 1,
        Direction::Egress => 0..PORTS.len(),
    };
    // Biased toward peers that name tenants, so both sides of a path often line up.
    let peer = prop_oneof![
        4 => Just(3usize),
        4 => prop_oneof![Just(0usize), Just(1), Just(2), Just(11)],
        3 => 0..PEERS.len(),
    ];
    let ports = prop_oneof![3 => Just(0usize), 2 => ports];
    (any::<bool>(), prop::collection::vec(peer, 1..=2), ports).prop_map(
        move |(workloads, mut peers, ports)| {
            // Each peer once per rule: two equal CIDR peers would overlap (invalid).
            peers.sort_unstable();
            peers.dedup();
            Rule {
                direction,
                workloads,
                peers,
                ports,
            }
        },
    )
}

fn any_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![rule(Direction::Ingress), rule(Direction::Egress)]
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
        prop::collection::vec(any_rule(), 0..=4),
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
        out.push_str("---\napiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\n");
        let team = if case.red { "red" } else { "blue" };
        out.push_str(&format!(
            "metadata: {{ name: t{t}, labels: {{ team: {team} }} }}\n"
        ));
        let same = if case.same_tenant { "allow" } else { "deny" };
        out.push_str(&format!("spec:\n  network:\n    sameTenant: {same}\n"));
        for direction in [Direction::Ingress, Direction::Egress] {
            let rules: Vec<&Rule> = case
                .rules
                .iter()
                .filter(|r| r.direction == direction)
                .collect();
            if rules.is_empty() {
                continue;
            }
            let key = match direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            out.push_str(&format!("    {key}:\n"));
            for rule in rules {
                out.push_str(&format!("      - {}\n", rule.yaml()));
            }
        }
        for (w, (app, port)) in case.workloads.iter().enumerate() {
            out.push_str("---\napiVersion: bulkhead.dev/v1alpha1\nkind: Workload\n");
            let labels = app
                .map(|a| format!(", labels: {{ app: {a} }}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "metadata: {{ name: w{w}, tenant: t{t}{labels} }}\n"
            ));
            out.push_str(&format!(
                "spec: {{ command: [/bin/w], ports: [{{ name: http, port: {port} }}] }}\n"
            ));
        }
    }
    out
}

fn options() -> TenancyOptions {
    let mut options = TenancyOptions::new()
        .tenant_endpoints(true)
        .external("outside", IpAddr::from([203, 0, 113, 10]))
        .external("hole", IpAddr::from([203, 0, 113, 5]))
        .external("ext-svc", IpAddr::from([198, 51, 100, 7]));
    for t in 0..TENANTS {
        let octet = u8::try_from(10 + t).unwrap_or(u8::MAX);
        options = options.address(format!("t{t}"), IpAddr::from([10, 240, 0, octet]));
    }
    options
}

/// The engine for `tenants`, or `None` when the translation refuses the state for one of
/// the documented port reasons (any other failure fails the test).
fn build(tenants: &[TenantCase]) -> Result<Option<Engine>, TestCaseError> {
    let yaml = render(tenants);
    let desired = bulkhead_spec::load_str("case.yaml", &yaml)
        .map_err(|e| TestCaseError::fail(format!("{e:?}\n{yaml}")))?;
    match tenancy::translate(&desired, &options()) {
        Ok(translation) => {
            // Never widen: no generated rule may have an empty peer list (= everyone).
            for policy in translation.policies() {
                prop_assert!(policy.ingress.iter().all(|r| !r.from.is_empty()));
                prop_assert!(policy.egress.iter().all(|r| !r.to.is_empty()));
            }
            let engine = tenancy::engine_for(&desired, &options())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
            Ok(Some(engine))
        }
        Err(error) => {
            for problem in &error.problems {
                prop_assert!(
                    matches!(
                        problem,
                        TranslateProblem::DisjointServicePorts { .. }
                            | TranslateProblem::NamedPortSplit { .. }
                    ),
                    "{error}\n{yaml}"
                );
            }
            Ok(None)
        }
    }
}

fn group(key: &EndpointKey) -> GroupKey {
    match key {
        EndpointKey::Pod { namespace, .. } => GroupKey::Namespace {
            name: namespace.clone(),
        },
        EndpointKey::External { name } => GroupKey::External { name: name.clone() },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_rule_never_removes_a_connection(
        mut tenants in prop::collection::vec(tenant_case(), TENANTS),
        owner in 0..TENANTS,
        extra in any_rule(),
    ) {
        let Some(before) = build(&tenants)? else { return Ok(()) };
        tenants[owner].rules.push(extra);
        let Some(after) = build(&tenants)? else { return Ok(()) };
        let (m1, m2) = (before.matrix(), after.matrix());
        let pods = diff(&m1, &m2);
        prop_assert!(pods.removed.is_empty(), "{pods}");
        let tenant_level = tenancy::diff_tenants(
            &TenantMatrix::from_engine(&before),
            &TenantMatrix::from_engine(&after),
        );
        prop_assert!(tenant_level.removed.is_empty(), "{tenant_level}");
    }

    #[test]
    fn tenant_matrix_agrees_with_allowed_on_every_pair(
        tenants in prop::collection::vec(tenant_case(), TENANTS),
    ) {
        let Some(engine) = build(&tenants)? else { return Ok(()) };
        let matrix = TenantMatrix::from_engine(&engine);
        let keys: Vec<EndpointKey> = engine.endpoints().cloned().collect();
        let groups: BTreeSet<GroupKey> = keys.iter().map(group).collect();
        for src in &groups {
            for dst in &groups {
                let both_external = matches!(src, GroupKey::External { .. })
                    && matches!(dst, GroupKey::External { .. });
                for (protocol, port) in PROBES {
                    let expected = !both_external
                        && keys.iter().enumerate().any(|(s, sk)| {
                            group(sk) == *src
                                && keys.iter().enumerate().any(|(d, dk)| {
                                    s != d
                                        && group(dk) == *dst
                                        && engine.allowed(
                                            EndpointId(s as u32),
                                            EndpointId(d as u32),
                                            protocol,
                                            port,
                                        )
                                })
                        });
                    prop_assert_eq!(
                        matrix.allowed(src, dst, protocol, port),
                        expected,
                        "{} -> {} {} {}",
                        src,
                        dst,
                        protocol,
                        port
                    );
                }
            }
        }
    }
}
