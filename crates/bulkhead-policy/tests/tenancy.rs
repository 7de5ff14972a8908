//! The tenant model's translation: the shipped examples yield exactly the reachability
//! their comments promise, and each mapping rule of `tenancy` holds on a small case.

use std::net::IpAddr;
use std::path::PathBuf;

use bulkhead_policy::tenancy::{
    self, DEFAULT_DENY, SAME_TENANT, TENANT_ENDPOINT, TenancyOptions, TranslateProblem,
};
use bulkhead_policy::{EndpointId, Engine, GroupKey, PolicyType, Protocol};

const OUTSIDE: [u8; 4] = [203, 0, 113, 10];

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn examples() -> bulkhead_spec::Desired {
    bulkhead_spec::load(&[examples_dir()]).expect("the examples are valid")
}

/// The examples with `from` replaced by `to` in the file whose name ends with `file`.
fn examples_edited(file: &str, from: &str, to: &str) -> bulkhead_spec::Desired {
    let (mut sources, diagnostics) = bulkhead_spec::read_sources(&[examples_dir()]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let source = sources
        .iter_mut()
        .find(|s| s.name.ends_with(file))
        .expect("the example file exists");
    assert!(source.text.contains(from), "{file} contains {from:?}");
    source.text = source.text.replacen(from, to, 1);
    bulkhead_spec::load_sources(&sources).expect("the edited examples are valid")
}

fn options() -> TenancyOptions {
    TenancyOptions::new()
        .tenant_endpoints(true)
        .external("outside", IpAddr::from(OUTSIDE))
}

fn tenant(name: &str) -> GroupKey {
    GroupKey::Namespace {
        name: name.to_owned(),
    }
}

fn external(name: &str) -> GroupKey {
    GroupKey::External {
        name: name.to_owned(),
    }
}

fn pod(engine: &Engine, tenant: &str, name: &str) -> EndpointId {
    engine
        .pod(tenant, name)
        .unwrap_or_else(|| panic!("pod {tenant}/{name}"))
}

fn load(yaml: &str) -> bulkhead_spec::Desired {
    bulkhead_spec::load_str("test.yaml", yaml).unwrap_or_else(|e| panic!("{e:?}"))
}

const PORTS: [(Protocol, u16); 12] = [
    (Protocol::Tcp, 1),
    (Protocol::Tcp, 53),
    (Protocol::Udp, 53),
    (Protocol::Tcp, 5432),
    (Protocol::Udp, 5432),
    (Protocol::Tcp, 8080),
    (Protocol::Tcp, 8443),
    (Protocol::Tcp, 9050),
    (Protocol::Tcp, 9200),
    (Protocol::Udp, 8443),
    (Protocol::Sctp, 5432),
    (Protocol::Tcp, 65535),
];

#[test]
fn examples_yield_exactly_the_intended_tenant_matrix() {
    let matrix = tenancy::tenant_matrix(&examples(), &options()).expect("translates");
    assert_eq!(
        matrix.to_string(),
        "\
db -> db  TCP any, UDP any, SCTP any
db -> external:dns  TCP 53, UDP 53
ingress -> ingress  TCP any, UDP any, SCTP any
ingress -> web  TCP 8080
ingress -> external:dns  TCP 53, UDP 53
web -> db  TCP 5432
web -> web  TCP any, UDP any, SCTP any
web -> external:dns  TCP 53, UDP 53
external:outside -> ingress  TCP 8443
"
    );
}

#[test]
fn examples_generate_stable_policy_names() {
    let translation = tenancy::translate(&examples(), &options()).expect("translates");
    let names: Vec<String> = translation
        .policies()
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(
        names,
        [
            "db/bulkhead-default-deny",
            "db/bulkhead-same-tenant",
            "db/bulkhead-ingress-0",
            "db/bulkhead-egress-0-dns",
            "ingress/bulkhead-default-deny",
            "ingress/bulkhead-same-tenant",
            "ingress/bulkhead-ingress-0",
            "ingress/bulkhead-egress-0-dns",
            "ingress/bulkhead-egress-1",
            "web/bulkhead-default-deny",
            "web/bulkhead-same-tenant",
            "web/bulkhead-ingress-0",
            "web/bulkhead-egress-0-dns",
            "web/bulkhead-egress-1",
        ]
    );
    let deny = &translation.policies()[0];
    assert_eq!(deny.name, DEFAULT_DENY);
    assert!(deny.pod_selector.is_empty() && deny.ingress.is_empty() && deny.egress.is_empty());
    assert_eq!(
        deny.policy_types,
        Some(vec![PolicyType::Ingress, PolicyType::Egress])
    );
    // The translation is deterministic: the renderer can diff objects by name.
    assert_eq!(
        translation,
        tenancy::translate(&examples(), &options()).expect("translates")
    );
}

#[test]
fn web_reaches_db_only_on_5432_and_only_its_postgres_workloads() {
    let engine = tenancy::engine_for(&examples(), &options()).expect("engine");
    let app = pod(&engine, "web", "app");
    let postgres = pod(&engine, "db", "postgres");
    let db_probe = pod(&engine, "db", TENANT_ENDPOINT);
    for (protocol, port) in PORTS {
        let expected = (protocol, port) == (Protocol::Tcp, 5432);
        assert_eq!(
            engine.allowed(app, postgres, protocol, port),
            expected,
            "{protocol} {port}"
        );
        assert!(!engine.allowed(app, db_probe, protocol, port));
        assert!(!engine.allowed(postgres, app, protocol, port));
    }
}

#[test]
fn nobody_reaches_ingress_but_the_outside_on_8443() {
    let engine = tenancy::engine_for(&examples(), &options()).expect("engine");
    let outside = engine.external("outside").expect("outside");
    for dst in ["proxy", TENANT_ENDPOINT] {
        let dst = pod(&engine, "ingress", dst);
        for src in (0..engine.endpoint_count()).map(|i| EndpointId(i as u32)) {
            let from_ingress = matches!(
                engine.key(src),
                Some(bulkhead_policy::EndpointKey::Pod { namespace, .. }) if namespace == "ingress"
            );
            if from_ingress {
                continue;
            }
            for (protocol, port) in PORTS {
                let expected = src == outside && (protocol, port) == (Protocol::Tcp, 8443);
                assert_eq!(
                    engine.allowed(src, dst, protocol, port),
                    expected,
                    "{:?} {protocol} {port}",
                    engine.key(src)
                );
            }
        }
    }
}

#[test]
fn dns_answers_on_53_and_is_the_bridge_by_default() {
    let translation = tenancy::translate(&examples(), &options()).expect("translates");
    assert_eq!(translation.resolver, IpAddr::from([10, 240, 0, 1]));
    let engine = tenancy::engine_for(&examples(), &options()).expect("engine");
    let dns = engine.external(tenancy::DNS_ENDPOINT).expect("dns");
    for (tenant, workload) in [("web", "app"), ("db", "postgres"), ("ingress", "proxy")] {
        let src = pod(&engine, tenant, workload);
        for (protocol, port) in PORTS {
            assert_eq!(
                engine.allowed(src, dns, protocol, port),
                port == 53 && protocol != Protocol::Sctp,
                "{tenant} {protocol} {port}"
            );
        }
        // The resolver itself cannot open connections into tenants.
        assert!(!engine.allowed(dns, src, Protocol::Udp, 53));
    }
}

#[test]
fn rule_ports_replace_the_dns_ports() {
    let desired = examples_edited(
        "db.yaml",
        "      - to: [{ dns: true }]",
        "      - to: [{ dns: true }]\n        ports: [53/udp]",
    );
    let matrix = tenancy::tenant_matrix(&desired, &options()).expect("translates");
    assert_eq!(
        matrix.ports(&tenant("db"), &external("dns")).to_string(),
        "UDP 53"
    );
}

#[test]
fn same_tenant_deny_blocks_traffic_inside_the_tenant() {
    let desired = examples_edited("web.yaml", "sameTenant: allow", "sameTenant: deny");
    let translation = tenancy::translate(&desired, &options()).expect("translates");
    assert!(
        !translation
            .policies_of("web")
            .any(|p| p.name == SAME_TENANT)
    );
    let engine = tenancy::engine_for(&desired, &options()).expect("engine");
    let (app, probe) = (
        pod(&engine, "web", "app"),
        pod(&engine, "web", TENANT_ENDPOINT),
    );
    for (protocol, port) in PORTS {
        assert!(!engine.allowed(app, probe, protocol, port));
        assert!(!engine.allowed(probe, app, protocol, port));
    }
    let diff = tenancy::diff_desired(&examples(), &desired, &options()).expect("diff");
    assert_eq!(
        diff.to_string(),
        "- web -> web  TCP any, UDP any, SCTP any\n"
    );
}

#[test]
fn a_service_peer_opens_both_sides_and_nothing_more() {
    let desired = examples_edited(
        "db.yaml",
        "      - to: [{ dns: true }]",
        "      - to: [{ dns: true }]\n      - to: [{ service: edge }]",
    );
    let diff = tenancy::diff_desired(&examples(), &desired, &options()).expect("diff");
    assert_eq!(diff.to_string(), "+ db -> ingress  TCP 8443\n");

    let translation = tenancy::translate(&desired, &options()).expect("translates");
    let exception = translation
        .policies_of("ingress")
        .find(|p| p.name == "bulkhead-service-edge-from-db")
        .expect("the service side is opened");
    assert_eq!(exception.policy_types, Some(vec![PolicyType::Ingress]));
    assert!(
        translation
            .policies_of("db")
            .any(|p| p.name == "bulkhead-egress-1-service-edge")
    );

    let engine = tenancy::engine_for(&desired, &options()).expect("engine");
    let (postgres, proxy, probe) = (
        pod(&engine, "db", "postgres"),
        pod(&engine, "ingress", "proxy"),
        pod(&engine, "ingress", TENANT_ENDPOINT),
    );
    for (protocol, port) in PORTS {
        let expected = (protocol, port) == (Protocol::Tcp, 8443);
        assert_eq!(engine.allowed(postgres, proxy, protocol, port), expected);
        // Only the service's workloads, not the rest of its tenant.
        assert!(!engine.allowed(postgres, probe, protocol, port));
        // Not the other way round.
        assert!(!engine.allowed(proxy, postgres, protocol, port));
    }
}

const SERVICE_PLATFORM: &str = "
apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata: { name: p }
spec:
  network: { tenantRange: 10.240.0.0/24 }
  sharedServices:
    - name: api
      tenant: svc
      workloadSelector: { matchLabels: { app: api } }
      ports: [9000-9100/tcp, 53/udp]
    - name: mixed
      tenant: svc
      ports: [9000-9100/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: svc }
spec: {}
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: api, tenant: svc, labels: { app: api } }
spec:
  command: [/bin/api]
  ports: [{ name: http, port: 9050 }]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: other, tenant: svc, labels: { app: other } }
spec:
  command: [/bin/other]
  ports: [{ name: http, port: 8080 }]
";

fn with_consumer(egress: &str) -> bulkhead_spec::Desired {
    load(&format!(
        "{SERVICE_PLATFORM}---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: {{ name: app }}
spec:
  network:
    egress:
{egress}
"
    ))
}

#[test]
fn rule_ports_narrow_a_service_to_the_intersection() {
    let desired = with_consumer("      - to: [{ service: api }]\n        ports: [9050-9200/tcp]");
    let matrix = tenancy::tenant_matrix(&desired, &options()).expect("translates");
    assert_eq!(
        matrix.ports(&tenant("app"), &tenant("svc")).to_string(),
        "TCP 9050-9100"
    );
    let desired = with_consumer("      - to: [{ service: api }]");
    let matrix = tenancy::tenant_matrix(&desired, &options()).expect("translates");
    assert_eq!(
        matrix.ports(&tenant("app"), &tenant("svc")).to_string(),
        "TCP 9000-9100, UDP 53"
    );
    // A name every service workload maps inside the range stays a name.
    let desired = with_consumer("      - to: [{ service: api }]\n        ports: [http]");
    let translation = tenancy::translate(&desired, &options()).expect("translates");
    let egress = translation
        .policies_of("app")
        .find(|p| p.name == "bulkhead-egress-0-service-api")
        .expect("egress policy");
    assert_eq!(
        egress.egress[0].ports,
        [bulkhead_policy::PortSpec::named(Protocol::Tcp, "http")]
    );
}

#[test]
fn a_service_rule_sharing_no_port_with_the_service_is_an_error() {
    let desired = with_consumer("      - to: [{ service: api }]\n        ports: [443/tcp]");
    let error = tenancy::translate(&desired, &options()).expect_err("no common port");
    assert!(
        matches!(
            error.problems.as_slice(),
            [TranslateProblem::DisjointServicePorts { service, at, .. }]
                if service == "api" && at.tenant == "app" && at.index == 0
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "tenant \"app\": spec.network.egress[0]: ports 443/tcp share no port with shared service \"api\" (9000-9100/tcp, 53/udp) (expected ports the service serves, or no ports)"
    );
}

#[test]
fn a_name_that_only_some_service_workloads_map_into_the_range_is_an_error() {
    let desired = with_consumer("      - to: [{ service: mixed }]\n        ports: [http]");
    let error = tenancy::translate(&desired, &options()).expect_err("not expressible");
    assert!(
        matches!(
            error.problems.as_slice(),
            [TranslateProblem::NamedPortSplit { name, .. }] if name == "http"
        ),
        "{error}"
    );
}

#[test]
fn a_suspended_tenant_is_cut_off() {
    let desired = examples_edited(
        "db.yaml",
        "  profile: restricted",
        "  profile: restricted\n  state: suspended",
    );
    let translation = tenancy::translate(&desired, &options()).expect("translates");
    let names: Vec<&str> = translation
        .policies_of("db")
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, [DEFAULT_DENY]);
    let diff = tenancy::diff_desired(&examples(), &desired, &options()).expect("diff");
    assert_eq!(
        diff.to_string(),
        "\
- db -> db  TCP any, UDP any, SCTP any
- db -> external:dns  TCP 53, UDP 53
- web -> db  TCP 5432
"
    );
}

#[test]
fn diff_of_one_removed_rule_lists_exactly_that_removal() {
    let mut desired = examples();
    let web = desired
        .tenants
        .values_mut()
        .find(|t| t.metadata.name.as_str() == "web")
        .expect("web");
    let removed = web.spec.network.egress.remove(1);
    assert!(matches!(
        removed.to.as_slice(),
        [bulkhead_spec::Peer::Tenant { tenant, .. }] if tenant.as_str() == "db"
    ));
    let diff = tenancy::diff_desired(&examples(), &desired, &options()).expect("diff");
    assert_eq!(diff.to_string(), "- web -> db  TCP 5432\n");

    let mut desired = examples();
    let ingress = desired
        .tenants
        .values_mut()
        .find(|t| t.metadata.name.as_str() == "ingress")
        .expect("ingress");
    ingress.spec.network.egress.remove(1);
    let diff = tenancy::diff_desired(&examples(), &desired, &options()).expect("diff");
    assert_eq!(diff.to_string(), "- ingress -> web  TCP 8080\n");
    let back = tenancy::diff_desired(&desired, &examples(), &options()).expect("diff");
    assert_eq!(back.to_string(), "+ ingress -> web  TCP 8080\n");
    assert!(
        tenancy::diff_desired(&examples(), &examples(), &options())
            .expect("diff")
            .is_empty()
    );
}

#[test]
fn an_empty_tenant_is_probed_through_its_synthetic_endpoint() {
    let yaml = "
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: empty, labels: { team: red } }
spec:
  network:
    sameTenant: deny
    ingress:
      - from: [{ tenant: client }]
        workloads: { matchExpressions: [{ key: app, operator: NotIn, values: [db] }] }
        ports: [80/tcp]
      - from: [{ tenant: client }]
        workloads: { matchLabels: { app: web } }
        ports: [81/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: client }
spec:
  network:
    egress:
      - to: [{ tenantSelector: { matchLabels: { team: red } } }]
";
    let desired = load(yaml);
    // Without the option, the workload-less tenants have no endpoint at all.
    let bare = tenancy::translate(&desired, &TenancyOptions::new()).expect("translates");
    assert!(bare.cluster.pods.is_empty());
    let options = TenancyOptions::new()
        .tenant_endpoints(true)
        .address("empty", IpAddr::from([10, 240, 0, 7]));
    let translation = tenancy::translate(&desired, &options).expect("translates");
    let probe = &translation.cluster.pods[1];
    assert_eq!(
        (probe.namespace.as_str(), probe.name.as_str()),
        ("empty", TENANT_ENDPOINT)
    );
    assert!(probe.labels.is_empty() && probe.ports.is_empty());
    assert_eq!(probe.ips, [IpAddr::from([10, 240, 0, 7])]);
    // `NotIn` matches the unlabelled endpoint; `matchLabels` does not.
    let matrix = tenancy::tenant_matrix(&desired, &options).expect("translates");
    assert_eq!(matrix.to_string(), "client -> empty  TCP 80\n");
}

#[test]
fn an_empty_tenant_selector_includes_the_tenant_itself() {
    let yaml = "
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: solo }
spec:
  network:
    sameTenant: deny
    ingress:
      - from: [{ tenantSelector: {} }]
        ports: [80/tcp]
    egress:
      - to: [{ tenantSelector: {} }]
        ports: [80/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: one, tenant: solo }
spec: { command: [/bin/one] }
";
    // Two endpoints (the workload and the synthetic one), so the tenant can reach itself.
    let matrix = tenancy::tenant_matrix(&load(yaml), &options()).expect("translates");
    assert_eq!(matrix.to_string(), "solo -> solo  TCP 80\n");
}

#[test]
fn a_cidr_peer_reaches_only_the_external_endpoints_inside_it() {
    let yaml = "
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: crawler }
spec:
  network:
    egress:
      - to: [{ cidr: 203.0.113.0/24, except: [203.0.113.0/29] }]
        ports: [443/tcp]
";
    // outside (.10) is in the block; hole (.5) in its exception; elsewhere outside it.
    let options = options()
        .external("hole", IpAddr::from([203, 0, 113, 5]))
        .external("elsewhere", IpAddr::from([198, 51, 100, 1]));
    let matrix = tenancy::tenant_matrix(&load(yaml), &options).expect("translates");
    assert_eq!(matrix.to_string(), "crawler -> external:outside  TCP 443\n");
}

#[test]
fn an_external_named_like_the_resolver_is_rejected_by_the_engine() {
    let options = options().external(tenancy::DNS_ENDPOINT, IpAddr::from([192, 0, 2, 1]));
    assert!(matches!(
        tenancy::engine_for(&examples(), &options),
        Err(tenancy::TenancyError::Engine(_))
    ));
}
