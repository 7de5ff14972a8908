//! One test per NetworkPolicy semantic rule. Every reachability question is asked twice,
//! of `Engine::allowed` (direct evaluation) and of the matrix, and both must agree.

use std::net::IpAddr;

use bulkhead_policy::{
    Cluster, EgressRule, EndpointKey, Engine, EngineOptions, ExternalEndpoint, GroupKey,
    IngressRule, InvalidKind, IpBlock, LabelSelector, Namespace, NetworkPolicy, Peer, Pod,
    PolicyType, PortSpec, Protocol, ReachabilityMatrix, SelectorOperator, SideVerdict, diff,
};

use Protocol::{Tcp, Udp};

struct Fixture {
    engine: Engine,
    matrix: ReachabilityMatrix,
}

impl Fixture {
    fn new(cluster: &Cluster) -> Self {
        Self::with(cluster, EngineOptions::default())
    }

    fn with(cluster: &Cluster, options: EngineOptions) -> Self {
        let engine = Engine::new(cluster, options).expect("valid cluster");
        let matrix = engine.matrix();
        Self { engine, matrix }
    }

    fn key(name: &str) -> EndpointKey {
        match name.split_once('/') {
            Some(("ext", n)) => EndpointKey::external(n),
            Some((ns, n)) => EndpointKey::pod(ns, n),
            None => panic!("endpoint names are ns/pod or ext/name, got {name}"),
        }
    }

    /// Whether `src` reaches `dst`, asserting the engine and the matrix agree.
    fn can(&self, src: &str, dst: &str, protocol: Protocol, port: u16) -> bool {
        let s = self.engine.id(&Self::key(src)).expect("known source");
        let d = self.engine.id(&Self::key(dst)).expect("known destination");
        let direct = self.engine.allowed(s, d, protocol, port);
        let from_matrix = self.matrix.allowed(s, d, protocol, port);
        assert_eq!(
            direct, from_matrix,
            "engine and matrix disagree on {src} -> {dst} {protocol} {port}"
        );
        let explained = self
            .engine
            .explain(s, d, protocol, port)
            .expect("known ids");
        assert_eq!(
            explained.allowed, direct,
            "explain disagrees: {explained:?}"
        );
        direct
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Two namespaces `a` and `b`; pods `web` (app=web, port http=8080) and `db` (app=db,
/// port pg=5432) in each; an external `world` at 8.8.8.8.
fn base() -> Cluster {
    Cluster::new()
        .namespace(Namespace::new("a").label("team", "red"))
        .namespace(Namespace::new("b").label("team", "blue"))
        .pod(
            Pod::new("a", "web")
                .label("app", "web")
                .port("http", 8080, Tcp)
                .ip(ip("10.0.1.1")),
        )
        .pod(
            Pod::new("a", "db")
                .label("app", "db")
                .port("pg", 5432, Tcp)
                .ip(ip("10.0.1.2")),
        )
        .pod(
            Pod::new("b", "web")
                .label("app", "web")
                .port("http", 9090, Tcp)
                .ip(ip("10.0.2.1")),
        )
        .pod(
            Pod::new("b", "db")
                .label("app", "db")
                .port("pg", 5432, Tcp)
                .ip(ip("10.0.2.2")),
        )
        .external(ExternalEndpoint::new("world", ip("8.8.8.8")))
}

fn deny_all(namespace: &str) -> NetworkPolicy {
    NetworkPolicy::new(namespace, "deny-all").types([PolicyType::Ingress, PolicyType::Egress])
}

fn app(name: &str) -> LabelSelector {
    LabelSelector::with_label("app", name)
}

#[test]
fn no_policy_means_everything_is_allowed() {
    let f = Fixture::new(&base());
    assert!(f.can("a/web", "b/db", Tcp, 5432));
    assert!(f.can("ext/world", "a/web", Udp, 53));
    assert!(f.can("a/web", "ext/world", Tcp, 443));
}

#[test]
fn policies_are_additive_allows() {
    let cluster = base()
        .policy(
            NetworkPolicy::new("a", "from-web")
                .select(app("db"))
                .ingress_rule(IngressRule::new().from(Peer::pods(app("web")))),
        )
        .policy(
            NetworkPolicy::new("a", "from-b")
                .select(app("db"))
                .ingress_rule(
                    IngressRule::new()
                        .from(Peer::namespaces(LabelSelector::with_label("team", "blue"))),
                ),
        );
    let f = Fixture::new(&cluster);
    assert!(
        f.can("a/web", "a/db", Tcp, 5432),
        "allowed by the first policy"
    );
    assert!(
        f.can("b/web", "a/db", Tcp, 5432),
        "allowed by the second policy"
    );
    assert!(!f.can("ext/world", "a/db", Tcp, 5432), "allowed by neither");
}

#[test]
fn unselected_pod_is_unrestricted_in_that_direction() {
    let cluster = base().policy(NetworkPolicy::new("a", "deny-db").select(app("db")));
    let f = Fixture::new(&cluster);
    assert!(!f.can("a/web", "a/db", Tcp, 5432));
    assert!(
        f.can("b/db", "a/web", Tcp, 8080),
        "a/web is selected by nothing"
    );
    assert!(
        f.can("a/db", "b/web", Tcp, 80),
        "egress of a/db is not restricted"
    );
}

#[test]
fn selected_pod_allows_only_what_its_rules_allow() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "db-from-web")
            .select(app("db"))
            .ingress_rule(
                IngressRule::new()
                    .from(Peer::pods(app("web")))
                    .port(PortSpec::tcp(5432)),
            ),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/web", "a/db", Tcp, 5432));
    assert!(!f.can("a/web", "a/db", Tcp, 22), "other port");
    assert!(!f.can("b/web", "a/db", Tcp, 5432), "other namespace");
}

#[test]
fn connection_needs_source_egress_and_destination_ingress() {
    // a/web may send to b/db, but b/db accepts nothing.
    let cluster = base()
        .policy(
            NetworkPolicy::new("a", "web-out")
                .select(app("web"))
                .types([PolicyType::Egress])
                .egress_rule(EgressRule::new().to(Peer::namespaces(LabelSelector::everything()))),
        )
        .policy(NetworkPolicy::new("b", "db-in").select(app("db")));
    let f = Fixture::new(&cluster);
    assert!(!f.can("a/web", "b/db", Tcp, 5432), "ingress of b/db denies");
    assert!(f.can("a/web", "b/web", Tcp, 80), "both sides allow");
    assert!(
        !f.can("a/web", "ext/world", Tcp, 443),
        "egress of a/web denies"
    );
}

#[test]
fn external_endpoints_have_no_policies_only_the_pod_side_applies() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "web")
            .select(app("web"))
            .types([PolicyType::Ingress, PolicyType::Egress])
            .ingress_rule(IngressRule::new().from(Peer::ip_block(IpBlock::new("0.0.0.0/0"))))
            .egress_rule(EgressRule::new().to(Peer::ip_block(IpBlock::new("8.0.0.0/8")))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("ext/world", "a/web", Tcp, 8080));
    assert!(f.can("a/web", "ext/world", Tcp, 443));
    assert!(f.can("ext/world", "a/db", Tcp, 1), "a/db is not isolated");
}

#[test]
fn policy_types_default_to_ingress_without_egress_rules() {
    let policy = NetworkPolicy::new("a", "p").select(app("web"));
    assert_eq!(policy.effective_policy_types(), vec![PolicyType::Ingress]);
    let f = Fixture::new(&base().policy(policy));
    assert!(!f.can("a/db", "a/web", Tcp, 8080), "ingress isolated");
    assert!(f.can("a/web", "a/db", Tcp, 5432), "egress not isolated");
}

#[test]
fn policy_types_default_to_ingress_and_egress_with_egress_rules() {
    let policy = NetworkPolicy::new("a", "p")
        .select(app("web"))
        .egress_rule(EgressRule::new().port(PortSpec::udp(53)));
    assert_eq!(
        policy.effective_policy_types(),
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    let f = Fixture::new(&base().policy(policy));
    assert!(
        !f.can("a/db", "a/web", Tcp, 8080),
        "ingress isolated, no rules"
    );
    assert!(!f.can("a/web", "a/db", Tcp, 5432), "egress isolated");
    assert!(f.can("a/web", "a/db", Udp, 53), "egress rule");
}

#[test]
fn empty_policy_types_list_is_defaulted_like_absent() {
    let mut policy = NetworkPolicy::new("a", "p").select(app("web"));
    policy.policy_types = Some(Vec::new());
    assert_eq!(policy.effective_policy_types(), vec![PolicyType::Ingress]);
}

#[test]
fn explicit_policy_types_ignore_rules_of_unlisted_types() {
    // Egress-only policy carrying an ingress rule: the ingress rule does nothing and
    // ingress stays unrestricted.
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .types([PolicyType::Egress])
            .ingress_rule(IngressRule::new().from(Peer::pods(app("db"))))
            .egress_rule(EgressRule::new().to(Peer::pods(app("db")))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("b/web", "a/web", Tcp, 8080), "ingress not restricted");
    assert!(!f.can("a/web", "b/db", Tcp, 5432), "egress restricted");
    assert!(f.can("a/web", "a/db", Tcp, 5432));
}

#[test]
fn empty_ingress_rule_list_denies_all_ingress() {
    let f = Fixture::new(&base().policy(NetworkPolicy::new("a", "p").types([PolicyType::Ingress])));
    for src in ["a/db", "b/web", "ext/world"] {
        assert!(!f.can(src, "a/web", Tcp, 8080), "{src}");
    }
}

#[test]
fn empty_egress_rule_list_denies_all_egress() {
    let f = Fixture::new(&base().policy(NetworkPolicy::new("a", "p").types([PolicyType::Egress])));
    for dst in ["a/db", "b/web", "ext/world"] {
        assert!(!f.can("a/web", dst, Udp, 53), "{dst}");
    }
    assert!(f.can("b/web", "a/web", Tcp, 8080), "ingress untouched");
}

#[test]
fn empty_from_allows_all_peers_including_external() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(PortSpec::tcp(8080))),
    );
    let f = Fixture::new(&cluster);
    for src in ["a/db", "b/web", "ext/world"] {
        assert!(f.can(src, "a/web", Tcp, 8080), "{src}");
        assert!(!f.can(src, "a/web", Tcp, 8081), "{src}");
    }
}

#[test]
fn empty_to_allows_all_peers_including_external() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .types([PolicyType::Egress])
            .egress_rule(EgressRule::new().port(PortSpec::tcp(443))),
    );
    let f = Fixture::new(&cluster);
    for dst in ["a/db", "b/web", "ext/world"] {
        assert!(f.can("a/web", dst, Tcp, 443), "{dst}");
        assert!(!f.can("a/web", dst, Tcp, 80), "{dst}");
    }
}

#[test]
fn empty_ports_allow_all_ports_and_protocols() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::pods(app("web")))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/web", "a/db", Tcp, 1));
    assert!(f.can("a/web", "a/db", Udp, 65535));
    assert!(f.can("a/web", "a/db", Protocol::Sctp, 9));
}

#[test]
fn pod_and_namespace_selectors_in_one_peer_are_anded() {
    let cluster = base().policy(NetworkPolicy::new("a", "p").select(app("db")).ingress_rule(
        IngressRule::new().from(Peer::pods_in_namespaces(
            app("web"),
            LabelSelector::with_label("team", "blue"),
        )),
    ));
    let f = Fixture::new(&cluster);
    assert!(f.can("b/web", "a/db", Tcp, 5432), "web in a blue namespace");
    assert!(
        !f.can("b/db", "a/db", Tcp, 5432),
        "blue namespace but not web"
    );
    assert!(!f.can("a/web", "a/db", Tcp, 5432), "web but not blue");
}

#[test]
fn separate_peers_are_ored() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p").select(app("db")).ingress_rule(
            IngressRule::new()
                .from(Peer::pods(app("web")))
                .from(Peer::namespaces(LabelSelector::with_label("team", "blue"))),
        ),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("b/web", "a/db", Tcp, 5432));
    assert!(f.can("b/db", "a/db", Tcp, 5432), "blue namespace");
    assert!(f.can("a/web", "a/db", Tcp, 5432), "web in own namespace");
    assert!(!f.can("ext/world", "a/db", Tcp, 5432));
}

#[test]
fn pod_selector_alone_means_the_policy_namespace() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::pods(app("web")))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/web", "a/db", Tcp, 5432));
    assert!(
        !f.can("b/web", "a/db", Tcp, 5432),
        "web, but in another namespace"
    );
}

#[test]
fn empty_pod_selector_alone_means_every_pod_of_the_policy_namespace() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .ingress_rule(IngressRule::new().from(Peer::pods(LabelSelector::everything()))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/web", "a/db", Tcp, 5432));
    assert!(f.can("a/db", "a/web", Tcp, 8080));
    assert!(!f.can("b/web", "a/db", Tcp, 5432));
    assert!(!f.can("ext/world", "a/db", Tcp, 5432));
}

#[test]
fn empty_namespace_selector_means_every_namespace() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::namespaces(LabelSelector::everything()))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/web", "a/db", Tcp, 5432));
    assert!(f.can("b/db", "a/db", Tcp, 5432));
    assert!(
        !f.can("ext/world", "a/db", Tcp, 5432),
        "selectors never match externals"
    );
}

#[test]
fn absent_pod_selector_with_namespace_selector_means_every_pod_like_empty() {
    let blue = LabelSelector::with_label("team", "blue");
    let absent = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::namespaces(blue.clone()))),
    );
    let empty = base().policy(NetworkPolicy::new("a", "p").select(app("db")).ingress_rule(
        IngressRule::new().from(Peer::pods_in_namespaces(LabelSelector::everything(), blue)),
    ));
    let (a, e) = (Fixture::new(&absent), Fixture::new(&empty));
    assert!(diff(&a.matrix, &e.matrix).is_empty());
    assert!(a.can("b/web", "a/db", Tcp, 1) && a.can("b/db", "a/db", Tcp, 1));
}

#[test]
fn policy_pod_selector_empty_selects_every_pod_of_its_namespace_only() {
    let f = Fixture::new(&base().policy(NetworkPolicy::new("a", "p")));
    assert!(!f.can("b/web", "a/web", Tcp, 8080));
    assert!(!f.can("b/web", "a/db", Tcp, 5432));
    assert!(f.can("a/web", "b/db", Tcp, 5432), "b is not selected");
}

#[test]
fn namespace_name_label_is_implied() {
    let cluster = base().policy(NetworkPolicy::new("a", "p").select(app("db")).ingress_rule(
        IngressRule::new().from(Peer::namespaces(LabelSelector::with_label(
            "kubernetes.io/metadata.name",
            "b",
        ))),
    ));
    let f = Fixture::new(&cluster);
    assert!(f.can("b/web", "a/db", Tcp, 5432));
    assert!(!f.can("a/web", "a/db", Tcp, 5432));
}

#[test]
fn namespace_name_label_cannot_be_overridden() {
    let cluster =
        Cluster::new().namespace(Namespace::new("a").label("kubernetes.io/metadata.name", "other"));
    let err = Engine::new(&cluster, EngineOptions::default()).expect_err("mismatched label");
    assert!(matches!(
        err.errors[0].kind,
        InvalidKind::NamespaceNameLabelMismatch { .. }
    ));
}

#[test]
fn match_expressions_operators() {
    let pods = |selector: LabelSelector| {
        let cluster = base().policy(
            NetworkPolicy::new("a", "p")
                .select(app("db"))
                .ingress_rule(IngressRule::new().from(Peer::namespaces(selector))),
        );
        let f = Fixture::new(&cluster);
        (
            f.can("a/web", "a/db", Tcp, 1),
            f.can("b/web", "a/db", Tcp, 1),
        )
    };
    use SelectorOperator::*;
    let none: [&str; 0] = [];
    let sel = |op, values: &[&str]| {
        LabelSelector::everything().and_expression("team", op, values.iter().copied())
    };
    assert_eq!(pods(sel(In, &["red"])), (true, false));
    assert_eq!(pods(sel(NotIn, &["red"])), (false, true));
    assert_eq!(pods(sel(Exists, &none)), (true, true));
    assert_eq!(pods(sel(DoesNotExist, &none)), (false, false));
    let absent_key = LabelSelector::everything().and_expression("tier", NotIn, ["x"]);
    assert_eq!(
        pods(absent_key),
        (true, true),
        "NotIn matches an absent key"
    );
    let both = LabelSelector::with_label("team", "blue").and_expression("team", In, ["red"]);
    assert_eq!(
        pods(both),
        (false, false),
        "matchLabels and expressions are ANDed"
    );
}

#[test]
fn ip_block_matches_external_endpoints() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().from(Peer::ip_block(IpBlock::new("8.8.8.0/24")))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("ext/world", "a/web", Tcp, 8080));
    let other = Fixture::new(
        &base().policy(
            NetworkPolicy::new("a", "p")
                .select(app("web"))
                .ingress_rule(IngressRule::new().from(Peer::ip_block(IpBlock::new("9.9.9.0/24")))),
        ),
    );
    assert!(!other.can("ext/world", "a/web", Tcp, 8080));
}

#[test]
fn ip_block_except_excludes_addresses() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .types([PolicyType::Egress])
            .egress_rule(EgressRule::new().to(Peer::ip_block(
                IpBlock::new("8.0.0.0/8").except("8.8.8.0/24"),
            ))),
    );
    let f = Fixture::new(&cluster.external(ExternalEndpoint::new("other", ip("8.1.1.1"))));
    assert!(!f.can("a/web", "ext/world", Tcp, 443));
    assert!(f.can("a/web", "ext/other", Tcp, 443));
}

#[test]
fn ip_block_does_not_match_pods_by_default() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::ip_block(IpBlock::new("10.0.0.0/8")))),
    );
    let f = Fixture::new(&cluster);
    assert!(!f.can("a/web", "a/db", Tcp, 5432));
    assert!(!f.can("b/web", "a/db", Tcp, 5432));
}

#[test]
fn ip_block_matches_pods_by_ip_when_enabled() {
    let cluster = base().policy(NetworkPolicy::new("a", "p").select(app("db")).ingress_rule(
        IngressRule::new().from(Peer::ip_block(
            IpBlock::new("10.0.0.0/8").except("10.0.2.0/24"),
        )),
    ));
    let f = Fixture::with(
        &cluster,
        EngineOptions::default().ip_block_matches_pods(true),
    );
    assert!(
        f.can("a/web", "a/db", Tcp, 5432),
        "10.0.1.1 is in the block"
    );
    assert!(!f.can("b/web", "a/db", Tcp, 5432), "10.0.2.1 is excepted");
}

#[test]
fn named_port_resolves_on_the_destination_for_ingress() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(PortSpec::named(Tcp, "http"))),
    );
    let f = Fixture::new(&cluster);
    assert!(
        f.can("b/web", "a/web", Tcp, 8080),
        "a/web declares http=8080"
    );
    assert!(
        !f.can("b/web", "a/web", Tcp, 9090),
        "9090 is http only on b/web"
    );
}

#[test]
fn named_port_in_egress_resolves_on_the_destination() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("db"))
            .types([PolicyType::Egress])
            .egress_rule(EgressRule::new().port(PortSpec::named(Tcp, "http"))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/db", "a/web", Tcp, 8080));
    assert!(!f.can("a/db", "a/web", Tcp, 9090));
    assert!(
        f.can("a/db", "b/web", Tcp, 9090),
        "b/web declares http=9090"
    );
    assert!(!f.can("a/db", "b/web", Tcp, 8080));
    assert!(!f.can("a/db", "b/db", Tcp, 8080), "b/db declares no http");
}

#[test]
fn named_port_never_matches_an_external_endpoint() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .types([PolicyType::Egress])
            .egress_rule(EgressRule::new().port(PortSpec::named(Tcp, "http"))),
    );
    let f = Fixture::new(&cluster);
    for port in [80, 8080, 9090] {
        assert!(!f.can("a/web", "ext/world", Tcp, port));
    }
}

#[test]
fn named_port_protocol_must_match() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(PortSpec::named(Udp, "http"))),
    );
    let f = Fixture::new(&cluster);
    assert!(!f.can("a/db", "a/web", Tcp, 8080));
    assert!(
        !f.can("a/db", "a/web", Udp, 8080),
        "http is declared for TCP only"
    );
}

#[test]
fn end_port_range_is_inclusive() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(PortSpec::range(Tcp, 8000, 8100))),
    );
    let f = Fixture::new(&cluster);
    assert!(!f.can("a/db", "a/web", Tcp, 7999));
    assert!(f.can("a/db", "a/web", Tcp, 8000));
    assert!(f.can("a/db", "a/web", Tcp, 8100));
    assert!(!f.can("a/db", "a/web", Tcp, 8101));
    assert!(!f.can("a/db", "a/web", Udp, 8050));
}

#[test]
fn protocol_defaults_to_tcp() {
    let spec = PortSpec {
        protocol: None,
        port: Some(bulkhead_policy::PortRef::Number(53)),
        end_port: None,
    };
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(spec)),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/db", "a/web", Tcp, 53));
    assert!(!f.can("a/db", "a/web", Udp, 53));
}

#[test]
fn port_spec_without_port_means_every_port_of_its_protocol() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "p")
            .select(app("web"))
            .ingress_rule(IngressRule::new().port(PortSpec::all(Udp))),
    );
    let f = Fixture::new(&cluster);
    assert!(f.can("a/db", "a/web", Udp, 1));
    assert!(f.can("a/db", "a/web", Udp, 65535));
    assert!(!f.can("a/db", "a/web", Tcp, 80));
}

#[test]
fn a_pod_can_always_reach_itself() {
    let f = Fixture::new(&base().policy(deny_all("a")));
    assert!(f.can("a/web", "a/web", Tcp, 8080));
    assert!(!f.can("a/web", "a/db", Tcp, 5432));
}

fn invalid(policy: NetworkPolicy) -> InvalidKind {
    let err = Engine::new(&base().policy(policy), EngineOptions::default())
        .expect_err("invalid policy must be rejected");
    assert_eq!(err.errors.len(), 1, "{err:?}");
    err.errors[0].kind.clone()
}

fn with_port(spec: PortSpec) -> NetworkPolicy {
    NetworkPolicy::new("a", "p").ingress_rule(IngressRule::new().port(spec))
}

fn with_peer(peer: Peer) -> NetworkPolicy {
    NetworkPolicy::new("a", "p").ingress_rule(IngressRule::new().from(peer))
}

#[test]
fn end_port_before_port_is_rejected() {
    assert_eq!(
        invalid(with_port(PortSpec::range(Tcp, 9000, 8000))),
        InvalidKind::EndPortBeforePort {
            port: 9000,
            end_port: 8000
        }
    );
}

#[test]
fn end_port_with_named_port_is_rejected() {
    let mut spec = PortSpec::named(Tcp, "http");
    spec.end_port = Some(9000);
    assert!(matches!(
        invalid(with_port(spec)),
        InvalidKind::EndPortWithNamedPort { .. }
    ));
}

#[test]
fn end_port_without_port_is_rejected() {
    let mut spec = PortSpec::all(Tcp);
    spec.end_port = Some(9000);
    assert_eq!(
        invalid(with_port(spec)),
        InvalidKind::EndPortWithoutPort { end_port: 9000 }
    );
}

#[test]
fn port_zero_and_bad_port_names_are_rejected() {
    assert_eq!(invalid(with_port(PortSpec::tcp(0))), InvalidKind::PortZero);
    assert!(matches!(
        invalid(with_port(PortSpec::named(Tcp, "Not_A-name"))),
        InvalidKind::InvalidPortName { .. }
    ));
}

#[test]
fn empty_ip_block_cidr_is_rejected() {
    assert_eq!(
        invalid(with_peer(Peer::ip_block(IpBlock::new("")))),
        InvalidKind::EmptyCidr
    );
    assert!(matches!(
        invalid(with_peer(Peer::ip_block(IpBlock::new("10.0.0.0/33")))),
        InvalidKind::InvalidCidr { .. }
    ));
}

#[test]
fn except_outside_cidr_is_rejected() {
    for except in ["192.168.0.0/24", "10.0.0.0/8", "10.0.0.0/7", "fd00::/64"] {
        let kind = invalid(with_peer(Peer::ip_block(
            IpBlock::new("10.0.0.0/8").except(except),
        )));
        assert!(
            matches!(kind, InvalidKind::ExceptOutsideCidr { .. }),
            "{except}: {kind:?}"
        );
    }
}

#[test]
fn ip_block_with_selector_is_rejected() {
    let mut peer = Peer::ip_block(IpBlock::new("10.0.0.0/8"));
    peer.pod_selector = Some(LabelSelector::everything());
    assert_eq!(invalid(with_peer(peer)), InvalidKind::IpBlockWithSelector);
}

#[test]
fn empty_peer_is_rejected() {
    assert_eq!(invalid(with_peer(Peer::default())), InvalidKind::EmptyPeer);
}

#[test]
fn selector_operator_values_are_checked() {
    let none: [&str; 0] = [];
    let missing = LabelSelector::everything().and_expression("k", SelectorOperator::In, none);
    assert!(matches!(
        invalid(NetworkPolicy::new("a", "p").select(missing)),
        InvalidKind::SelectorValuesMissing { .. }
    ));
    let extra = LabelSelector::everything().and_expression("k", SelectorOperator::Exists, ["v"]);
    assert!(matches!(
        invalid(with_peer(Peer::namespaces(extra))),
        InvalidKind::SelectorValuesUnexpected { .. }
    ));
}

#[test]
fn pod_in_unknown_namespace_is_rejected() {
    let err = Engine::new(
        &base().pod(Pod::new("nowhere", "x")),
        EngineOptions::default(),
    )
    .expect_err("unknown namespace");
    assert!(matches!(
        err.errors[0].kind,
        InvalidKind::UnknownNamespace { .. }
    ));
}

#[test]
fn every_validation_error_is_reported_with_its_field() {
    let policy = NetworkPolicy::new("a", "p")
        .ingress_rule(
            IngressRule::new()
                .from(Peer::ip_block(IpBlock::new("")))
                .port(PortSpec::range(Tcp, 2, 1)),
        )
        .egress_rule(EgressRule::new().to(Peer::default()));
    let err = Engine::new(&base().policy(policy), EngineOptions::default()).expect_err("invalid");
    let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.ingress[0].from[0].ipBlock.cidr",
            "spec.ingress[0].ports[0]",
            "spec.egress[0].to[0]"
        ]
    );
    assert_eq!(
        err.errors[1].to_string(),
        "policy a/p: spec.ingress[0].ports[0]: endPort 1 is less than port 2"
    );
}

#[test]
fn explain_names_allowing_rules_and_isolating_policies() {
    let cluster = base().policy(
        NetworkPolicy::new("a", "db")
            .select(app("db"))
            .ingress_rule(IngressRule::new().from(Peer::pods(app("web")))),
    );
    let engine = Engine::new(&cluster, EngineOptions::default()).expect("valid");
    let web = engine.pod("a", "web").expect("pod");
    let db = engine.pod("a", "db").expect("pod");
    let other = engine.pod("b", "web").expect("pod");
    let ok = engine.explain(web, db, Tcp, 5432).expect("ids");
    assert!(ok.allowed);
    assert_eq!(ok.egress, SideVerdict::NotIsolated);
    match &ok.ingress {
        SideVerdict::Allowed { rules } => {
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0].to_string(), "a/db ingress[0]");
        }
        other => panic!("expected allowed, got {other:?}"),
    }
    let denied = engine.explain(other, db, Tcp, 5432).expect("ids");
    assert!(!denied.allowed);
    assert!(
        matches!(&denied.ingress, SideVerdict::Denied { isolated_by } if isolated_by[0].name == "db")
    );
    let world = engine.external("world").expect("external");
    assert_eq!(
        engine.explain(world, web, Tcp, 1).expect("ids").egress,
        SideVerdict::External
    );
}

#[test]
fn namespace_matrix_aggregates_pods_and_ignores_self_traffic() {
    let cluster = base().policy(deny_all("a")).policy(
        NetworkPolicy::new("b", "db")
            .select(app("db"))
            .ingress_rule(
                IngressRule::new()
                    .from(Peer::pods(app("web")))
                    .port(PortSpec::tcp(5432)),
            ),
    );
    let f = Fixture::new(&cluster);
    let ns = f.matrix.namespace_matrix();
    let group = |name: &str| {
        ns.group(&GroupKey::Namespace { name: name.into() })
            .expect("group")
    };
    let world = ns
        .group(&GroupKey::External {
            name: "world".into(),
        })
        .expect("group");
    let (a, b) = (group("a"), group("b"));
    assert!(
        !ns.allowed(a, a, Tcp, 80),
        "a is deny-all; self traffic does not count"
    );
    assert!(!ns.allowed(a, b, Tcp, 80));
    assert!(!ns.allowed(b, a, Tcp, 80));
    assert!(ns.allowed(b, b, Tcp, 5432));
    assert!(ns.allowed(b, b, Tcp, 80), "b/db -> b/web is unrestricted");
    assert!(ns.allowed(world, b, Udp, 53));
    assert_eq!(ns.ports(b, a).to_string(), "none");
    assert_eq!(ns.ports(world, b).to_string(), "TCP any, UDP any, SCTP any");
}

#[test]
fn diff_lists_connections_added_and_removed() {
    let before = Fixture::new(
        &base().policy(
            NetworkPolicy::new("a", "db")
                .select(app("db"))
                .ingress_rule(
                    IngressRule::new()
                        .from(Peer::pods(app("web")))
                        .port(PortSpec::tcp(5432)),
                ),
        ),
    );
    let after = Fixture::new(
        &base().policy(
            NetworkPolicy::new("a", "db")
                .select(app("db"))
                .ingress_rule(
                    IngressRule::new()
                        .from(Peer::namespaces(LabelSelector::with_label("team", "blue")))
                        .port(PortSpec::tcp(5432)),
                ),
        ),
    );
    let d = diff(&before.matrix, &after.matrix);
    let lines: Vec<String> = d.to_string().lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "+ b/web -> a/db: TCP 5432",
            "+ b/db -> a/db: TCP 5432",
            "- a/web -> a/db: TCP 5432"
        ]
    );
    assert!(diff(&before.matrix, &before.matrix).is_empty());
}

#[test]
fn serde_uses_kubernetes_field_names() {
    let json = r#"{
        "namespace": "a", "name": "p",
        "podSelector": {"matchLabels": {"app": "db"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["blue"]}]}, "podSelector": {}}],
                     "ports": [{"protocol": "TCP", "port": 5432}, {"port": "http"}, {"port": 8000, "endPort": 8100}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"protocol": "UDP", "port": 53}]}]
    }"#;
    let policy: NetworkPolicy = serde_json::from_str(json).expect("kubernetes-shaped JSON");
    assert_eq!(
        policy.ingress[0].ports[1],
        PortSpec {
            protocol: None,
            ..PortSpec::named(Tcp, "http")
        }
    );
    assert_eq!(policy.ingress[0].ports[2].end_port, Some(8100));
    assert_eq!(
        policy.egress[0].to[0]
            .ip_block
            .as_ref()
            .map(|b| b.except.len()),
        Some(1)
    );
    let back = serde_json::to_value(&policy).expect("serialize");
    assert_eq!(
        back["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["operator"],
        "In"
    );
    assert_eq!(back["ingress"][0]["ports"][2]["endPort"], 8100);
}
