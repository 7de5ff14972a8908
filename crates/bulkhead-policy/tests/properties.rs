//! Property tests: random small clusters, every pair, ports probing every class edge.

use std::net::{IpAddr, Ipv4Addr};

use bulkhead_policy::{
    Cluster, EgressRule, EndpointKey, Engine, EngineOptions, ExternalEndpoint, IngressRule,
    IpBlock, LabelSelector, Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortRef, PortSpec,
    Protocol, ReachabilityMatrix, SelectorOperator, diff,
};
use proptest::prelude::*;

const NAMESPACES: [&str; 3] = ["n0", "n1", "n2"];
const PROBE_PORTS: [u16; 15] = [
    1, 52, 53, 54, 69, 70, 79, 80, 81, 90, 91, 443, 8080, 9090, 65535,
];

fn pod_selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        Just(LabelSelector::with_label("app", "web")),
        Just(LabelSelector::with_label("app", "db")),
        Just(LabelSelector::everything().and_expression(
            "app",
            SelectorOperator::In,
            ["web", "db"]
        )),
        Just(LabelSelector::everything().and_expression("app", SelectorOperator::NotIn, ["db"])),
        Just(LabelSelector::everything().and_expression("tier", SelectorOperator::Exists, [""; 0])),
        Just(LabelSelector::everything().and_expression(
            "tier",
            SelectorOperator::DoesNotExist,
            [""; 0]
        )),
    ]
}

fn namespace_selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::everything()),
        Just(LabelSelector::with_label("team", "red")),
        Just(LabelSelector::with_label("team", "blue")),
        Just(LabelSelector::with_label(
            "kubernetes.io/metadata.name",
            "n1"
        )),
        Just(LabelSelector::everything().and_expression("team", SelectorOperator::NotIn, ["red"])),
    ]
}

fn ip_block() -> impl Strategy<Value = IpBlock> {
    prop_oneof![
        Just(IpBlock::new("10.0.0.0/8")),
        Just(IpBlock::new("10.0.0.0/16").except("10.0.1.0/24")),
        Just(IpBlock::new("8.8.8.0/24")),
        Just(IpBlock::new("0.0.0.0/0").except("10.0.0.0/8")),
        Just(IpBlock::new("10.0.9.9/32")),
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        pod_selector().prop_map(Peer::pods),
        namespace_selector().prop_map(Peer::namespaces),
        (pod_selector(), namespace_selector()).prop_map(|(p, n)| Peer::pods_in_namespaces(p, n)),
        ip_block().prop_map(Peer::ip_block),
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        Just(PortSpec::tcp(80)),
        Just(PortSpec::tcp(8080)),
        Just(PortSpec::udp(53)),
        Just(PortSpec::range(Protocol::Tcp, 70, 90)),
        Just(PortSpec::named(Protocol::Tcp, "http")),
        Just(PortSpec::named(Protocol::Udp, "dns")),
        Just(PortSpec::all(Protocol::Udp)),
        Just(PortSpec {
            protocol: None,
            port: Some(PortRef::Number(443)),
            end_port: None
        }),
    ]
}

fn ingress_rule() -> impl Strategy<Value = IngressRule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_spec(), 0..3),
    )
        .prop_map(|(from, ports)| IngressRule { from, ports })
}

fn egress_rule() -> impl Strategy<Value = EgressRule> {
    (
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_spec(), 0..3),
    )
        .prop_map(|(to, ports)| EgressRule { to, ports })
}

fn policy_types() -> impl Strategy<Value = Option<Vec<PolicyType>>> {
    prop_oneof![
        Just(None),
        Just(Some(vec![PolicyType::Ingress])),
        Just(Some(vec![PolicyType::Egress])),
        Just(Some(vec![PolicyType::Ingress, PolicyType::Egress])),
    ]
}

fn policy(index: usize) -> impl Strategy<Value = NetworkPolicy> {
    (
        0..NAMESPACES.len(),
        pod_selector(),
        policy_types(),
        prop::collection::vec(ingress_rule(), 0..3),
        prop::collection::vec(egress_rule(), 0..3),
    )
        .prop_map(
            move |(ns, pod_selector, policy_types, ingress, egress)| NetworkPolicy {
                namespace: NAMESPACES[ns].to_owned(),
                name: format!("p{index}"),
                pod_selector,
                policy_types,
                ingress,
                egress,
            },
        )
}

fn policies() -> impl Strategy<Value = Vec<NetworkPolicy>> {
    (0usize..5).prop_flat_map(|count| (0..count).map(policy).collect::<Vec<_>>())
}

/// Namespaces, pods and external endpoints, without policies.
fn topology() -> impl Strategy<Value = Cluster> {
    let team = prop_oneof![Just(None), Just(Some("red")), Just(Some("blue"))];
    let pod = (
        prop_oneof![Just(None), Just(Some("web")), Just(Some("db"))],
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(80u16)), Just(Some(8080u16))],
        any::<bool>(),
    );
    (
        prop::collection::vec(team, 3),
        prop::collection::vec(prop::collection::vec(pod, 0..4), 3),
    )
        .prop_map(|(teams, pods)| {
            let mut cluster = Cluster::new();
            for (i, team) in teams.into_iter().enumerate() {
                let mut ns = Namespace::new(NAMESPACES[i]);
                if let Some(team) = team {
                    ns = ns.label("team", team);
                }
                cluster = cluster.namespace(ns);
            }
            for (n, list) in pods.into_iter().enumerate() {
                for (i, (app, tier, http, dns)) in list.into_iter().enumerate() {
                    let octets = [
                        10,
                        0,
                        u8::try_from(n).unwrap_or(0),
                        u8::try_from(i + 1).unwrap_or(0),
                    ];
                    let mut pod = Pod::new(NAMESPACES[n], format!("pod{i}"))
                        .ip(IpAddr::V4(Ipv4Addr::from(octets)));
                    if let Some(app) = app {
                        pod = pod.label("app", app);
                    }
                    if tier {
                        pod = pod.label("tier", "x");
                    }
                    if let Some(port) = http {
                        pod = pod.port("http", port, Protocol::Tcp);
                    }
                    if dns {
                        pod = pod.port("dns", 53, Protocol::Udp);
                    }
                    cluster = cluster.pod(pod);
                }
            }
            cluster
                .external(ExternalEndpoint::new(
                    "inside",
                    "10.0.9.9"
                        .parse()
                        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                ))
                .external(ExternalEndpoint::new(
                    "world",
                    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
                ))
        })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (topology(), policies()).prop_map(|(mut cluster, policies)| {
        cluster.policies = policies;
        cluster
    })
}

fn options() -> impl Strategy<Value = EngineOptions> {
    any::<bool>().prop_map(|yes| EngineOptions::default().ip_block_matches_pods(yes))
}

fn build(cluster: &Cluster, options: EngineOptions) -> (Engine, ReachabilityMatrix) {
    let engine = Engine::new(cluster, options).expect("generated clusters are valid");
    let matrix = engine.matrix();
    (engine, matrix)
}

/// Every (src, dst, protocol, port) probe.
fn probes(n: usize) -> impl Iterator<Item = (usize, usize, Protocol, u16)> {
    (0..n).flat_map(move |s| {
        (0..n).flat_map(move |d| {
            Protocol::ALL
                .into_iter()
                .flat_map(move |p| PROBE_PORTS.into_iter().map(move |port| (s, d, p, port)))
        })
    })
}

fn id(engine: &Engine, i: usize) -> bulkhead_policy::EndpointId {
    engine
        .id(engine.endpoints().nth(i).expect("index in range"))
        .expect("known key")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn matrix_agrees_with_allowed(cluster in cluster(), options in options()) {
        let (engine, matrix) = build(&cluster, options);
        let single = engine.matrix_with_threads(1);
        for (s, d, protocol, port) in probes(engine.endpoint_count()) {
            let (s, d) = (id(&engine, s), id(&engine, d));
            let expected = engine.allowed(s, d, protocol, port);
            prop_assert_eq!(matrix.allowed(s, d, protocol, port), expected,
                "{:?} -> {:?} {} {}", engine.key(s), engine.key(d), protocol, port);
            prop_assert_eq!(single.allowed(s, d, protocol, port), expected);
            prop_assert_eq!(matrix.ports(s, d).contains(protocol, port), expected);
        }
    }

    #[test]
    fn adding_an_allow_never_removes_a_connection(
        cluster in cluster(),
        options in options(),
        which in any::<prop::sample::Index>(),
        ingress in ingress_rule(),
        egress in egress_rule(),
    ) {
        prop_assume!(!cluster.policies.is_empty());
        let mut wider = cluster.clone();
        let target = &mut wider.policies[which.index(cluster.policies.len())];
        // Pin the types first, so the new rule cannot switch a direction on.
        let types = target.effective_policy_types();
        target.policy_types = Some(types.clone());
        if types.contains(&PolicyType::Ingress) {
            target.ingress.push(ingress);
        }
        if types.contains(&PolicyType::Egress) {
            target.egress.push(egress);
        }
        let (_, before) = build(&cluster, options);
        let (engine, after) = build(&wider, options);
        for (s, d, protocol, port) in probes(engine.endpoint_count()) {
            let (s, d) = (id(&engine, s), id(&engine, d));
            if before.allowed(s, d, protocol, port) {
                prop_assert!(after.allowed(s, d, protocol, port));
            }
        }
    }

    #[test]
    fn with_no_allow_nothing_reaches_a_selected_endpoint(
        cluster in cluster(),
        options in options(),
    ) {
        let mut denying = cluster.clone();
        for policy in &mut denying.policies {
            policy.policy_types = Some(policy.effective_policy_types());
            policy.ingress.clear();
            policy.egress.clear();
        }
        let (engine, matrix) = build(&denying, options);
        let selected = |key: &EndpointKey, direction: PolicyType| match key {
            EndpointKey::Pod { namespace, name } => {
                let pod = denying.pods.iter().find(|p| p.namespace == *namespace && p.name == *name);
                denying.policies.iter().any(|policy| {
                    policy.namespace == *namespace
                        && policy.restricts(direction)
                        && pod.is_some_and(|p| policy.pod_selector.matches(&p.labels))
                })
            }
            EndpointKey::External { .. } => false,
        };
        for (s, d, protocol, port) in probes(engine.endpoint_count()) {
            if s == d {
                continue;
            }
            let (s, d) = (id(&engine, s), id(&engine, d));
            let (src, dst) = (engine.key(s).expect("key"), engine.key(d).expect("key"));
            if selected(dst, PolicyType::Ingress) || selected(src, PolicyType::Egress) {
                prop_assert!(!matrix.allowed(s, d, protocol, port), "{} -> {}", src, dst);
                prop_assert!(!engine.allowed(s, d, protocol, port));
            }
        }
    }

    #[test]
    fn diff_of_a_matrix_with_itself_is_empty(cluster in cluster(), options in options()) {
        let (_, matrix) = build(&cluster, options);
        prop_assert!(diff(&matrix, &matrix).is_empty());
    }

    #[test]
    fn diff_explains_exactly_the_difference(
        topology in topology(),
        first in policies(),
        second in policies(),
        drop_external in 0..3usize,
        options in options(),
    ) {
        let mut a = topology.clone();
        a.policies = first;
        let mut b = topology;
        b.policies = second;
        // Endpoints present on one side only count as unreachable on the other.
        match drop_external {
            1 => drop(a.externals.remove(0)),
            2 => drop(b.externals.pop()),
            _ => {}
        }
        let (ea, ma) = build(&a, options);
        let (eb, mb) = build(&b, options);
        let d = diff(&ma, &mb);
        let mut keys: Vec<EndpointKey> = ea.endpoints().cloned().collect();
        keys.extend(eb.endpoints().filter(|k| ea.id(k).is_none()).cloned());
        for src in &keys {
            for dst in &keys {
                for protocol in Protocol::ALL {
                    for port in PROBE_PORTS {
                        let before = ea.id(src).is_some_and(|s| ea.id(dst).is_some_and(|t| ma.allowed(s, t, protocol, port)));
                        let after = eb.id(src).is_some_and(|s| eb.id(dst).is_some_and(|t| mb.allowed(s, t, protocol, port)));
                        let added = d.adds(src, dst, protocol, port);
                        let removed = d.removes(src, dst, protocol, port);
                        prop_assert_eq!(added, after && !before, "{} -> {} {} {}", src, dst, protocol, port);
                        prop_assert_eq!(removed, before && !after, "{} -> {} {} {}", src, dst, protocol, port);
                        prop_assert_eq!((before && !removed) || added, after);
                    }
                }
            }
        }
    }
}
