//! Tenant networks end to end, through the `bulkhead` binary (root; CI is root): the
//! DNS view from inside tenants, `net show` against the kernel, and drift — a flushed
//! firewall, a deleted veth, a suspended tenant — repaired by `apply`.
//!
//! Each test runs its own instance with its own prefix and tenant range, reserved
//! across every process on the host (`netslot`: tests of other binaries and other runs
//! never share a bridge address, a route, a table or a link name with it), and removes
//! everything with `gc --all`, also when it fails. Traffic stays inside namespaces the
//! tests create.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::Command;

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
            eprintln!("skipped: needs root (namespaces, links, nftables)");
            return;
        }
    };
}

/// One instance on the examples, with a unique prefix and tenant range.
struct Instance {
    prefix: String,
    state: tempfile::TempDir,
    specs: tempfile::TempDir,
    servers: Vec<Child>,
    /// Held until after `gc --all` (fields drop after `Drop::drop`).
    _slot: Slot,
}

impl Instance {
    fn new() -> Instance {
        Instance::with_platform(|text| text)
    }

    /// The examples, with `edit` applied to the platform file.
    fn with_platform(edit: impl FnOnce(String) -> String) -> Instance {
        let slot = Slot::tenant_range('n');
        let prefix = slot.prefix();
        let state = tempfile::tempdir().expect("tempdir");
        let specs = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
            specs.path(),
        );
        let platform = specs.path().join("platform.yaml");
        let key = state.path().join("master.key");
        let text = std::fs::read_to_string(&platform)
            .expect("read")
            .replace("instance: bh ", &format!("instance: {prefix} "))
            .replace(
                "tenantRange: 10.240.0.0/24",
                &format!("tenantRange: {}", slot.range()),
            )
            .replace(
                "file: /etc/bulkhead/master.key",
                &format!("file: {}", key.display()),
            );
        std::fs::write(&platform, edit(text)).expect("write");
        Instance {
            prefix,
            state,
            specs,
            servers: Vec::new(),
            _slot: slot,
        }
    }

    fn cmd(&self) -> Command {
        let mut command = Command::cargo_bin("bulkhead").expect("binary");
        command
            .env("BULKHEAD_STATE_ROOT", self.state.path())
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .env("BULKHEAD_ACTOR", "net-test");
        command
    }

    fn apply(&self) {
        self.cmd()
            .arg("apply")
            .arg(self.specs.path())
            .assert()
            .success();
    }

    /// What `plan` prints.
    fn plan(&self) -> String {
        let output = self
            .cmd()
            .arg("plan")
            .arg(self.specs.path())
            .output()
            .expect("plan");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn state_dir(&self) -> PathBuf {
        self.state.path().join(&self.prefix)
    }

    fn address_of(&self, tenant: &str) -> String {
        let db = rusqlite::Connection::open(self.state_dir().join("state.db")).expect("store");
        db.query_row(
            "SELECT address FROM tenant_addresses WHERE tenant = ?1",
            [tenant],
            |r| r.get(0),
        )
        .expect("address")
    }

    /// Starts a declared workload (a server) in the background.
    fn serve(&mut self, tenant: &str, workload: &str) {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("bulkhead"))
            .env("BULKHEAD_STATE_ROOT", self.state.path())
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .args(["run", tenant, "--workload", workload])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server");
        self.servers.push(child);
    }

    /// A TCP connect from inside `from` to `address:port`, with a short timeout.
    ///
    /// A probe that did not run (the sandbox failed to start, python failed) is a test
    /// failure, never a "closed": a denial must be the network's answer.
    fn connects(&self, from: &str, address: &str, port: u16) -> bool {
        let script = format!(
            "import socket\ns = socket.socket()\ns.settimeout(2.0)\ntry:\n    s.connect(('{address}', {port}))\n    print('open')\nexcept Exception:\n    print('closed')\n"
        );
        let output = self
            .cmd()
            .args(["run", from, "--", "/usr/bin/python3", "-c", &script])
            .output()
            .expect("probe");
        match String::from_utf8_lossy(&output.stdout).trim() {
            "open" => true,
            "closed" => false,
            other => panic!(
                "the probe from {from} to {address}:{port} did not run (stdout {other:?}): {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Asks the tenant's resolver (from its /etc/resolv.conf) for each name over UDP
    /// and over TCP; per name `rcode:address` for both, e.g. `0:10.241.3.2 0:10.241.3.2`.
    fn resolve(&self, from: &str, names: &[&str]) -> Vec<(String, String)> {
        let mut args = vec!["run", from, "--", "/usr/bin/python3", "-c", RESOLVE];
        args.extend(names);
        let output = self.cmd().args(&args).output().expect("resolve");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, a)| (n.to_owned(), a.to_owned()))
            .collect()
    }

    fn resolver_pid(&self) -> Option<u32> {
        let record =
            std::fs::read_to_string(self.state_dir().join("resolver/resolver.record")).ok()?;
        record.split_whitespace().next()?.parse().ok()
    }

    /// Resolver processes of this instance still running.
    fn resolvers(&self) -> Vec<String> {
        let state = self.state_dir().display().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("cmdline"))
                    .is_ok_and(|c| c.starts_with("bulkhead-resolver"))
                    && std::fs::read(e.path().join("environ"))
                        .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&state))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        // Twice at most: a holder still busy with a killed `run` may need a second pass.
        for _ in 0..2 {
            match self.cmd().args(["gc", "--all"]).output() {
                Ok(out) if out.status.success() => return,
                Ok(out) => eprintln!(
                    "gc --all of {} failed: {}",
                    self.prefix,
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("gc --all of {} did not run: {e}", self.prefix),
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Raw DNS queries (UDP, then TCP) to the resolver the tenant's resolv.conf names.
const RESOLVE: &str = r#"
import socket, struct, sys
ns = [l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')][0]
def ask(name, tcp):
    # Three tries, like the C library's resolver (attempts:2 plus the first).
    for _ in range(3):
        got = ask_once(name, tcp)
        if got != 'error':
            return got
    return got
def ask_once(name, tcp):
    m = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0)
    m += b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    m += struct.pack('>HH', 1, 1)
    try:
        if tcp:
            s = socket.create_connection((ns, 53), timeout=3)
            s.sendall(struct.pack('>H', len(m)) + m)
            n = struct.unpack('>H', s.recv(2))[0]
            r = b''
            while len(r) < n:
                r += s.recv(n - len(r))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(m, (ns, 53))
            r = s.recv(4096)
    except Exception as e:
        return 'error'
    an = struct.unpack('>H', r[6:8])[0]
    return '%d:%s' % (r[3] & 15, socket.inet_ntoa(r[-4:]) if an else '-')
for name in sys.argv[1:]:
    print(name, ask(name, False), ask(name, True))
"#;

#[test]
fn each_tenant_resolves_only_what_it_may_reach() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    let (web, db, ingress) = (
        instance.address_of("web"),
        instance.address_of("db"),
        instance.address_of("ingress"),
    );
    let nx = "3:- 3:-".to_owned();
    let at = |a: &str| format!("0:{a} 0:{a}");
    // The examples: ingress -> web 8080, web -> db 5432, nothing else between tenants.
    let names = [
        "web",
        "app.web",
        "db",
        "postgres.db",
        "ingress",
        "proxy.ingress",
        "nobody.web",
        "nope",
        "example.com",
    ];
    let expected = [
        (
            "web",
            [
                &at(&web),
                &at(&web),
                &at(&db),
                &at(&db),
                &nx,
                &nx,
                &nx,
                &nx,
                &nx,
            ],
        ),
        (
            "db",
            [&nx, &nx, &at(&db), &at(&db), &nx, &nx, &nx, &nx, &nx],
        ),
        (
            "ingress",
            [
                &at(&web),
                &at(&web),
                &nx,
                &nx,
                &at(&ingress),
                &at(&ingress),
                &nx,
                &nx,
                &nx,
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for (from, answers) in expected {
        let got = instance.resolve(from, &names);
        for (name, want) in names.iter().zip(answers) {
            let seen = got
                .iter()
                .find(|(n, _)| n == name)
                .map_or("no answer", |(_, a)| a.as_str());
            if seen != want.as_str() {
                wrong.push(format!("{from} asks {name}: expected {want}, got {seen}"));
            }
        }
    }
    // The C library goes through resolv.conf too.
    let output = instance
        .cmd()
        .args([
            "run",
            "web",
            "--",
            "/usr/bin/python3",
            "-c",
            "import socket; print(socket.gethostbyname('postgres.db'))",
        ])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), db);
    // The parser facing tenants does not run as root.
    let pid = instance.resolver_pid().expect("a resolver record");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65534", "65534", "65534", "65534"]
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    instance.cmd().args(["gc", "--all"]).assert().success();
    assert!(
        instance.resolvers().is_empty(),
        "{:?}",
        instance.resolvers()
    );
    assert!(
        !instance
            .state_dir()
            .join("resolver/resolver.record")
            .exists()
    );
}

/// A fake upstream resolver in a namespace of its own, reached from the host through
/// a veth pair: answers every A question with 203.0.113.7 and logs each name it is
/// asked.
struct FakeUpstream {
    server: Child,
    log: PathBuf,
    address: String,
    _dir: tempfile::TempDir,
    /// Dropped after the server is killed: deletes the namespace, and so the pair.
    _netns: NetnsGuard,
    _slot: Slot,
}

/// Deletes a named network namespace on drop, also when a test fails half-way.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

const FAKE_UPSTREAM: &str = r#"
import socket, struct, sys, threading
log = open(sys.argv[1], 'a', buffering=1)
def answer(q):
    i = 12
    labels = []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += 1 + q[i]
    qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
    end = i + 5
    log.write('.'.join(labels) + '\n')
    an = b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04' + bytes([203, 0, 113, 7]) if qtype == 1 else b''
    return q[:2] + b'\x81\x80\x00\x01' + struct.pack('>H', 1 if an else 0) + b'\0\0\0\0' + q[12:end] + an
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', 53))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', 53))
t.listen(8)
def tcp():
    while True:
        c, _ = t.accept()
        try:
            n = struct.unpack('>H', c.recv(2))[0]
            q = b''
            while len(q) < n:
                q += c.recv(n - len(q))
            r = answer(q)
            c.sendall(struct.pack('>H', len(r)) + r)
        finally:
            c.close()
threading.Thread(target=tcp, daemon=True).start()
print('ready', flush=True)
while True:
    q, a = u.recvfrom(4096)
    u.sendto(answer(q), a)
"#;

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("ip");
    assert!(status.success(), "ip {args:?}");
}

impl FakeUpstream {
    /// On a transit /30 of its own (an outside slot: 198.51.100.0/24), in a namespace
    /// the test creates.
    fn start() -> FakeUpstream {
        let slot = Slot::outside();
        let tag = slot.prefix();
        let netns = format!("{tag}up");
        let (host_end, ns_end) = (format!("{tag}ua"), format!("{tag}ub"));
        let (host_addr, address) = (slot.transit_host(), slot.transit_far().to_string());
        ip(&["netns", "add", &netns]);
        let guard = NetnsGuard(netns.clone());
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", &netns,
        ]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{address}/30"),
            "dev",
            &ns_end,
        ]);
        ip(&["-n", &netns, "link", "set", &ns_end, "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("asked.log");
        let mut server = std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-c", FAKE_UPSTREAM])
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("fake upstream");
        let mut line = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(server.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        FakeUpstream {
            server,
            log,
            address,
            _dir: dir,
            _netns: guard,
            _slot: slot,
        }
    }

    fn asked(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn other_names_go_to_the_configured_upstream_only() {
    require_root!();
    let upstream = FakeUpstream::start();
    let address = upstream.address.clone();
    let instance = Instance::with_platform(|text| {
        text.replace(
            "    hostPorts: []",
            &format!("    upstreamDns: [{address}]\n    hostPorts: []"),
        )
    });
    instance.apply();
    let got = instance.resolve(
        "web",
        &["example.com", "db", "ingress", "proxy.ingress", "nope"],
    );
    let answer = |name: &str| {
        got.iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    assert_eq!(answer("example.com"), "0:203.0.113.7 0:203.0.113.7");
    assert_eq!(
        answer("db"),
        format!("0:{0} 0:{0}", instance.address_of("db"))
    );
    // Platform names the tenant may not see, and single labels, never leave the host.
    for hidden in ["ingress", "proxy.ingress", "nope"] {
        assert_eq!(answer(hidden), "3:- 3:-", "{hidden}");
    }
    let asked = upstream.asked();
    assert_eq!(
        asked,
        ["example.com", "example.com"],
        "what the upstream saw"
    );
}

#[test]
fn net_show_reports_what_the_kernel_holds() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    let output = instance
        .cmd()
        .args(["net", "show", "-o", "json"])
        .output()
        .expect("net show");
    assert!(output.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let tenants = shown["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 3);
    for t in tenants {
        let name = t["tenant"].as_str().expect("name");
        assert_eq!(t["address"], instance.address_of(name).as_str());
        let netns = format!("/run/netns/{}", t["netns"].as_str().expect("netns"));
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(&netns).expect("netns file").ino();
        assert_eq!(t["netnsInode"].as_u64(), Some(inode), "{name}");
        let link = format!(
            "/sys/class/net/{}/master",
            t["hostInterface"].as_str().expect("if")
        );
        let master = std::fs::read_link(&link).expect("enslaved");
        assert_eq!(
            master.file_name().and_then(|n| n.to_str()),
            t["bridge"].as_str()
        );
        assert_eq!(t["wired"], true);
    }
    let web = tenants.iter().find(|t| t["tenant"] == "web").expect("web");
    assert_eq!(web["caps"]["egress"], "100Mbit");
    assert_eq!(web["shaping"]["egress"]["rateBits"], 100_000_000);
    // A denied connection shows in the sender's drop counter.
    let before = web["drops"]["egress"]["packets"].as_u64().unwrap_or(0);
    assert!(!instance.connects("web", &instance.address_of("ingress"), 8443));
    let output = instance
        .cmd()
        .args(["net", "show", "web", "-o", "json"])
        .output()
        .expect("net show");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let after = shown["tenants"][0]["drops"]["egress"]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(after > before, "egress drops {before} -> {after}");
}

#[test]
fn a_flushed_firewall_is_planned_and_repaired() {
    require_root!();
    let mut instance = Instance::new();
    instance.apply();
    instance.serve("ingress", "proxy");
    instance.serve("web", "app");
    let (web, ingress) = (instance.address_of("web"), instance.address_of("ingress"));
    instance.wait_until_connects("ingress", &web, 8080);
    assert!(!instance.connects("web", &ingress, 8443), "denied");
    let table = format!("bulkhead_{}", instance.prefix);
    let status = std::process::Command::new("nft")
        .args(["flush", "table", "inet", &table])
        .status()
        .expect("nft");
    assert!(status.success());
    // With the table flushed nothing is denied (the drift is real); the proxy may
    // still be starting.
    instance.wait_until_connects("web", &ingress, 8443);
    let plan = instance.plan();
    assert!(
        plan.contains("load the default-deny firewall"),
        "plan shows apply-firewall:\n{plan}"
    );
    instance.apply();
    assert!(!instance.connects("web", &ingress, 8443), "denied again");
    assert!(instance.connects("ingress", &web, 8080), "still allowed");
    assert!(!instance.plan().contains("load the default-deny firewall"));
}

#[test]
fn a_deleted_host_veth_is_rewired() {
    require_root!();
    let mut instance = Instance::new();
    instance.apply();
    instance.serve("web", "app");
    let web = instance.address_of("web");
    instance.wait_until_connects("ingress", &web, 8080);
    let output = instance
        .cmd()
        .args(["net", "show", "web", "-o", "json"])
        .output()
        .expect("net show");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let host_if = shown["tenants"][0]["hostInterface"]
        .as_str()
        .expect("host interface")
        .to_owned();
    ip(&["link", "del", &host_if]);
    assert!(!instance.connects("ingress", &web, 8080), "cut");
    let plan = instance.plan();
    assert!(plan.contains("wire web"), "plan rewires:\n{plan}");
    instance.apply();
    instance.wait_until_connects("ingress", &web, 8080);
    assert_eq!(
        instance.resolve("ingress", &["web"])[0].1,
        format!("0:{web} 0:{web}")
    );
}

#[test]
fn suspend_cuts_the_network_and_resume_restores_it() {
    require_root!();
    let mut instance = Instance::new();
    instance.apply();
    instance.serve("db", "postgres");
    let db = instance.address_of("db");
    instance.wait_until_connects("web", &db, 5432);
    instance.cmd().args(["suspend", "db"]).assert().success();
    // A frozen listener would still complete the handshake in the kernel: only the
    // firewall can make this fail.
    assert!(!instance.connects("web", &db, 5432), "cut while suspended");
    assert_eq!(
        instance.resolve("web", &["db"])[0].1,
        "3:- 3:-",
        "and unnamed"
    );
    instance.cmd().args(["resume", "db"]).assert().success();
    instance.wait_until_connects("web", &db, 5432);
}

/// An echo server on `port` (TCP), for a tenant's sandbox.
const ECHO: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(64)
def serve(c):
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One TCP connection held open: each line on stdin is sent and its echo awaited
/// (5 s at most); prints `echo LINE` or `failed REASON`.
const HOLD: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print('connected', flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode())
        got = b''
        while not got.endswith(b'\n'):
            d = s.recv(4096)
            if not d:
                raise EOFError('closed')
            got += d
        print('echo ' + got.decode().strip(), flush=True)
    except Exception as e:
        print('failed ' + type(e).__name__, flush=True)
"#;

impl Instance {
    /// Starts `argv` in `tenant`'s sandbox in the background.
    fn serve_command(&mut self, tenant: &str, argv: &[&str]) {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("bulkhead"))
            .env("BULKHEAD_STATE_ROOT", self.state.path())
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .args(["run", tenant, "--"])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server");
        self.servers.push(child);
    }

    /// Waits (10 s at most) until `from` connects to `address:port`.
    fn wait_until_connects(&self, from: &str, address: &str, port: u16) {
        for _ in 0..20 {
            if self.connects(from, address, port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{from} never reached {address}:{port}");
    }

    /// `apply`, returning what it printed.
    fn apply_output(&self) -> String {
        let output = self
            .cmd()
            .arg("apply")
            .arg(self.specs.path())
            .output()
            .expect("apply");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "apply failed:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    fn table(&self) -> String {
        format!("bulkhead_{}", self.prefix)
    }

    /// The kernel's `egress_drops` counter element of `address` (packets), if any.
    fn egress_drops(&self, address: &str) -> Option<u64> {
        let output = std::process::Command::new("nft")
            .args(["-j", "list", "set", "inet", &self.table(), "egress_drops"])
            .output()
            .expect("nft");
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        value["nftables"]
            .as_array()?
            .iter()
            .filter_map(|item| item["set"]["elem"].as_array())
            .flatten()
            .find(|e| e["elem"]["val"] == address)
            .and_then(|e| e["elem"]["counter"]["packets"].as_u64())
    }

    /// Writes a small tenant with DNS only, as `tenants/<name>.yaml`.
    fn add_tenant(&self, name: &str) {
        let text = format!(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  owners: [{name}@example.com]\n  profile: restricted\n  quota: {{ memory: 256Mi, pids: 64, storage: 64Mi }}\n  network:\n    egress:\n      - to: [{{ dns: true }}]\n"
        );
        std::fs::write(self.specs.path().join(format!("tenants/{name}.yaml")), text)
            .expect("write tenant");
    }

    fn remove_tenant(&self, name: &str) {
        std::fs::remove_file(self.specs.path().join(format!("tenants/{name}.yaml")))
            .expect("remove tenant");
    }
}

/// A TCP connection held from inside a tenant's network namespace by a process
/// outside its cgroups (so that suspending the tenant does not freeze it).
struct Held {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Held {
    fn open(instance: &Instance, from: &str, address: &str, port: u16) -> Held {
        // nsenter joins the network namespace only: `ip netns exec` would copy the
        // host's mounts (tenant volumes included) into a mount namespace of its own
        // and keep their loop devices busy.
        let netns = format!("--net=/run/netns/{}-{from}", instance.prefix);
        let mut child = std::process::Command::new("nsenter")
            .args([&netns, "python3", "-c", HOLD, address])
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client");
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "connected");
        Held { child, lines }
    }

    /// Sends `word` and returns the client's verdict (`echo word` or `failed …`).
    fn exchange(&mut self, word: &str) -> String {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{word}").expect("write");
        stdin.flush().expect("flush");
        self.lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| "failed client exited".to_owned())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn onboarding_and_offboarding_edit_only_their_own_elements() {
    require_root!();
    let mut instance = Instance::new();
    instance.add_tenant("extra1");
    let first = instance.apply_output();
    assert!(
        first.contains("full atomic replacement (nothing loaded yet)"),
        "the first load is whole:\n{first}"
    );
    let (web, db, ingress) = (
        instance.address_of("web"),
        instance.address_of("db"),
        instance.address_of("ingress"),
    );
    instance.serve_command("db", &["/usr/bin/python3", "-c", ECHO, "5432"]);
    instance.wait_until_connects("web", &db, 5432);
    let mut held = Held::open(&instance, "web", &db, 5432);
    assert_eq!(held.exchange("one"), "echo one");
    // Denied attempts from web count in its egress_drops element.
    assert!(!instance.connects("web", &ingress, 8443));
    assert!(!instance.connects("web", &ingress, 8443));
    let drops = instance.egress_drops(&web).expect("web's counter");
    assert!(drops > 0, "web's denied attempts are counted");

    // Onboard one tenant and offboard another in one apply.
    instance.remove_tenant("extra1");
    instance.add_tenant("extra2");
    let plan = instance.plan();
    assert!(
        plan.contains("incremental, set elements only"),
        "plan says it will edit elements only:\n{plan}"
    );
    let second = instance.apply_output();
    assert!(
        second.contains("incremental, set elements only (+"),
        "apply says it edited elements only:\n{second}"
    );
    assert!(!second.contains("full atomic replacement"), "{second}");
    let after = instance.egress_drops(&web).expect("web's counter");
    assert!(
        after >= drops,
        "web's counter survived the edit ({drops} -> {after})"
    );
    assert_eq!(
        held.exchange("two"),
        "echo two",
        "the connection between untouched tenants carries data"
    );
    assert!(instance.connects("web", &db, 5432), "new connections too");
    let extra2 = instance.address_of("extra2");
    assert!(
        instance.egress_drops(&extra2).is_some(),
        "the new tenant has its elements"
    );

    // Drift: a flushed table gets the full repair, and a full load starts the
    // counters from zero (what the incremental path avoided).
    let status = std::process::Command::new("nft")
        .args(["flush", "table", "inet", &instance.table()])
        .status()
        .expect("nft");
    assert!(status.success());
    let repaired = instance.apply_output();
    assert!(
        repaired.contains("full atomic replacement (the loaded rules differ"),
        "drift is repaired whole:\n{repaired}"
    );
    assert_eq!(instance.egress_drops(&web), Some(0), "a full load resets");
    assert!(!instance.connects("web", &ingress, 8443), "denied again");
}

#[test]
fn suspend_cuts_established_connections_and_resume_lets_new_ones_through() {
    require_root!();
    let mut instance = Instance::new();
    instance.apply();
    let db = instance.address_of("db");
    instance.serve_command("db", &["/usr/bin/python3", "-c", ECHO, "5432"]);
    instance.wait_until_connects("web", &db, 5432);
    // Held from web's namespace by a process outside web's cgroups: suspending web
    // freezes its workloads, not this client, so only the network can stop it.
    let mut held = Held::open(&instance, "web", &db, 5432);
    assert_eq!(held.exchange("before"), "echo before");
    let output = instance
        .cmd()
        .args(["suspend", "web"])
        .output()
        .expect("suspend");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("cut web's"),
        "suspend cuts web's tracked connections:\n{text}"
    );
    let after = held.exchange("after");
    assert!(
        after.starts_with("failed"),
        "the established connection is cut (5 s at most), got {after:?}"
    );
    instance.cmd().args(["resume", "web"]).assert().success();
    let mut fresh = Held::open(&instance, "web", &db, 5432);
    assert_eq!(
        fresh.exchange("resumed"),
        "echo resumed",
        "new connections pass"
    );
}

/// Opens `count` TCP connections to `address:port` and holds them; prints how many
/// opened, were refused or failed otherwise; after a line on stdin closes them,
/// waits for conntrack to see them closed and prints whether one more opens.
const FLOOD: &str = r#"
import socket, sys, time
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, refused, other = [], 0, 0
for _ in range(count):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((address, port))
        held.append(s)
    except ConnectionRefusedError:
        refused += 1
    except Exception:
        other += 1
print(len(held), refused, other, flush=True)
sys.stdin.readline()
for s in held:
    s.close()
time.sleep(1)
s = socket.socket()
s.settimeout(3)
try:
    s.connect((address, port))
    print('open', flush=True)
except Exception as e:
    print('closed', type(e).__name__, flush=True)
"#;

#[test]
fn a_tenant_beyond_its_connection_share_is_refused_and_others_still_connect() {
    require_root!();
    const CAP: usize = 20;
    let mut instance = Instance::with_platform(|text| {
        text.replacen(
            "connectionsPerTenant: 16384",
            &format!("connectionsPerTenant: {CAP}"),
            1,
        )
    });
    instance.apply();
    let (web, db) = (instance.address_of("web"), instance.address_of("db"));
    instance.serve_command("db", &["/usr/bin/python3", "-c", ECHO, "5432"]);
    instance.serve("web", "app");
    instance.wait_until_connects("web", &db, 5432);
    instance.wait_until_connects("ingress", &web, 8080);

    // The rule is in the kernel, with the platform's number.
    let listed = std::process::Command::new("nft")
        .args(["list", "chain", "inet", &instance.table(), "from_tenant"])
        .output()
        .expect("nft");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("ct count over {CAP}")),
        "the cap is loaded:\n{listed}"
    );

    let mut flood = std::process::Command::new(assert_cmd::cargo::cargo_bin("bulkhead"))
        .env("BULKHEAD_STATE_ROOT", instance.state.path())
        .env("BULKHEAD_INSTANCE", &instance.prefix)
        .args([
            "run",
            "web",
            "--",
            "/usr/bin/python3",
            "-c",
            FLOOD,
            &db,
            "5432",
        ])
        .arg((CAP + 10).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flood");
    use std::io::{BufRead as _, Write as _};
    let mut lines = std::io::BufReader::new(flood.stdout.take().expect("stdout")).lines();
    let counts: Vec<usize> = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [opened, refused, other] = counts[..] else {
        panic!("unexpected flood output {counts:?}");
    };
    eprintln!("web with a share of {CAP}: {opened} opened, {refused} refused, {other} other");
    // The probes before may still hold an entry or two on their way to TIME_WAIT.
    assert!(
        opened <= CAP && opened + 2 >= CAP,
        "web opens at most its share: {opened} of {}",
        CAP + 10
    );
    assert!(
        refused >= 10 && other == 0,
        "the excess is refused: {refused} refused, {other} other failures"
    );
    // While web holds its share, another tenant still connects (to web, even).
    assert!(
        instance.connects("ingress", &web, 8080),
        "ingress still connects"
    );
    writeln!(flood.stdin.as_mut().expect("stdin")).expect("release");
    let again = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(again, "open", "closing frees the share");
    let _ = flood.wait();
}

/// Tracked connections from or to `address` in the host's conntrack table.
fn tracked(address: &str) -> usize {
    let address: std::net::Ipv4Addr = address.parse().expect("address");
    bulkhead_node::net::conntrack::count(&[address].into_iter().collect())
        .expect("conntrack")
        .get(&address)
        .copied()
        .unwrap_or(0)
}

#[test]
fn offboarding_deletes_the_tenants_tracked_connections() {
    require_root!();
    let mut instance = Instance::new();
    // A tenant that uses the shared `edge` service: nobody else names it, so it can go.
    std::fs::write(
        instance.specs.path().join("tenants/client.yaml"),
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: client\nspec:\n  owners: [client@example.com]\n  quota: { memory: 256Mi, pids: 64, storage: 64Mi }\n  network:\n    egress:\n      - to: [{ service: edge }]\n",
    )
    .expect("write tenant");
    instance.apply();
    let (client, ingress) = (
        instance.address_of("client"),
        instance.address_of("ingress"),
    );
    instance.serve_command("ingress", &["/usr/bin/python3", "-c", ECHO, "8443"]);
    instance.wait_until_connects("client", &ingress, 8443);
    let mut held = Held::open(&instance, "client", &ingress, 8443);
    assert_eq!(held.exchange("hello"), "echo hello");
    assert!(tracked(&client) >= 1, "the connection is tracked");
    instance.remove_tenant("client");
    let output = instance.apply_output();
    assert!(
        output.contains("cut client's"),
        "offboarding cuts the tracked connections:\n{output}"
    );
    assert_eq!(
        tracked(&client),
        0,
        "no entry of the released address is left for a later tenant to inherit"
    );
    drop(held);
}
