//! Malformed input, case by case: each must fail with a message that names the file,
//! line, column and field, and says what was expected.

use std::path::{Path, PathBuf};

const TENANT_HEAD: &str =
    "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: web\n";

/// A tenant document whose spec is `spec` (indented by the caller).
fn tenant(spec: &str) -> String {
    format!("{TENANT_HEAD}spec:\n{spec}")
}

fn workload(name: &str, tenant: &str, spec: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\n  tenant: {tenant}\nspec:\n{spec}"
    )
}

enum Input {
    Text(&'static str, String),
    Bytes(&'static str, Vec<u8>),
}

/// Writes the files into a fresh directory, loads it and returns the diagnostics as lines
/// with the directory prefix removed (so positions read `t.yaml:7:13: ...`).
fn errors_for(inputs: Vec<Input>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    for input in &inputs {
        let (name, bytes) = match input {
            Input::Text(name, text) => (*name, text.as_bytes().to_vec()),
            Input::Bytes(name, bytes) => (*name, bytes.clone()),
        };
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, bytes).expect("write");
    }
    load_dir(dir.path())
}

fn load_dir(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    match bulkhead_spec::load(&[PathBuf::from(dir)]) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics
            .iter()
            .map(|d| d.to_string().replace(&prefix, ""))
            .collect(),
    }
}

#[track_caller]
fn expect(inputs: Vec<Input>, expected: &[&str]) {
    let errors = errors_for(inputs);
    assert!(
        !errors.is_empty(),
        "input was accepted, expected {expected:?}"
    );
    for want in expected {
        assert!(
            errors.iter().any(|line| line.contains(want)),
            "no error contains {want:?}; got:\n{}",
            errors.join("\n")
        );
    }
}

fn one(text: String) -> Vec<Input> {
    vec![Input::Text("t.yaml", text)]
}

#[test]
fn yaml_syntax_error_unclosed_flow_mapping() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata: {name: web\n".into()),
        &["t.yaml:", "invalid YAML"],
    );
}

#[test]
fn yaml_syntax_error_bad_indentation() {
    expect(
        one(tenant("  quota:\n    memory: 1Gi\n   pids: 5\n")),
        &["t.yaml:8:4: invalid YAML: while parsing a block mapping, did not find expected key"],
    );
}

#[test]
fn wrong_type_mapping_expected() {
    expect(
        one(tenant("  quota: 5\n")),
        &["t.yaml:6:10: spec.quota: found an integer (expected a mapping)"],
    );
}

#[test]
fn wrong_type_list_for_quantity() {
    expect(
        one(tenant("  quota:\n    memory: [1]\n")),
        &["t.yaml:7:13: spec.quota.memory: found a list (expected a quantity string)"],
    );
}

#[test]
fn unknown_field_with_suggestion() {
    expect(
        one(tenant("  quota:\n    memroy: 1Gi\n")),
        &[
            "t.yaml:7:5: spec.quota.memroy: unknown field \"memroy\"",
            "did you mean \"memory\"?",
        ],
    );
}

#[test]
fn unknown_top_level_field() {
    expect(
        one(format!("{TENANT_HEAD}specs: {{}}\n")),
        &[
            "t.yaml:5:1: specs: unknown field \"specs\"",
            "did you mean \"spec\"?",
        ],
    );
}

#[test]
fn unknown_kind_with_suggestion() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Tennant\nmetadata:\n  name: web\n".into()),
        &[
            "t.yaml:2:7: kind: unknown kind \"Tennant\"",
            "did you mean \"Tenant\"?",
        ],
    );
}

#[test]
fn missing_kind() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nmetadata:\n  name: web\n".into()),
        &["t.yaml:1:1: kind: missing required field (expected Tenant, Workload or Platform)"],
    );
}

#[test]
fn wrong_api_version() {
    expect(
        one("apiVersion: v1\nkind: Tenant\nmetadata:\n  name: web\n".into()),
        &[
            "t.yaml:1:13: apiVersion: unsupported apiVersion \"v1\" (expected bulkhead.dev/v1alpha1)",
        ],
    );
}

#[test]
fn bad_byte_quantity() {
    expect(
        one(tenant("  quota:\n    memory: 12Gx\n")),
        &[
            "t.yaml:7:13: spec.quota.memory: \"12Gx\" is not a byte quantity (expected e.g. 512Mi, 2Gi or 1G)",
        ],
    );
}

#[test]
fn absurd_memory() {
    expect(
        one(tenant("  quota:\n    memory: 99999999999Ti\n")),
        &["t.yaml:7:13: spec.quota.memory: \"99999999999Ti\" is too large (expected at most 1Ei)"],
    );
}

#[test]
fn cpu_finer_than_millicores() {
    expect(
        one(tenant("  quota:\n    cpu: \"0.0001\"\n")),
        &["t.yaml:7:10: spec.quota.cpu: \"0.0001\" is finer than millicores"],
    );
}

#[test]
fn bandwidth_in_bytes() {
    expect(
        one(tenant("  quota:\n    egress: 100MB\n")),
        &[
            "t.yaml:7:13: spec.quota.egress: \"100MB\" is not a bandwidth (bits per second) (expected e.g. 100Mbit",
        ],
    );
}

#[test]
fn workload_of_unknown_tenant() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  profile: restricted\n")),
            Input::Text("w.yaml", workload("app", "wbe", "  command: [/bin/true]\n")),
        ],
        &[
            "w.yaml:5:11: metadata.tenant: unknown tenant \"wbe\" (expected one of: web); did you mean \"web\"?",
        ],
    );
}

#[test]
fn peer_names_unknown_tenant() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ tenant: dbb }]\n",
        )),
        &["t.yaml:8:24: spec.network.egress[0].to[0].tenant: unknown tenant \"dbb\""],
    );
}

#[test]
fn peer_names_unknown_shared_service() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ service: edge }]\n",
        )),
        &["spec.network.egress[0].to[0].service: unknown shared service \"edge\""],
    );
}

#[test]
fn workload_above_tenant_quota() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  quota:\n    memory: 1Gi\n")),
            Input::Text(
                "w.yaml",
                workload(
                    "app",
                    "web",
                    "  command: [/bin/true]\n  resources:\n    memory: 2Gi\n",
                ),
            ),
        ],
        &[
            "w.yaml:9:13: spec.resources.memory: 2Gi is more than tenant \"web\"'s memory quota (expected at most 1Gi)",
        ],
    );
}

#[test]
fn workload_sum_above_quota() {
    let w = |name: &'static str| {
        workload(
            name,
            "web",
            "  command: [/bin/true]\n  resources:\n    memory: 600Mi\n",
        )
    };
    expect(
        vec![
            Input::Text("t.yaml", tenant("  quota:\n    memory: 1Gi\n")),
            Input::Text("a.yaml", w("a")),
            Input::Text("b.yaml", w("b")),
        ],
        &[
            "t.yaml:7:13: spec.quota.memory: workloads ask for 1200Mi of memory in total, more than the quota",
        ],
    );
}

#[test]
fn more_workloads_than_allowed() {
    let w = |name: &'static str| workload(name, "web", "  command: [/bin/true]\n");
    expect(
        vec![
            Input::Text("t.yaml", tenant("  quota:\n    workloads: 1\n")),
            Input::Text("a.yaml", w("a")),
            Input::Text("b.yaml", w("b")),
        ],
        &["t.yaml:7:16: spec.quota.workloads: 2 workloads are declared (expected at most 1)"],
    );
}

#[test]
fn invalid_cidr() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ cidr: 300.1.2.0/24 }]\n",
        )),
        &["t.yaml:8:22: spec.network.egress[0].to[0].cidr: \"300.1.2.0/24\" is not a CIDR block"],
    );
}

#[test]
fn cidr_with_host_bits() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ cidr: 198.51.100.7/24 }]\n",
        )),
        &[
            "spec.network.egress[0].to[0].cidr: \"198.51.100.7/24\" has host bits set (expected the network address 198.51.100.0/24)",
        ],
    );
}

#[test]
fn except_outside_cidr() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ cidr: 198.51.100.0/24, except: [203.0.113.0/25] }]\n",
        )),
        &[
            "spec.network.egress[0].to[0].except[0]: 203.0.113.0/25 is not strictly inside 198.51.100.0/24",
        ],
    );
}

#[test]
fn overlapping_cidrs_in_one_rule() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ cidr: 198.51.100.0/24 }, { cidr: 198.51.100.128/25 }]\n",
        )),
        &["spec.network.egress[0].to[1].cidr: 198.51.100.128/25 overlaps 198.51.100.0/24"],
    );
}

#[test]
fn cidr_inside_tenant_range() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ cidr: 10.240.3.0/24 }]\n",
        )),
        &[
            "spec.network.egress[0].to[0].cidr: 10.240.3.0/24 overlaps the platform's tenant range 10.240.0.0/16",
        ],
    );
}

#[test]
fn port_out_of_range() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ dns: true }]\n        ports: [70000]\n",
        )),
        &[
            "t.yaml:9:17: spec.network.egress[0].ports[0]: port 70000 is out of range (expected 1-65535)",
        ],
    );
}

#[test]
fn backwards_port_range() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ dns: true }]\n        ports: [9000-8000/tcp]\n",
        )),
        &["spec.network.egress[0].ports[0]: port range \"9000-8000\" ends before it starts"],
    );
}

#[test]
fn unknown_protocol() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ dns: true }]\n        ports: [53/icmp]\n",
        )),
        &["spec.network.egress[0].ports[0]: unknown protocol \"icmp\" (expected tcp, udp or sctp)"],
    );
}

#[test]
fn unknown_profile() {
    expect(
        one(tenant("  profile: strict\n")),
        &[
            "t.yaml:6:12: spec.profile: unknown value \"strict\" (expected one of: restricted, baseline, privileged); did you mean \"restricted\"?",
        ],
    );
}

#[test]
fn address_range_too_small() {
    let t = |name: &str| {
        format!("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n")
    };
    expect(
        vec![
            Input::Text(
                "p.yaml",
                "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  network:\n    tenantRange: 10.240.0.0/30\n".into(),
            ),
            Input::Text("a.yaml", t("a")),
            Input::Text("b.yaml", t("b")),
        ],
        &["p.yaml:7:18: spec.network.tenantRange: 10.240.0.0/30 has room for 1 tenants but 2 are declared"],
    );
}

#[test]
fn name_with_path_characters() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: ../etc\n".into()),
        &["t.yaml:4:9: metadata.name: \"../etc\" contains path characters"],
    );
}

#[test]
fn name_with_uppercase() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: Web\n".into()),
        &["t.yaml:4:9: metadata.name: \"Web\" is not a valid name (expected a DNS-1123 label"],
    );
}

#[test]
fn reserved_tenant_name() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: default\n".into()),
        &["t.yaml:4:9: metadata.name: \"default\" is reserved"],
    );
}

#[test]
fn name_too_long() {
    let long = "a".repeat(64);
    expect(
        one(format!(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {long}\n"
        )),
        &["t.yaml:4:9: metadata.name: name is 64 characters long (expected at most 63)"],
    );
}

#[test]
fn duplicate_tenant_across_files() {
    expect(
        vec![
            Input::Text("a.yaml", tenant("  profile: restricted\n")),
            Input::Text("b.yaml", tenant("  profile: baseline\n")),
        ],
        &[
            "b.yaml:4:9: metadata.name: duplicate tenant \"web\" (expected unique names; first defined at a.yaml:1:1)",
        ],
    );
}

#[test]
fn duplicate_mapping_key() {
    expect(
        one(tenant("  profile: restricted\n  profile: baseline\n")),
        &["t.yaml:", "invalid YAML", "duplicate"],
    );
}

#[test]
fn file_of_ten_megabytes() {
    let mut text = tenant("  owners:\n");
    while text.len() < 10 * 1024 * 1024 {
        text.push_str("    - someone@example.com\n");
    }
    expect(
        one(text),
        &["t.yaml: file is larger than 1048576 bytes (expected a small YAML spec)"],
    );
}

#[test]
fn deeply_nested_yaml() {
    let text = format!(
        "{TENANT_HEAD}spec:\n  owners: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let errors = errors_for(one(text));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("t.yaml:")
                && (e.contains("nesting") || e.contains("invalid YAML"))),
        "{errors:?}"
    );
}

#[test]
fn alias_bomb() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut previous = 'a';
    for name in 'b'..='j' {
        let refs = std::iter::repeat_n(format!("*{previous}"), 10)
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let errors = errors_for(one(text));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("t.yaml:")
                && (e.contains("invalid YAML") || e.contains("nesting"))),
        "{errors:?}"
    );
}

#[test]
fn non_utf8_bytes() {
    let mut bytes = tenant("  owners: [ok]\n").into_bytes();
    bytes.extend_from_slice(b"  # caf\xe9\n");
    let errors = errors_for(vec![Input::Bytes("t.yaml", bytes)]);
    assert_eq!(
        errors,
        vec!["t.yaml:7:8: invalid UTF-8 byte sequence (expected UTF-8 text)".to_owned()]
    );
}

#[test]
fn symlink_loop_in_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("t.yaml"), tenant("  profile: restricted\n")).expect("write");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
    let errors = load_dir(dir.path());
    assert!(
        errors.iter().any(|e| e.starts_with("loop: symlink loop")),
        "{errors:?}"
    );
}

#[test]
fn empty_peer_list_is_not_everyone() {
    expect(
        one(tenant("  network:\n    ingress:\n      - from: []\n")),
        &["t.yaml:8:15: spec.network.ingress[0].from: empty from list (expected at least one peer"],
    );
}

#[test]
fn peer_mixing_kinds() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ tenant: db, cidr: 198.51.100.0/24 }]\n",
        )),
        &["spec.network.egress[0].to[0]: peer mixes tenant and cidr"],
    );
}

#[test]
fn named_port_nobody_declares() {
    expect(
        one(tenant(
            "  network:\n    ingress:\n      - from: [{ tenant: web }]\n        ports: [http]\n",
        )),
        &[
            "spec.network.ingress[0].ports[0]: no workload of tenant \"web\" declares a tcp port named \"http\"",
        ],
    );
}

#[test]
fn two_platforms() {
    let p = "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\n";
    expect(
        vec![
            Input::Text("a.yaml", p.into()),
            Input::Text("b.yaml", p.into()),
        ],
        &[
            "b.yaml:1:1: a second Platform object (expected exactly one; the first is at a.yaml:1:1)",
        ],
    );
}

#[test]
fn empty_command() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  profile: restricted\n")),
            Input::Text("w.yaml", workload("app", "web", "  command: []\n")),
        ],
        &["w.yaml:7:12: spec.command: empty command"],
    );
}

#[test]
fn relative_program_path() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  profile: restricted\n")),
            Input::Text("w.yaml", workload("app", "web", "  command: [python3]\n")),
        ],
        &["spec.command[0]: \"python3\" is not an absolute path"],
    );
}

#[test]
fn bad_environment_variable_name() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  profile: restricted\n")),
            Input::Text(
                "w.yaml",
                workload(
                    "app",
                    "web",
                    "  command: [/bin/true]\n  env:\n    1BAD: x\n",
                ),
            ),
        ],
        &["w.yaml:9:11: spec.env.1BAD: \"1BAD\" is not an environment variable name"],
    );
}

#[test]
fn dns_false() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to: [{ dns: false }]\n",
        )),
        &["spec.network.egress[0].to[0].dns: dns: false allows nothing"],
    );
}

#[test]
fn in_operator_without_values() {
    expect(
        one(tenant(
            "  network:\n    egress:\n      - to:\n          - tenantSelector:\n              matchExpressions: [{ key: team, operator: In }]\n",
        )),
        &[
            "spec.network.egress[0].to[0].tenantSelector.matchExpressions[0].values: In and NotIn need at least one value",
        ],
    );
}

#[test]
fn yaml_1_1_boolean_is_not_a_boolean() {
    expect(
        one(tenant("  storage:\n    encrypted: yes\n")),
        &["t.yaml:7:16: spec.storage.encrypted: found a string (expected true or false)"],
    );
}

#[test]
fn bad_instance_prefix() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  instance: Bulkhead-Prod\n".into()),
        &["t.yaml:6:13: spec.instance: \"Bulkhead-Prod\" is not an instance prefix"],
    );
}

#[test]
fn ipv6_tenant_range() {
    expect(
        one("apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  network:\n    tenantRange: 2001:db8::/64\n".into()),
        &["spec.network.tenantRange: 2001:db8::/64 is IPv6"],
    );
}

#[test]
fn no_yaml_files() {
    let errors = errors_for(vec![Input::Text("notes.txt", "hello".into())]);
    assert!(
        errors.iter().any(|e| e.contains("no YAML files found")),
        "{errors:?}"
    );
}

#[test]
fn every_error_reported_at_once() {
    let errors = errors_for(one(tenant(
        "  profile: strict\n  quota:\n    memory: 12Gx\n    pids: -1\n  storage:\n    encrypted: yes\n",
    )));
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn examples_are_valid_and_round_trip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let desired =
        bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("examples must validate:\n{e}"));
    assert_eq!(desired.tenants.len(), 3);
    let yaml = desired.to_yaml().expect("render");
    let again =
        bulkhead_spec::load_str("canonical.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again, desired);
}

// The Kubernetes settings of the platform and the tenant's GitOps source.

fn platform(spec: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

#[test]
fn dns_selector_without_pod_labels() {
    expect(
        one(platform(
            "  kubernetes:\n    dnsSelector: { namespace: kube-system }\n",
        )),
        &[
            "t.yaml:7:18: spec.kubernetes.dnsSelector.podLabels: missing required field (expected the DNS resolver's pod labels)",
        ],
    );
}

#[test]
fn dns_selector_with_empty_pod_labels() {
    expect(
        one(platform(
            "  kubernetes:\n    dnsSelector:\n      namespace: kube-system\n      podLabels: {}\n",
        )),
        &[
            "t.yaml:9:18: spec.kubernetes.dnsSelector.podLabels: empty podLabels would select every pod",
        ],
    );
}

#[test]
fn dns_selector_namespace_not_a_name() {
    expect(
        one(platform(
            "  kubernetes:\n    dnsSelector:\n      namespace: Kube_System\n      podLabels: { k8s-app: kube-dns }\n",
        )),
        &[
            "t.yaml:8:18: spec.kubernetes.dnsSelector.namespace: \"Kube_System\" is not a valid name",
        ],
    );
}

#[test]
fn pod_security_version_malformed() {
    expect(
        one(platform(
            "  kubernetes:\n    podSecurityVersion: \"1.34\"\n",
        )),
        &[
            "t.yaml:7:25: spec.kubernetes.podSecurityVersion: \"1.34\" is not a Pod Security version (expected latest or v1.N, e.g. v1.34)",
        ],
    );
}

#[test]
fn flux_allow_list_prefix_without_host_end() {
    expect(
        one(platform(
            "  kubernetes:\n    fluxSourceAllowList: [https://github.com/acme, http://git.example/]\n",
        )),
        &[
            "t.yaml:7:27: spec.kubernetes.fluxSourceAllowList[0]: \"https://github.com/acme\" is not a source prefix",
            "spec.kubernetes.fluxSourceAllowList[1]: \"http://git.example/\" is not a source prefix",
        ],
    );
}

#[test]
fn kubernetes_unknown_field_with_suggestion() {
    expect(
        one(platform("  kubernetes:\n    meshh: true\n")),
        &[
            "t.yaml:7:5: spec.kubernetes.meshh: unknown field",
            "did you mean \"mesh\"?",
        ],
    );
}

#[test]
fn gitops_url_with_plain_http() {
    expect(
        one(tenant("  gitops:\n    url: http://git.example/web\n")),
        &[
            "t.yaml:7:10: spec.gitops.url: \"http://git.example/web\" is not a Git URL Flux may pull",
        ],
    );
}

#[test]
fn gitops_url_escaping_its_prefix() {
    expect(
        one(tenant(
            "  gitops:\n    url: https://git.example/tenants/../platform\n",
        )),
        &[
            "t.yaml:7:10: spec.gitops.url: \"https://git.example/tenants/../platform\" is not a Git URL Flux may pull",
        ],
    );
}

#[test]
fn gitops_missing_url_and_bad_fields() {
    expect(
        one(tenant(
            "  gitops:\n    ref: \"-x\"\n    path: ../other\n    interval: 5 minutes\n",
        )),
        &[
            "spec.gitops.url: missing required field",
            "t.yaml:7:10: spec.gitops.ref: \"-x\" is not a Git branch or reference",
            "t.yaml:8:11: spec.gitops.path: \"../other\" is not a relative path without '..'",
            "t.yaml:9:15: spec.gitops.interval: \"5 minutes\" is not a duration",
        ],
    );
}

#[test]
fn gitops_source_not_on_allow_list() {
    expect(
        vec![
            Input::Text(
                "p.yaml",
                platform(
                    "  kubernetes:\n    fluxSourceAllowList: [https://git.example/platform/]\n",
                ),
            ),
            Input::Text(
                "t.yaml",
                tenant("  gitops:\n    url: https://git.example/platform-evil/web\n"),
            ),
        ],
        &[
            "t.yaml:7:10: spec.gitops.url: \"https://git.example/platform-evil/web\" is not on the platform's Flux source allow-list (expected a URL starting with one of: https://git.example/platform/)",
        ],
    );
}

#[test]
fn gitops_source_without_any_allow_list() {
    expect(
        one(tenant("  gitops:\n    url: https://git.example/web\n")),
        &[
            "spec.gitops.url: \"https://git.example/web\" is not on the platform's Flux source allow-list (expected the platform's spec.kubernetes.fluxSourceAllowList lists no source",
        ],
    );
}

#[test]
fn workload_image_with_whitespace() {
    expect(
        vec![
            Input::Text("t.yaml", tenant("  profile: restricted\n")),
            Input::Text(
                "w.yaml",
                workload("app", "web", "  command: [/bin/app]\n  image: \"app: 1\"\n"),
            ),
        ],
        &["w.yaml:8:10: spec.image: \"app: 1\" is not an image reference"],
    );
}

#[test]
fn kubernetes_settings_and_gitops_round_trip() {
    let text = format!(
        "{}---\n{}",
        platform(
            "  kubernetes:\n    dnsSelector: { namespace: dns, podLabels: { app: coredns } }\n    fluxSourceAllowList: [https://git.example/tenants/]\n    podSecurityVersion: v1.34\n    mesh: true\n"
        ),
        tenant(
            "  gitops:\n    url: https://git.example/tenants/web\n    ref: refs/tags/v1.0.0\n    path: ./deploy\n    interval: 1h30m\n"
        ),
    );
    let desired = bulkhead_spec::load_str("k.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let k8s = &desired.platform.spec.kubernetes;
    assert_eq!(k8s.dns_selector.namespace.as_str(), "dns");
    assert_eq!(k8s.pod_security_version, "v1.34");
    assert!(k8s.mesh);
    let yaml = desired.to_yaml().expect("render");
    let again =
        bulkhead_spec::load_str("canonical.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again, desired);
}

#[test]
fn connections_per_tenant_out_of_range() {
    let platform = |value: &str| {
        one(format!(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  network:\n    connectionsPerTenant: {value}\n"
        ))
    };
    expect(
        platform("0"),
        &[
            "t.yaml:7:27: spec.network.connectionsPerTenant: 0 is out of range (expected 1-100000000)",
        ],
    );
    expect(
        platform("many"),
        &[
            "spec.network.connectionsPerTenant: found",
            "(expected an integer 1-100000000)",
        ],
    );
}

#[test]
fn noisy_neighbour_settings_default_and_are_checked() {
    let platform = |spec: &str| {
        format!(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata: {{ name: p }}\nspec:\n{spec}"
        )
    };
    let defaults = bulkhead_spec::load_str("p.yaml", &platform("  instance: bh\n")).unwrap();
    assert_eq!(
        defaults.platform.spec.noisy_neighbours,
        bulkhead_spec::defaults::NOISY_NEIGHBOURS
    );
    assert!(!defaults.platform.spec.noisy_neighbours.tighten);
    let set = bulkhead_spec::load_str(
        "p.yaml",
        &platform("  noisyNeighbours: { tighten: true, sampleSeconds: 1, windowSeconds: 3 }\n"),
    )
    .unwrap();
    assert!(set.platform.spec.noisy_neighbours.tighten);
    assert_eq!(set.platform.spec.noisy_neighbours.window_seconds, 3);
    let errors: Vec<String> = bulkhead_spec::load_str(
        "p.yaml",
        &platform("  noisyNeighbours:\n    memoryPercent: 0\n    sampleSeconds: 9\n    windowSeconds: 3\n"),
    )
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        errors
            .iter()
            .any(|e| e
                .starts_with("p.yaml:6:20: spec.noisyNeighbours.memoryPercent: 0 is out of range")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.noisyNeighbours.windowSeconds: 3 is shorter")),
        "{errors:?}"
    );
}
