//! `bulkhead serve` as a real daemon (root; CI is root): each test applies its own
//! instance, starts the daemon, and talks to it over its unix socket with a minimal
//! HTTP/1.1 client. Every instance is collected with `gc --all` on drop, and every
//! daemon this file starts is killed by its own pid.
//!
//! Assertions read the API's answers, the audit log and the kernel (cgroup files,
//! /proc, nftables), not the daemon's own log output.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../bulkhead-node/tests/support/netslot.rs"]
mod netslot;
use netslot::Slot;

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (cgroups, namespaces, loop devices)");
            return;
        }
    };
}

const STEADY: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: steady, tenant: a }
spec:
  command: [/bin/sh, -c, "while true; do echo tick; sleep 0.5; done"]
  restart: always
"#;

const CRASHY: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: crashy, tenant: a }
spec:
  command: [/bin/sh, -c, "echo boom >&2; exit 3"]
  restart: always
"#;

fn tenant(name: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata: {{ name: {name} }}\nspec:\n  quota: {{ cpu: \"1\", memory: 1Gi, pids: 512, storage: 64Mi }}\n"
    )
}

/// One instance and its daemon.
struct Instance {
    prefix: String,
    state: tempfile::TempDir,
    spec: PathBuf,
    daemon: Option<Child>,
    /// Prefix and tenant range, unique on the host; held until after `gc --all`.
    _slot: Slot,
}

impl Instance {
    /// Tenants `tenants` (tenant `a` runs a steady and a crash-looping workload),
    /// applied.
    fn new(tenants: &[&str]) -> Instance {
        Instance::new_with_network(tenants, "")
    }

    /// [`Instance::new`] with `network_extra` added to the platform's network
    /// mapping (e.g. `", nat: true"`).
    fn new_with_network(tenants: &[&str], network_extra: &str) -> Instance {
        let mut documents = String::new();
        for name in tenants {
            documents.push_str("---\n");
            documents.push_str(&tenant(name));
        }
        documents.push_str("---\n");
        documents.push_str(STEADY);
        documents.push_str("---\n");
        documents.push_str(CRASHY);
        Instance::custom_network(network_extra, "", &documents)
    }

    /// An instance whose platform spec ends with `platform_extra` (indented lines under
    /// `spec:`), with `documents` after it, applied.
    fn custom(platform_extra: &str, documents: &str) -> Instance {
        Instance::custom_network("", platform_extra, documents)
    }

    /// [`Instance::custom`] with `network_extra` added to the network mapping.
    fn custom_network(network_extra: &str, platform_extra: &str, documents: &str) -> Instance {
        let slot = Slot::tenant_range('d');
        let prefix = slot.prefix();
        let state = tempfile::tempdir().expect("tempdir");
        let mut yaml = format!(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata: {{ name: t }}\nspec:\n  instance: {prefix}\n  network: {{ tenantRange: {}{network_extra} }}\n  keySource: {{ file: {}/master.key }}\n",
            slot.range(),
            state.path().display()
        );
        yaml.push_str(platform_extra);
        yaml.push_str(documents);
        let spec = state.path().join("spec.yaml");
        std::fs::write(&spec, yaml).expect("write spec");
        let instance = Instance {
            prefix,
            state,
            spec,
            daemon: None,
            _slot: slot,
        };
        let out = instance.cli(&["apply", &instance.spec.display().to_string()]);
        assert!(out.status.success(), "apply: {}", stderr(&out));
        instance
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
        command
            .env("BULKHEAD_STATE_ROOT", self.state.path())
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .env("BULKHEAD_ACTOR", "serve-test");
        command
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().expect("run bulkhead")
    }

    fn token(&self, role: &str, tenant: Option<&str>, ttl: &str) -> String {
        let mut args = vec!["token", "create", "--role", role, "--ttl", ttl];
        if let Some(tenant) = tenant {
            args.extend(["--tenant", tenant]);
        }
        let out = self.cli(&args);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// A token for `subject` (people are told apart by subject: the two-person rule).
    fn token_for(&self, subject: &str, role: &str, tenant: Option<&str>) -> String {
        let mut args = vec![
            "token",
            "create",
            "--role",
            role,
            "--ttl",
            "1h",
            "--subject",
            subject,
        ];
        if let Some(tenant) = tenant {
            args.extend(["--tenant", tenant]);
        }
        let out = self.cli(&args);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn socket(&self) -> PathBuf {
        self.state.path().join(&self.prefix).join("api.sock")
    }

    /// Starts the daemon and waits until its first reconciler pass is done.
    fn serve(&mut self, reconcile_interval: &str) {
        self.serve_with(reconcile_interval, &[]);
    }

    /// [`Instance::serve`] with more flags.
    fn serve_with(&mut self, reconcile_interval: &str, extra: &[&str]) {
        let log = std::fs::File::create(self.state.path().join("serve.log")).expect("log");
        let child = self
            .command()
            .args([
                "serve",
                "--reconcile-interval",
                reconcile_interval,
                "--backoff-base",
                "0.2",
                "--backoff-max",
                "2",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, health)) = self.try_request("GET", "/health", None, None)
                && health["reconciler"]["passes"].as_u64().unwrap_or(0) >= 1
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not come up: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to the daemon this test started (by its pid).
    fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("serve.log")).unwrap_or_default()
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: bulkhead\r\nConnection: close\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let (content_type, body) = body.unwrap_or(("text/plain", ""));
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
        Ok((status, value))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        self.try_request(method, path, Some(token), body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.daemon_log()))
    }

    fn audit(&self) -> Vec<Value> {
        let out = self.cli(&["audit", "log", "-o", "json", "--limit", "100000"]);
        serde_json::from_slice(&out.stdout).expect("audit json")
    }

    /// Host pids of processes in a workload's cgroup whose command line has `needle`.
    fn processes(&self, tenant: &str, workload: &str, needle: &str) -> Vec<u32> {
        let procs = format!(
            "/sys/fs/cgroup/pids/{}/{tenant}/{workload}/cgroup.procs",
            self.prefix
        );
        std::fs::read_to_string(procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|pid: &u32| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_daemon();
        let _ = self.cli(&["gc", "--all"]);
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One call of the matrix: action, method, path, body (content type, text).
type Case<'a> = (&'a str, String, String, Option<(&'a str, &'a str)>);

/// What every role may do, written out from the issue, not from the policy file.
fn expected(role: &str, action: &str, own: bool) -> bool {
    match role {
        // Exec into a tenant needs an approved operator-exec elevation.
        "platform-admin" => action != "workload.exec",
        "tenant-admin" => {
            own && matches!(
                action,
                "tenant.get"
                    | "workload.list"
                    | "workload.apply"
                    | "workload.logs"
                    | "workload.exec"
            )
        }
        "tenant-viewer" => {
            own && matches!(action, "tenant.get" | "workload.list" | "workload.logs")
        }
        _ => false,
    }
}

fn workload_yaml(tenant: &str, name: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name}, tenant: {tenant} }}\nspec:\n  command: [/bin/sleep, \"1000\"]\n  restart: never\n"
    )
}

#[test]
fn the_authorization_matrix_holds_against_the_live_api() {
    require_root!();
    let mut instance = Instance::new(&["a", "b", "c"]);
    // Every denial here is deliberate; the rate limit of denials has its own test.
    instance.serve_with("30", &["--denial-limit", "1000"]);
    let admin = instance.token("platform-admin", None, "1h");
    let tenant_admin = instance.token("tenant-admin", Some("a"), "1h");
    let viewer = instance.token("tenant-viewer", Some("a"), "1h");
    let denied_before = instance
        .audit()
        .iter()
        .filter(|r| r["result"] == "denied")
        .count();

    // Unauthenticated and garbage tokens get 401 and nothing else.
    let (status, _) = instance
        .try_request("GET", "/tenants", None, None)
        .expect("request");
    assert_eq!(status, 401);
    let (status, _) = instance.request("GET", "/tenants", "bht_nonsense", None);
    assert_eq!(status, 401);

    let mut denials = 0;
    let mut checked = 0;
    // Tenant roles first: every destructive call they make must be refused, so the
    // state the platform admin's turn relies on is still there.
    for (role, token) in [
        ("tenant-viewer", &viewer),
        ("tenant-admin", &tenant_admin),
        ("platform-admin", &admin),
    ] {
        for (own, target) in [(true, "a"), (false, "b")] {
            // The platform admin's destructive calls go to c, so a and b survive.
            let victim = if role == "platform-admin" {
                "c"
            } else {
                target
            };
            let workload_doc = workload_yaml(target, &format!("extra-{}", role.len()));
            let tenant_doc = tenant(target);
            let cases: Vec<Case<'_>> = vec![
                (
                    "tenant.get",
                    "GET".into(),
                    format!("/tenants/{target}"),
                    None,
                ),
                (
                    "workload.list",
                    "GET".into(),
                    format!("/tenants/{target}/workloads"),
                    None,
                ),
                (
                    "workload.logs",
                    "GET".into(),
                    format!("/tenants/{target}/workloads/steady/logs"),
                    None,
                ),
                (
                    "workload.exec",
                    "POST".into(),
                    format!("/tenants/{target}/workloads/steady/exec"),
                    Some(("application/json", r#"{"command": ["/bin/true"]}"#)),
                ),
                (
                    "workload.apply",
                    "POST".into(),
                    "/apply".into(),
                    Some(("application/yaml", &workload_doc)),
                ),
                (
                    "tenant.apply",
                    "POST".into(),
                    "/apply".into(),
                    Some(("application/yaml", &tenant_doc)),
                ),
                (
                    "tenant.suspend",
                    "POST".into(),
                    format!("/tenants/{target}/suspend"),
                    None,
                ),
                (
                    "tenant.resume",
                    "POST".into(),
                    format!("/tenants/{target}/resume"),
                    None,
                ),
                (
                    "tenant.delete",
                    "DELETE".into(),
                    format!("/tenants/{victim}"),
                    None,
                ),
            ];
            for (action, method, path, body) in cases {
                // The platform admin deletes c once.
                if action == "tenant.delete" && role == "platform-admin" && !own {
                    continue;
                }
                let (status, reply) = instance.request(&method, &path, token, body);
                let allowed = expected(role, action, own);
                checked += 1;
                if allowed {
                    assert!(
                        (200..300).contains(&status)
                            || (status == 404 && target == "b" && action.starts_with("workload.")),
                        "{role} {action} on {target}: expected success, got {status} {reply}"
                    );
                } else {
                    assert_eq!(status, 403, "{role} {action} on {target}: {reply}");
                    denials += 1;
                }
            }
        }
        // Platform objects.
        let platform_cases: Vec<Case<'_>> = vec![
            ("token.list", "GET".into(), "/tokens".into(), None),
            (
                "token.create",
                "POST".into(),
                "/tokens".into(),
                Some((
                    "application/json",
                    r#"{"subject": "x", "role": "tenant-viewer", "tenant": "b", "ttl_seconds": 60}"#,
                )),
            ),
            ("audit.read", "GET".into(), "/audit?limit=5".into(), None),
            ("metrics.read", "GET".into(), "/metrics".into(), None),
            (
                "token.revoke",
                "DELETE".into(),
                "/tokens/0000000000000000".into(),
                None,
            ),
        ];
        for (action, method, path, body) in platform_cases {
            let (status, reply) = instance.request(&method, &path, token, body);
            checked += 1;
            if role == "platform-admin" {
                // Revoking an unknown id is a 404 after authorization.
                assert!(
                    (200..300).contains(&status) || (status == 404 && action == "token.revoke"),
                    "{role} {action}: {status} {reply}"
                );
            } else {
                assert_eq!(status, 403, "{role} {action}: {reply}");
                denials += 1;
            }
        }
        // Lists show only what the role may read.
        let (status, tenants) = instance.request("GET", "/tenants", token, None);
        assert_eq!(status, 200);
        let names: Vec<&str> = tenants
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        if role == "platform-admin" {
            assert!(names.contains(&"a") && names.contains(&"b"), "{names:?}");
        } else {
            assert_eq!(names, vec!["a"], "{role} lists only its own tenant");
        }
    }
    eprintln!("authorization matrix: {checked} calls, {denials} denied");

    // Every denial is in the audit log, and the chain is intact.
    let denied_after = instance
        .audit()
        .iter()
        .filter(|r| r["result"] == "denied")
        .count();
    assert_eq!(denied_after - denied_before, denials);
    assert!(instance.cli(&["audit", "verify"]).status.success());
    // c is gone, a and b are not.
    let (_, tenants) = instance.request("GET", "/tenants", &admin, None);
    let names: Vec<&str> = tenants
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn tokens_expire_and_revoked_tokens_stop_working() {
    require_root!();
    let mut instance = Instance::new(&["a"]);
    instance.serve("30");
    let admin = instance.token("platform-admin", None, "1h");
    let short = instance.token("tenant-viewer", Some("a"), "2s");
    assert_eq!(instance.request("GET", "/tenants/a", &short, None).0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, reply) = instance.request("GET", "/tenants/a", &short, None);
    assert_eq!(status, 401, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{reply}"
    );

    let (status, created) = instance.request(
        "POST",
        "/tokens",
        &admin,
        Some((
            "application/json",
            r#"{"subject": "carol", "role": "tenant-admin", "tenant": "a", "ttl_seconds": 3600}"#,
        )),
    );
    assert_eq!(status, 200, "{created}");
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        instance
            .request("GET", "/tenants/a/workloads", &token, None)
            .0,
        200
    );
    assert_eq!(
        instance
            .request("DELETE", &format!("/tokens/{id}"), &admin, None)
            .0,
        200
    );
    let (status, reply) = instance.request("GET", "/tenants/a/workloads", &token, None);
    assert_eq!(status, 401);
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{reply}"
    );

    // The store never held a secret: only digests.
    let db = rusqlite::Connection::open(
        instance
            .state
            .path()
            .join(&instance.prefix)
            .join("state.db"),
    )
    .expect("db");
    let secret = token.rsplit('_').next().unwrap_or_default().to_owned();
    let leaked: i64 = db
        .query_row(
            "SELECT count(*) FROM api_tokens WHERE secret_sha256 = ?1 OR id = ?1",
            [&secret],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(leaked, 0);
    let audit = instance.audit();
    assert!(audit.iter().any(|r| r["action"] == "authenticate"
        && r["result"] == "denied"
        && r["detail"].as_str().unwrap_or_default().contains("revoked")));
}

#[test]
fn a_crash_looping_workload_backs_off_while_its_neighbour_keeps_running() {
    require_root!();
    let mut instance = Instance::new(&["a", "b"]);
    instance.serve("30");
    let admin = instance.token("platform-admin", None, "1h");
    let steady_pid = |instance: &Instance| {
        let (_, workloads) = instance.request("GET", "/tenants/a/workloads", &admin, None);
        workloads
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["workload"] == "steady")
            .and_then(|w| w["pid"].as_u64())
    };
    std::thread::sleep(Duration::from_millis(500));
    let first = steady_pid(&instance).expect("steady runs");
    let window = Duration::from_secs(8);
    std::thread::sleep(window);
    let (_, workloads) = instance.request("GET", "/tenants/a/workloads", &admin, None);
    let crashy = workloads
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["workload"] == "crashy")
        .cloned()
        .expect("crashy supervised");
    let restarts = crashy["restarts"].as_u64().unwrap_or(0);
    // 0.2 s doubling to a 2 s cap: 0.2+0.4+0.8+1.6+2+2… — about 6 restarts in 8 s,
    // where a fixed 0.2 s delay would make about 40.
    eprintln!(
        "crash-looping workload: {restarts} restarts in {window:?}, last backoff {} ms",
        crashy["backoff_ms"]
    );
    assert!((3..=10).contains(&restarts), "{crashy}");
    assert_eq!(crashy["last_exit"], 3);
    assert_eq!(
        steady_pid(&instance),
        Some(first),
        "the neighbour was never restarted"
    );
    assert_eq!(instance.processes("a", "steady", "while true").len(), 1);

    // Its output went to its log, through the API and the CLI.
    let (status, lines) = instance.request(
        "GET",
        "/tenants/a/workloads/crashy/logs?tail=3",
        &admin,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(lines, serde_json::json!(["boom", "boom", "boom"]));
    let out = instance.cli(&["logs", "a/steady", "--tail", "2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tick\ntick\n");

    // And metrics carry it.
    let (status, text) = instance.request("GET", "/metrics", &admin, None);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(r#"bulkhead_tenant_workload_restarts_total{tenant="a",workload="crashy"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"bulkhead_tenant_pids{tenant="b"}"#),
        "{text}"
    );
}

/// Polls `check` until it holds; how long that took.
fn time_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn the_reconciler_repairs_a_raised_limit_a_flushed_firewall_and_a_deleted_veth() {
    require_root!();
    let mut instance = Instance::new(&["a", "b"]);
    instance.serve("1");
    let pids_max = format!("/sys/fs/cgroup/pids/{}/b/pids.max", instance.prefix);
    assert_eq!(
        std::fs::read_to_string(&pids_max).expect("pids.max").trim(),
        "512"
    );

    std::fs::write(&pids_max, "100000").expect("tamper with pids.max");
    let limit = time_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&pids_max).is_ok_and(|v| v.trim() == "512")
    })
    .expect("the raised pids limit was repaired");

    let table = format!("bulkhead_{}", instance.prefix);
    let rules = |table: &str| {
        let out = Command::new("nft")
            .args(["list", "table", "inet", table])
            .output()
            .expect("nft");
        // Rules, not chain headers (a flushed table keeps its chains and policies).
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.contains("policy")
                    && !l.trim_start().starts_with("set ")
                    && (l.contains("drop")
                        || l.contains("accept")
                        || l.contains("jump")
                        || l.contains("vmap"))
            })
            .count()
    };
    let before = rules(&table);
    assert!(before > 0, "the firewall has drop rules");
    let flushed = Command::new("nft")
        .args(["flush", "table", "inet", &table])
        .status()
        .expect("nft");
    assert!(flushed.success());
    assert_eq!(rules(&table), 0);
    let firewall = time_until(Duration::from_secs(30), || rules(&table) == before)
        .expect("the flushed firewall was repaired");

    // A deleted host-side veth: the reconciler rewires the tenant.
    let shown: Value =
        serde_json::from_slice(&instance.cli(&["net", "show", "b", "-o", "json"]).stdout)
            .expect("net show json");
    let host_if = shown["tenants"][0]["hostInterface"]
        .as_str()
        .expect("host interface")
        .to_owned();
    let link = format!("/sys/class/net/{host_if}");
    assert!(std::path::Path::new(&link).exists());
    let deleted = Command::new("ip")
        .args(["link", "del", &host_if])
        .status()
        .expect("ip");
    assert!(deleted.success());
    let veth = time_until(Duration::from_secs(30), || {
        std::path::Path::new(&link).exists()
    })
    .expect("the deleted veth was rewired");
    eprintln!(
        "drift left unrepaired (reconcile interval 1 s): raised pids.max {} ms, flushed nftables table {} ms, deleted veth {} ms",
        limit.as_millis(),
        firewall.as_millis(),
        veth.as_millis()
    );
    // The outcome record follows the kernel repair: wait for it rather than race it.
    let repaired = |instance: &Instance| -> Vec<Value> {
        instance
            .audit()
            .into_iter()
            .filter(|r| r["actor"] == "bulkhead-daemon/reconciler" && r["result"] == "succeeded")
            .collect()
    };
    let _ = time_until(Duration::from_secs(30), || repaired(&instance).len() >= 3);
    let repairs = repaired(&instance);
    assert!(repairs.len() >= 3, "each repair is audited: {repairs:?}");
    assert!(
        repairs
            .iter()
            .any(|r| r["action"].as_str().unwrap_or_default().contains("wire")),
        "the rewiring is audited: {repairs:?}"
    );
}

#[test]
fn a_daemon_killed_during_an_apply_converges_on_restart_without_leaks() {
    require_root!();
    let mut instance = Instance::new(&["a"]);
    instance.serve("30");
    let admin = instance.token("platform-admin", None, "1h");
    // An apply that adds a tenant (volume, keys, sandbox, network) in flight…
    let socket = instance.socket();
    let body = format!("{}---\n{}", tenant("d"), workload_yaml("d", "idle"));
    let client = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(socket).expect("connect");
        let request = format!(
            "POST /apply HTTP/1.1\r\nHost: b\r\nConnection: close\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(request.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    });
    // …is killed with SIGKILL as soon as its first host action for d is under way.
    let db = rusqlite::Connection::open(
        instance
            .state
            .path()
            .join(&instance.prefix)
            .join("state.db"),
    )
    .expect("db");
    let started = time_until(Duration::from_secs(60), || {
        db.query_row(
            "SELECT count(*) FROM audit_log WHERE object = 'tenant/d' AND action NOT IN ('create', 'update', 'delete')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n > 0)
    });
    assert!(started.is_some(), "the apply never reached the host");
    instance.kill_daemon();
    let response = client.join().expect("client");
    let pending: Vec<Value> = {
        let audit = instance.audit();
        let answered: Vec<u64> = audit
            .iter()
            .filter_map(|r| r["refers_to"].as_u64())
            .collect();
        audit
            .into_iter()
            .filter(|r| {
                r["result"] == "pending" && !answered.contains(&r["seq"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    eprintln!(
        "killed during the apply's host actions ({} intent(s) left without an outcome); the client saw {:?}",
        pending.len(),
        response.lines().next().unwrap_or("no response")
    );

    // The workloads it supervised outlive it; the restarted daemon must not double them.
    instance.serve("1");
    std::thread::sleep(Duration::from_secs(3));
    let (_, health) = instance
        .try_request("GET", "/health", None, None)
        .expect("health");
    assert_eq!(health["reconciler"]["converged"], true, "{health}");
    assert_eq!(
        health["reconciler"]["last_actions"],
        serde_json::json!([]),
        "{health}"
    );
    assert_eq!(
        instance.processes("a", "steady", "while true").len(),
        1,
        "one steady instance"
    );
    // The host matches the revision in force: plan has no host action.
    let out = instance.cli(&["history", "-o", "json"]);
    assert!(out.status.success());

    // Nothing of the instance stays on the host after gc.
    instance.kill_daemon();
    let out = instance.cli(&["gc", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().join(&instance.prefix).exists() {
            leftovers.push(entry.path().join(&instance.prefix).display().to_string());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let state = instance.state.path().display().to_string();
    leftovers.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&state))
            .map(str::to_owned),
    );
    let netns = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten();
    leftovers.extend(
        netns
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", instance.prefix))
            })
            .map(|e| e.path().display().to_string()),
    );
    let any_process = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("while true; do echo tick; sleep 0.5")
                    && c.contains("sh")
                    && std::fs::read_to_string(e.path().join("cgroup"))
                        .is_ok_and(|g| g.contains(&format!("/{}/", instance.prefix)))
            })
        });
    assert!(!any_process, "a workload of the instance outlived gc");
    assert!(leftovers.is_empty(), "leftovers: {leftovers:?}");
}

fn elevation_body(kind: &str, tenant: &str, parameters: &str, ttl: u64) -> String {
    format!(
        r#"{{"kind": "{kind}", "tenant": "{tenant}", "parameters": {parameters}, "reason": "serve test", "ttl_seconds": {ttl}}}"#
    )
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn an_elevation_needs_a_second_admin_applies_to_the_kernel_and_expires() {
    require_root!();
    let mut instance = Instance::new(&["a", "b"]);
    instance.serve("1");
    let alice = instance.token_for("alice", "platform-admin", None);
    let bob = instance.token_for("bob", "platform-admin", None);
    let tenant_admin = instance.token_for("carol", "tenant-admin", Some("a"));
    let viewer = instance.token_for("dave", "tenant-viewer", Some("a"));
    let memory = format!(
        "/sys/fs/cgroup/memory/{}/a/memory.limit_in_bytes",
        instance.prefix
    );
    assert_eq!(read_trim(&memory), (1u64 << 30).to_string());

    // Tenant roles can neither ask nor list.
    let raise = elevation_body("quota-raise", "a", r#"{"memory": "2Gi"}"#, 6);
    for token in [&tenant_admin, &viewer] {
        let (status, reply) = instance.request(
            "POST",
            "/elevations",
            token,
            Some(("application/json", &raise)),
        );
        assert_eq!(status, 403, "{reply}");
        assert_eq!(instance.request("GET", "/elevations", token, None).0, 403);
    }
    // A raise that lowers, or names a quota a raise may not change, is refused.
    for bad in [r#"{"memory": "512Mi"}"#, r#"{"storage": "9Gi"}"#] {
        let body = elevation_body("quota-raise", "a", bad, 6);
        let (status, reply) = instance.request(
            "POST",
            "/elevations",
            &alice,
            Some(("application/json", &body)),
        );
        assert_eq!(status, 422, "{bad}: {reply}");
    }

    let (status, pending) = instance.request(
        "POST",
        "/elevations",
        &alice,
        Some(("application/json", &raise)),
    );
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().expect("id").to_owned();
    let approve = format!("/elevations/{id}/approve");

    // The requester cannot approve (or deny) their own; tenant roles cannot approve.
    for (token, who) in [(&alice, "requester"), (&tenant_admin, "tenant-admin")] {
        let (status, reply) = instance.request("POST", &approve, token, None);
        assert_eq!(status, 403, "{who}: {reply}");
    }
    let (status, _) = instance.request("POST", &format!("/elevations/{id}/deny"), &alice, None);
    assert_eq!(status, 403);
    assert_eq!(
        read_trim(&memory),
        (1u64 << 30).to_string(),
        "nothing changed"
    );

    // Another admin approves: the kernel's limit is raised at once.
    let (status, changed) = instance.request(
        "POST",
        &approve,
        &bob,
        Some(("application/json", r#"{"note": "ok"}"#)),
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["elevation"]["status"], "active");
    assert_eq!(changed["elevation"]["decided_by"], "bob");
    assert_eq!(read_trim(&memory), (2u64 << 30).to_string());
    // Approving twice is a conflict.
    assert_eq!(instance.request("POST", &approve, &bob, None).0, 409);

    // The TTL runs out: the reconciler marks it expired and the limit goes back.
    let expired = time_until(Duration::from_secs(60), || {
        let (_, all) = instance.request("GET", "/elevations", &bob, None);
        let status = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["id"] == id.as_str())
            .map(|e| e["status"].clone());
        status == Some(Value::from("expired")) && read_trim(&memory) == (1u64 << 30).to_string()
    });
    assert!(expired.is_some(), "the raise expired and was reverted");

    // Every step is in the audit log.
    let audit = instance.audit();
    let has = |action: &str, result: &str, actor: &str| {
        audit.iter().any(|r| {
            r["action"] == action
                && r["result"] == result
                && r["actor"].as_str().unwrap_or_default().starts_with(actor)
        })
    };
    assert!(has("elevation.request", "succeeded", "alice"));
    assert!(has("elevation.request", "denied", "carol"));
    assert!(
        has("elevation.approve", "denied", "alice"),
        "self-approval audited"
    );
    assert!(has("elevation.approve", "denied", "carol"));
    assert!(has("elevation.approve", "succeeded", "bob"));
    assert!(has(
        "elevation.expire",
        "succeeded",
        "bulkhead-daemon/reconciler"
    ));
    assert!(
        audit
            .iter()
            .any(|r| r["actor"] == "bulkhead-daemon/reconciler"
                && r["object"] == "tenant/a"
                && r["action"] == "set-tenant-limits"
                && r["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("memory 1Gi")),
        "the revert is an audited host action"
    );
    assert!(instance.cli(&["audit", "verify"]).status.success());
}

#[test]
fn operator_exec_and_egress_exceptions_hold_only_while_granted() {
    require_root!();
    // With NAT: without it an egress exception beyond the host would be narrowed away
    // (nothing leaves the host without NAT). No traffic is sent there.
    let mut instance = Instance::new_with_network(&["a", "b"], ", nat: true");
    instance.serve("30");
    let alice = instance.token_for("alice", "platform-admin", None);
    let bob = instance.token_for("bob", "platform-admin", None);
    let exec = |token: &str, tenant: &str| {
        instance
            .request(
                "POST",
                &format!("/tenants/{tenant}/workloads/steady/exec"),
                token,
                Some(("application/json", r#"{"command": ["/bin/true"]}"#)),
            )
            .0
    };
    assert_eq!(exec(&alice, "a"), 403, "no exec without an elevation");

    let body = elevation_body("operator-exec", "a", "{}", 3600);
    let (status, pending) = instance.request(
        "POST",
        "/elevations",
        &alice,
        Some(("application/json", &body)),
    );
    assert_eq!(status, 200, "{pending}");
    let id = pending["id"].as_str().expect("id").to_owned();
    let (status, reply) =
        instance.request("POST", &format!("/elevations/{id}/approve"), &bob, None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(exec(&alice, "a"), 200, "the requester, on that tenant");
    assert_eq!(exec(&alice, "b"), 403, "not another tenant");
    assert_eq!(exec(&bob, "a"), 403, "not the approver");
    let (status, _) = instance.request("POST", &format!("/elevations/{id}/revoke"), &bob, None);
    assert_eq!(status, 200);
    assert_eq!(exec(&alice, "a"), 403, "revoked");

    // An egress exception appears in the compiled firewall while it is active.
    let table = format!("bulkhead_{}", instance.prefix);
    let ruleset = || {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &table])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!ruleset().contains("203.0.113.0/24"));
    let body = elevation_body(
        "egress-exception",
        "b",
        r#"{"cidr": "203.0.113.0/24", "ports": ["443/tcp"]}"#,
        3600,
    );
    let (status, pending) = instance.request(
        "POST",
        "/elevations",
        &bob,
        Some(("application/json", &body)),
    );
    assert_eq!(status, 200, "{pending}");
    let id = pending["id"].as_str().expect("id").to_owned();
    let (status, reply) =
        instance.request("POST", &format!("/elevations/{id}/approve"), &alice, None);
    assert_eq!(status, 200, "{reply}");
    assert!(ruleset().contains("203.0.113.0/24"), "{}", ruleset());
    let (status, _) = instance.request("POST", &format!("/elevations/{id}/revoke"), &alice, None);
    assert_eq!(status, 200);
    assert!(!ruleset().contains("203.0.113.0/24"), "{}", ruleset());
    // The CLI goes through the daemon with the caller's token: the requester's own
    // approval is refused (exit 3), another admin's goes through.
    let cli = |token: &str, args: &[&str]| {
        let mut command = instance.command();
        command
            .env("BULKHEAD_TOKEN", token)
            .arg("elevate")
            .args(args);
        command.output().expect("run bulkhead elevate")
    };
    let out = cli(
        &alice,
        &[
            "request",
            "--kind",
            "quota-raise",
            "--tenant",
            "b",
            "--parameters",
            r#"{"pids": 1024}"#,
            "--reason",
            "cli",
            "--ttl",
            "1h",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cli_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let out = cli(&alice, &["approve", &cli_id]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("two-person"), "{}", stderr(&out));
    let out = cli(&bob, &["approve", &cli_id, "--note", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_trim(&format!(
            "/sys/fs/cgroup/pids/{}/b/pids.max",
            instance.prefix
        )),
        "1024"
    );
    let out = cli(&bob, &["-o", "json", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(3));

    let audit = instance.audit();
    assert!(audit.iter().any(|r| r["action"] == "elevation.revoke"
        && r["result"] == "succeeded"
        && r["object"] == format!("elevation/{id}")));
}

#[test]
fn a_token_denied_too_often_gets_429_and_the_refusals_are_audited_in_aggregate() {
    require_root!();
    let mut instance = Instance::new(&["a"]);
    instance.serve_with(
        "30",
        &[
            "--denial-limit",
            "3",
            "--denial-window",
            "60",
            "--denial-block",
            "3",
        ],
    );
    let admin = instance.token_for("alice", "platform-admin", None);
    let viewer = instance.token_for("dave", "tenant-viewer", Some("a"));
    let viewer_id = viewer.split('_').nth(1).expect("id").to_owned();
    let before = instance.audit().len();
    for _ in 0..3 {
        assert_eq!(instance.request("GET", "/tokens", &viewer, None).0, 403);
    }
    // Blocked: even what the role may do is refused for now, without an audit record
    // per request.
    let mut refused = 0;
    for _ in 0..10 {
        let (status, reply) = instance.request("GET", "/tenants/a", &viewer, None);
        assert_eq!(status, 429, "{reply}");
        assert_eq!(reply["error"], "too-many-requests");
        refused += 1;
    }
    assert_eq!(instance.request("GET", "/tenants/a", &admin, None).0, 200);
    let during = instance.audit();
    let mine: Vec<&Value> = during[before..]
        .iter()
        .filter(|r| r["actor"].as_str().unwrap_or_default().contains(&viewer_id))
        .collect();
    assert_eq!(
        mine.iter().filter(|r| r["action"] == "token.list").count(),
        3,
        "each denial before the block is audited"
    );
    assert_eq!(
        mine.iter().filter(|r| r["action"] == "rate-limit").count(),
        1,
        "the block's start: {mine:?}"
    );
    assert_eq!(mine.len(), 4, "no record per refused request: {mine:?}");

    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(instance.request("GET", "/tenants/a", &viewer, None).0, 200);
    let after = instance.audit();
    let ended: Vec<&Value> = after[before..]
        .iter()
        .filter(|r| {
            r["action"] == "rate-limit"
                && r["actor"].as_str().unwrap_or_default().contains(&viewer_id)
                && r["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("block ended")
        })
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(
        ended[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{refused} request(s)")),
        "{ended:?}"
    );
    assert!(instance.cli(&["audit", "verify"]).status.success());
}

/// A self-signed CA certificate at `pem` (key `<dir>/<name>.key`); false without openssl.
fn make_ca(dir: &std::path::Path, name: &str, pem: &std::path::Path) -> bool {
    Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN=bulkhead test {name}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(pem)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One HTTPS request with rustls, trusting only `ca`.
fn tls_request(
    address: std::net::SocketAddr,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify after a complete response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((
        status,
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    ))
}

#[test]
fn the_tls_listener_authenticates_and_authorizes_like_the_socket() {
    require_root!();
    let mut instance = Instance::new(&["a", "b"]);
    let dir = instance.state.path().to_owned();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    if !make_ca(&dir, "ca", &ca) {
        eprintln!("skipped: needs the openssl binary to make a test certificate");
        return;
    }
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    let openssl = |args: &[&std::ffi::OsStr]| {
        Command::new("openssl")
            .args(args)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let csr = dir.join("leaf.csr");
    assert!(openssl(&[
        "req".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:prime256v1".as_ref(),
        "-nodes".as_ref(),
        "-subj".as_ref(),
        "/CN=localhost".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        csr.as_os_str(),
    ]));
    assert!(openssl(&[
        "x509".as_ref(),
        "-req".as_ref(),
        "-in".as_ref(),
        csr.as_os_str(),
        "-CA".as_ref(),
        ca.as_os_str(),
        "-CAkey".as_ref(),
        dir.join("ca.key").as_os_str(),
        "-CAcreateserial".as_ref(),
        "-days".as_ref(),
        "1".as_ref(),
        "-extfile".as_ref(),
        ext.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
    ]));
    // A free loopback port (bound, then released for the daemon).
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let listen = address.to_string();
    instance.serve_with(
        "30",
        &[
            "--tls-listen",
            &listen,
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    let admin = instance.token_for("alice", "platform-admin", None);
    let viewer = instance.token_for("dave", "tenant-viewer", Some("a"));

    let (status, _) = tls_request(address, &ca, "GET", "/tenants", None).expect("tls");
    assert_eq!(status, 401);
    let (status, tenants) =
        tls_request(address, &ca, "GET", "/tenants", Some(&admin)).expect("tls");
    assert_eq!(status, 200, "{tenants}");
    assert_eq!(tenants.as_array().map(Vec::len), Some(2));
    let (status, reply) =
        tls_request(address, &ca, "GET", "/tenants/b", Some(&viewer)).expect("tls");
    assert_eq!(status, 403, "{reply}");
    let (status, _) = tls_request(address, &ca, "GET", "/tenants/a", Some(&viewer)).expect("tls");
    assert_eq!(status, 200);
    // The denial over TLS is audited like one over the socket.
    assert!(instance.audit().iter().any(|r| r["action"] == "tenant.get"
        && r["object"] == "tenant/b"
        && r["result"] == "denied"
        && r["actor"].as_str().unwrap_or_default().starts_with("dave")));

    // A client that trusts another CA gets no answer at all.
    let other = dir.join("other.pem");
    assert!(make_ca(&dir, "other", &other));
    assert!(tls_request(address, &other, "GET", "/tenants", Some(&admin)).is_err());
    // Plain HTTP on the TLS port gets no HTTP answer either.
    let mut plain = std::net::TcpStream::connect(address).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

const HOG: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: burn, tenant: hog }
spec:
  command: [/bin/sh, -c, "while :; do :; done"]
  restart: always
"#;

#[test]
fn a_cpu_hog_gets_a_lower_weight_for_a_cool_down_restored_even_across_a_restart() {
    require_root!();
    let nn = "  noisyNeighbours: { tighten: true, sampleSeconds: 1, windowSeconds: 2, coolDownSeconds: 10, tightenCpuWeight: 10, cpuBusyMillicores: 100 }\n";
    let mut documents = format!("---\n{}---\n{}", tenant("hog"), tenant("calm"));
    documents.push_str("---\n");
    documents.push_str(HOG);
    let mut instance = Instance::custom(nn, &documents);
    let prefix = instance.prefix.clone();
    let shares = |t: &str| read_trim(&format!("/sys/fs/cgroup/cpu/{prefix}/{t}/cpu.shares"));
    let normal = shares("hog");
    assert_eq!(normal, shares("calm"));
    instance.serve("30");

    // The hog burns what it gets of a core (on a loaded machine far less than a whole
    // one, hence the low threshold; the quiet tenant runs nothing): after the window
    // its weight drops in the kernel.
    let lowered = time_until(Duration::from_secs(60), || shares("hog") != normal);
    assert!(lowered.is_some(), "the hog's cpu.shares stayed {normal}");
    let tightened = shares("hog");
    assert!(
        tightened.parse::<u64>().unwrap_or(u64::MAX) < normal.parse::<u64>().unwrap_or(0),
        "{tightened} < {normal}"
    );
    assert_eq!(shares("calm"), normal, "the quiet neighbour is untouched");
    let audit = instance.audit();
    assert!(audit.iter().any(|r| {
        r["action"] == "noisy-neighbour.detected"
            && r["object"] == "tenant/hog"
            && r["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("cpu-busy")
    }));
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "noisy-neighbour.tighten" && r["object"] == "tenant/hog")
    );
    assert!(
        !audit
            .iter()
            .any(|r| r["action"] == "noisy-neighbour.detected" && r["object"] == "tenant/calm")
    );
    let admin = instance.token("platform-admin", None, "1h");
    let (_, metrics) = instance.request("GET", "/metrics", &admin, None);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("bulkhead_tenant_tightened_cpu_weight{tenant=\"hog\"} 10"),
        "{metrics}"
    );
    // A v1 (or hybrid) host has no per-cgroup PSI: no pressure series, not zeros.
    if std::path::Path::new(&format!("/sys/fs/cgroup/cpu/{}", instance.prefix)).exists() {
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("bulkhead_tenant_pressure_stalled_seconds_total{")),
            "{metrics}"
        );
    }

    // The daemon dies while the tenant is tightened; the hog goes away (a CLI apply,
    // which keeps the tightening in force: it is in the store, not the daemon).
    instance.kill_daemon();
    let calm_only = format!(
        "{}---\n{}---\n{}",
        std::fs::read_to_string(&instance.spec)
            .expect("spec")
            .split("---\n")
            .next()
            .unwrap_or_default(),
        tenant("hog"),
        tenant("calm")
    );
    std::fs::write(&instance.spec, calm_only).expect("write spec");
    let out = instance.cli(&["apply", &instance.spec.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(shares("hog"), tightened, "still tightened after the apply");

    // A new daemon after the cool-down restores the weight and audits it.
    std::thread::sleep(Duration::from_secs(10));
    instance.serve("30");
    let restored = time_until(Duration::from_secs(30), || shares("hog") == normal);
    assert!(restored.is_some(), "cpu.shares is {}", shares("hog"));
    let restore = time_until(Duration::from_secs(30), || {
        instance
            .audit()
            .iter()
            .any(|r| r["action"] == "noisy-neighbour.restore" && r["object"] == "tenant/hog")
    });
    assert!(restore.is_some(), "the restore is audited");
    assert!(instance.cli(&["audit", "verify"]).status.success());
}

/// Concurrent audited token writes are group-committed: every answered creation and
/// revocation is in the store and in the audit log, each intent directly followed by
/// its outcome, and the chain verifies.
#[test]
fn concurrent_token_writes_are_each_committed_with_their_records() {
    require_root!();
    let mut instance = Instance::new(&["a"]);
    instance.serve("30");
    let admin = instance.token("platform-admin", None, "1h");
    let instance = std::sync::Arc::new(instance);
    let workers: Vec<_> = (0..24)
        .map(|w| {
            let instance = std::sync::Arc::clone(&instance);
            let admin = admin.clone();
            std::thread::spawn(move || {
                let mut made = Vec::new();
                for i in 0..8 {
                    let body = format!(
                        r#"{{"subject": "load-{w}-{i}", "role": "tenant-viewer", "tenant": "a", "ttl_seconds": 3600}}"#
                    );
                    let (status, created) = instance.request(
                        "POST",
                        "/tokens",
                        &admin,
                        Some(("application/json", &body)),
                    );
                    assert_eq!(status, 200, "{created}");
                    let id = created["id"].as_str().expect("id").to_owned();
                    let token = created["token"].as_str().expect("token").to_owned();
                    if i % 2 == 1 {
                        let (status, revoked) =
                            instance.request("DELETE", &format!("/tokens/{id}"), &admin, None);
                        assert_eq!(status, 200, "{revoked}");
                    }
                    made.push((id, token, i % 2 == 1));
                }
                made
            })
        })
        .collect();
    let made: Vec<(String, String, bool)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert_eq!(made.len(), 24 * 8);

    // Each answer was given after its commit: the tokens work, or are refused as revoked.
    for (_, token, revoked) in made.iter().step_by(7) {
        let (status, _) = instance.request("GET", "/tenants/a", token, None);
        assert_eq!(status, if *revoked { 401 } else { 200 });
    }

    let audit = instance.audit();
    let by_seq = |seq: u64| {
        audit
            .iter()
            .find(|r| r["seq"].as_u64() == Some(seq))
            .expect("record")
    };
    let mut logged_created = Vec::new();
    let mut logged_revoked = Vec::new();
    for intent in audit.iter().filter(|r| {
        r["result"] == "pending" && r["action"].as_str().unwrap_or("").starts_with("token.")
    }) {
        let seq = intent["seq"].as_u64().expect("seq");
        let outcome = by_seq(seq + 1);
        assert_eq!(
            outcome["refers_to"].as_u64(),
            Some(seq),
            "{intent} {outcome}"
        );
        assert_eq!(outcome["result"], "succeeded", "{outcome}");
        if intent["action"] == "token.create" {
            let detail = outcome["detail"].as_str().unwrap_or_default();
            logged_created.push(detail.trim_start_matches("token ").to_owned());
        } else {
            let object = intent["object"].as_str().unwrap_or_default();
            logged_revoked.push(object.trim_start_matches("token/").to_owned());
        }
    }
    for (id, _, revoked) in &made {
        assert!(logged_created.contains(id), "no audited creation of {id}");
        assert_eq!(logged_revoked.contains(id), *revoked, "revocation of {id}");
    }
    let out = instance.cli(&["audit", "verify"]);
    assert!(out.status.success(), "audit verify: {}", stderr(&out));
}
