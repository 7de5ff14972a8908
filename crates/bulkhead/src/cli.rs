//! The command line: every verb, its flags and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, documented in `bulkhead --help` and README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  an operation failed (I/O, the kernel, the store)
  2  usage error (unknown flag, missing argument)
  3  invalid input: the spec files have errors (each printed as file:line:column: field: message)
  4  plan --detailed-exitcode: there are changes to apply
  5  audit verify: the audit log was tampered with
  6  the host lacks a feature the spec needs (see bulkhead doctor)
  7  verify (or apply --verify) found a leak or an outage";

/// bulkhead — many tenants on shared infrastructure, without a shared blast radius.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Declare tenants (quotas, network rules, security profile, lifecycle); bulkhead enforces them and proves the isolation holds",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Output format: human tables, or JSON/YAML for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Where instances keep their state (each in <state-root>/<instance>/).
    #[arg(
        long,
        global = true,
        env = "BULKHEAD_STATE_ROOT",
        default_value = "/var/lib/bulkhead"
    )]
    pub state_root: PathBuf,
    /// Instance prefix; defaults to the platform file's spec.instance, else "bh".
    #[arg(long, global = true, env = "BULKHEAD_INSTANCE")]
    pub instance: Option<String>,
    /// Who is acting, as recorded in the audit log.
    #[arg(long, global = true, env = "BULKHEAD_ACTOR")]
    pub actor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and plain text.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files: syntax, types, names, references, quotas, address space.
    #[command(after_help = "Examples:
  bulkhead validate examples/
  bulkhead validate tenants/web.yaml platform.yaml -o json
  cat tenant.yaml | bulkhead validate -")]
    Validate(SpecFiles),

    /// Show what an apply would change, compared with the last applied revision.
    #[command(after_help = "Examples:
  bulkhead plan examples/
  bulkhead plan examples/ -o json
  bulkhead plan examples/ --detailed-exitcode   # exit 4 when there are changes")]
    Plan {
        #[command(flatten)]
        files: SpecFiles,
        /// Exit with 4 when the plan has changes, 0 when it has none.
        #[arg(long)]
        detailed_exitcode: bool,
    },

    /// Record the spec as a new revision, audited before it is stored.
    #[command(after_help = "Examples:
  bulkhead apply examples/
  bulkhead apply examples/ -m \"raise web's memory for the launch\"")]
    Apply {
        #[command(flatten)]
        files: SpecFiles,
        /// Why: stored with the revision and in the audit log.
        #[arg(short, long, default_value = "")]
        message: String,
        /// Record the revision (audited) without touching the host.
        #[arg(long)]
        record_only: bool,
        /// Run `bulkhead verify` on the result (exit 7 on a leak or outage).
        #[arg(long, conflicts_with = "record_only")]
        verify: bool,
        /// Testing aid: exit after this many host actions, as a crash would.
        #[arg(long, hide = true)]
        fail_after: Option<usize>,
    },

    /// Run a command inside a tenant's sandbox, stdio attached; exits with its code.
    #[command(
        after_help = "Runs with the tenant's namespaces, cgroup, capabilities, seccomp filter
and Landlock ruleset, as an unprivileged user, in /data (the tenant's volume).
Exit code: the command's, or 125 when bulkhead itself fails.

Examples:
  bulkhead run web -- /bin/sh -c 'id; hostname; ls /proc'
  bulkhead run web --workload app            # the workload's own command and env
  bulkhead run db --workload postgres -- /bin/ps"
    )]
    Run {
        /// The tenant.
        tenant: String,
        /// Run in this workload's cgroup (and, with no command, its command and env).
        #[arg(short, long)]
        workload: Option<String>,
        /// The program and its arguments (after `--`).
        #[arg(last = true)]
        command: Vec<String>,
    },

    /// Run a command in a running workload's cgroup and its tenant's namespaces, like nsenter.
    #[command(after_help = "Examples:
  bulkhead exec web/app -- /bin/ps
  bulkhead exec db/postgres -- /bin/sh")]
    Exec {
        /// TENANT/WORKLOAD.
        target: String,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },

    /// Prove, by trying from inside each tenant, that tenants are isolated.
    #[command(
        after_help = "Runs a probe inside every tenant (with the tenant's own confinement and
cgroup) that tries to reach other tenants and the host: processes, filesystem,
IPC, privilege, network (also forged source addresses and forged ARP, which must
poison no neighbour table) and resources (a fork bomb, a memory hog, a disk fill,
a CPU hog, and using up ephemeral ports, inodes and conntrack entries while the
next tenant must stay unaffected; at most 8 new entries in the host's neighbour
table from one tenant). Canaries planted in each tenant must never be
read by another. A denied thing that works is a leak; an allowed thing that
fails is an outage; a flow the firewall narrows on purpose (see `apply`'s notes)
is reported as narrowed. Exit code 7 on any leak or outage. The last report is
kept and shown by `describe`. On a terminal, progress bars on stderr (none with
JSON output).

Examples:
  bulkhead verify
  bulkhead verify web db --only processes
  bulkhead verify --sample 3 --format junit > verify.xml"
    )]
    Verify {
        /// Tenants to verify (default: all).
        tenants: Vec<String>,
        /// Only one probe class: network, processes, filesystem, ipc, privilege, resources.
        #[arg(long)]
        only: Option<String>,
        /// Aim each tenant at only the next K tenants (rows grow with n·K, not n²).
        #[arg(long)]
        sample: Option<usize>,
        /// Report format (overrides -o): table, json or junit.
        #[arg(long)]
        format: Option<String>,
        /// Print every row, not only violations.
        #[arg(long)]
        all_rows: bool,
    },

    /// Freeze every process of a tenant and cut its network: the firewall drops its
    /// elements and its tracked connections are deleted (a new revision with state:
    /// suspended).
    #[command(after_help = "Examples:
  bulkhead suspend web
  bulkhead suspend web --evict-key   # also remove the volume key from the kernel")]
    Suspend {
        /// The tenant.
        tenant: String,
        /// Remove the tenant's volume key from the kernel while suspended.
        #[arg(long)]
        evict_key: bool,
    },

    /// Thaw a suspended tenant (a new revision with state: active).
    Resume {
        /// The tenant.
        tenant: String,
    },

    /// Offboard a tenant: stop it, destroy its volume and crypto-shred its key.
    #[command(
        after_help = "Kills the tenant's processes, unmounts and deletes its volume image,
removes its key from the kernel, destroys the wrapped key (crypto-shredding:
the image's contents are unrecoverable), removes its cgroups and namespaces
and releases its id range. The audit records stay.

Examples:
  bulkhead delete web --yes"
    )]
    Delete {
        /// The tenant.
        tenant: String,
        /// Confirm: deletion destroys the tenant's data.
        #[arg(long)]
        yes: bool,
    },

    /// Apply an earlier revision as a new one.
    #[command(after_help = "Examples:
  bulkhead history
  bulkhead rollback 3")]
    Rollback {
        /// The revision to return to.
        revision: i64,
    },

    /// Remove what this instance left on the host for tenants it no longer has.
    #[command(
        after_help = "With --all, removes every tenant of the instance (its revisions and
audit log stay): the clean-up after a demo or a crashed test instance.

Examples:
  bulkhead gc
  bulkhead --instance t1234 gc --all"
    )]
    Gc {
        /// Remove every tenant of the instance, desired or not.
        #[arg(long)]
        all: bool,
    },

    /// List objects, or print one, with every default filled in.
    #[command(after_help = "Examples:
  bulkhead get tenants                      # from the last applied revision
  bulkhead get tenant web -o yaml           # the canonical object, defaults visible
  bulkhead get workloads -f examples/       # from files, before applying")]
    Get {
        /// What to list: tenants, workloads, platform (or a singular: tenant NAME).
        kind: ObjectKind,
        /// One object's name (for workloads: TENANT/NAME).
        name: Option<String>,
        /// Read these files instead of the last applied revision.
        #[arg(short, long = "file")]
        files: Vec<PathBuf>,
    },

    /// Explain one tenant: limits, profile, workloads, who it reaches and who reaches it.
    #[command(after_help = "Examples:
  bulkhead describe tenant web
  bulkhead describe tenant web -f examples/")]
    Describe {
        /// Only tenants can be described for now.
        kind: ObjectKind,
        /// The tenant's name.
        name: String,
        /// Read these files instead of the last applied revision.
        #[arg(short, long = "file")]
        files: Vec<PathBuf>,
    },

    /// Applied revisions: list them, show one, diff two.
    #[command(after_help = "Examples:
  bulkhead history
  bulkhead history show 3 -o yaml
  bulkhead history diff 2 3")]
    History {
        #[command(subcommand)]
        action: Option<HistoryAction>,
    },

    /// The hash-chained audit log: read it, or verify nobody changed it.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },

    /// Print the JSON Schema of a kind, for editors and CI linters.
    #[command(after_help = "Examples:
  bulkhead schema tenant > schema/tenant.json
  # then, first line of a tenant file:
  # yaml-language-server: $schema=./schema/tenant.json")]
    Schema {
        /// tenant, workload or platform.
        kind: SchemaKind,
    },

    /// Tenant networks on this host: addresses, links, namespaces, counters.
    #[command(after_help = "Examples:
  bulkhead net show
  bulkhead net show web -o json")]
    Net {
        #[command(subcommand)]
        action: crate::commands::net::NetAction,
    },

    /// Which isolation features this host has, and how it is hardened.
    #[command(after_help = "Read-only; works without root where it can.

Examples:
  bulkhead doctor
  bulkhead doctor -o json | jq .hardening.exposure")]
    Doctor {
        /// Exit with 6 when a feature the restricted profile needs is missing.
        #[arg(long)]
        strict: bool,
    },

    /// Kubernetes: render and apply the tenant stack, run the Tenant controller, audit clusters.
    K8s {
        #[command(subcommand)]
        action: K8sAction,
    },

    /// Run the control plane: the HTTP API, workload supervision, the reconciler, metrics.
    #[command(
        after_help = "Listens on a unix socket (<state>/<instance>/api.sock, mode 0660) and, with
--tls-listen, on TCP with TLS. Every route but /health needs a bearer token
(`bulkhead token create`); Cedar policies decide what each role may do and
denials are audited. Runs each active tenant's workloads with their restart
policies (exponential backoff) and logs to <state>/<instance>/logs/. A
reconciler pass runs at start and every --reconcile-interval, repairing drift
(each repair audited) and expiring elevations (`bulkhead elevate`). A token
denied --denial-limit times within --denial-window gets 429 for
--denial-block. Every platform.spec.noisyNeighbours.sampleSeconds the tenants'
cgroups are sampled; sustained pressure is audited and counted in /metrics,
and with tighten: true the tenant's cpu weight is lowered for the cool-down.
Needs root. API: docs/openapi.json.

Examples:
  bulkhead serve
  bulkhead serve --tls-listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem
  curl --unix-socket /var/lib/bulkhead/bh/api.sock -H \"Authorization: Bearer $TOKEN\" http://bulkhead/tenants"
    )]
    Serve {
        /// The unix socket (default <state>/<instance>/api.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Also listen on this address with TLS.
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_listen: Option<std::net::SocketAddr>,
        /// PEM certificate chain for --tls-listen.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-listen.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Seconds between reconciler passes.
        #[arg(long, default_value_t = 30.0)]
        reconcile_interval: f64,
        /// First restart delay of a failing workload, seconds (doubles each restart).
        #[arg(long, default_value_t = 0.5)]
        backoff_base: f64,
        /// Longest restart delay, seconds.
        #[arg(long, default_value_t = 60.0)]
        backoff_max: f64,
        /// Bytes per workload log file before it rotates (3 rotated files are kept).
        #[arg(long, default_value_t = 4 << 20)]
        log_file_bytes: u64,
        /// Denials of one token within --denial-window that block it (429 for every
        /// request until --denial-block has passed; audited as two records).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        denial_limit: u32,
        /// The sliding window the denials are counted in, seconds.
        #[arg(long, default_value_t = 60.0)]
        denial_window: f64,
        /// How long a blocked token is refused, seconds.
        #[arg(long, default_value_t = 60.0)]
        denial_block: f64,
    },

    /// Bearer tokens for the control plane: create (shown once), list, revoke.
    #[command(
        after_help = "Tokens are stored hashed (SHA-256); creating and revoking are audited.

Examples:
  bulkhead token create --role platform-admin --ttl 12h --subject alice
  bulkhead token create --role tenant-admin --tenant web --ttl 7d --subject carol
  bulkhead token list
  bulkhead token revoke 1f2e3d4c5b6a7980"
    )]
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },

    /// Elevated access with a two-person rule: request, approve, deny, list, revoke.
    #[command(
        after_help = "Talks to the running daemon with your own token (--token or BULKHEAD_TOKEN),
because the two-person rule needs to know who asks and who approves: the
requester can never approve or deny their own request. An approved elevation
is in force at once (the host converges to it) until its TTL runs out; then the
reconciler marks it expired and converges back. Every step is audited.

Kinds and parameters (JSON):
  quota-raise       {\"memory\": \"2Gi\", \"pids\": 1024, \"cpuWeight\": 400, \"cpu\": \"2\"}
  egress-exception  {\"cidr\": \"203.0.113.0/24\", \"ports\": [\"443/tcp\"]}
  operator-exec     {} (lets the requester exec into the tenant's workloads)

Examples:
  bulkhead elevate request --kind quota-raise --tenant web --parameters '{\"memory\": \"4Gi\"}' --reason 'INC-42 import' --ttl 2h
  bulkhead elevate list
  BULKHEAD_TOKEN=$BOB bulkhead elevate approve 1f2e3d4c5b6a7980 --note 'ok for the import'
  bulkhead elevate revoke 1f2e3d4c5b6a7980

Exit codes: 0 done, 3 refused by the daemon (401/403/404/409/422), 1 other errors."
    )]
    Elevate {
        /// Your bearer token (default: $BULKHEAD_TOKEN).
        #[arg(long, global = true)]
        token: Option<String>,
        #[command(subcommand)]
        action: ElevateAction,
    },

    /// A supervised workload's output (stdout and stderr), from the daemon's log files.
    #[command(after_help = "Examples:
  bulkhead logs web/app
  bulkhead logs web/app -f --tail 20")]
    Logs {
        /// TENANT/WORKLOAD.
        target: String,
        /// Lines to print first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
    },

    /// Print shell completions.
    #[command(after_help = "Examples:
  bulkhead completions bash > /etc/bash_completion.d/bulkhead
  bulkhead completions zsh > \"${fpath[1]}/_bulkhead\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Spec files and directories.
#[derive(Debug, Args)]
pub struct SpecFiles {
    /// YAML files or directories (read recursively); `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectKind {
    #[value(alias = "tenant")]
    Tenants,
    #[value(alias = "workload")]
    Workloads,
    Platform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Tenant,
    Workload,
    Platform,
}

impl SchemaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Tenant => "tenant",
            SchemaKind::Workload => "workload",
            SchemaKind::Platform => "platform",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// List applied revisions (the default).
    List,
    /// Print one revision's objects.
    Show {
        /// Revision number.
        revision: i64,
    },
    /// What changed between two revisions.
    Diff {
        /// The older revision.
        from: i64,
        /// The newer revision.
        to: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Print audit records, oldest first.
    #[command(after_help = "Examples:
  bulkhead audit log
  bulkhead audit log --after 100 --limit 20 -o json")]
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many records.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// Recompute the hash chain; name the first edited, deleted, reordered or inserted record.
    #[command(after_help = "Exit code 5 when the log was tampered with.")]
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum K8sAction {
    /// Render the layered namespace stack of every tenant as Kubernetes YAML.
    #[command(
        after_help = "One file per tenant (Namespace with Pod Security labels, ResourceQuota,
LimitRange, default-deny NetworkPolicies and the exceptions the policy engine
compiles, the reconciler ServiceAccount and its RoleBinding, Flux objects,
Deployments), plus platform.yaml (the ClusterRole bulkhead-tenant-reconciler that
every tenant's RoleBinding names, admission policies) and flux-lockdown.yaml.

Objects target Kubernetes 1.34 (their built-in kinds are tested against its OpenAPI
schema, strictly); Flux and Istio objects need those projects' CRDs installed.

Examples:
  bulkhead k8s render -f examples/                 # to standard output
  bulkhead k8s render -f examples/ --out rendered/ # one file per tenant"
    )]
    Render {
        /// Spec files or directories.
        #[arg(short, long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Write one file per tenant into this directory instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Audit a directory of Kubernetes manifests for tenant-isolation holes.
    #[command(
        after_help = "Findings have stable IDs (BH-K8S-NNN), a severity, the object and a
remediation. Exit code 1 when a finding is at or above --fail-on.

With --live the objects come from the cluster (every namespace): Namespaces, Pods
and workloads, Services, ServiceAccounts, Roles, ClusterRoles and their bindings,
NetworkPolicies, ResourceQuotas, LimitRanges, ValidatingAdmissionPolicies and
bindings, and Flux objects if the Flux CRDs are installed. Objects a listed
controller owns (a Deployment's ReplicaSets and Pods) are audited through their owner.
A kind the account may not list is an error, never a silent skip.

Examples:
  bulkhead k8s audit -f cluster-dump/
  bulkhead k8s audit --live --context staging
  bulkhead k8s audit -f cluster-dump/ --format sarif > audit.sarif
  bulkhead k8s audit -f cluster-dump/ --fail-on critical"
    )]
    Audit {
        /// A directory (or file) of manifests.
        #[arg(
            short,
            long = "file",
            required_unless_present = "live",
            conflicts_with = "live"
        )]
        file: Option<PathBuf>,
        /// Read the cluster instead (KUBECONFIG, ~/.kube/config or in-cluster).
        #[arg(long)]
        live: bool,
        /// The kubeconfig context to read with --live (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Exit 1 when a finding is at or above this severity.
        #[arg(long, value_enum, default_value_t = FailOn::High)]
        fail_on: FailOn,
        /// Report format (overrides -o): table, json, yaml, sarif or junit.
        #[arg(long, value_enum)]
        format: Option<AuditFormat>,
    },
    /// Server-side apply the rendered stack to a cluster, then prune what was removed.
    #[command(
        after_help = "Renders the spec like `bulkhead k8s render`, applies every object with
server-side apply (field manager `bulkhead`; a field another manager owns is a
conflict unless --force-conflicts), waits for each Namespace to be Active, then
deletes objects labelled app.kubernetes.io/managed-by=bulkhead that the spec no
longer renders (a removed tenant's Namespace takes its contents with it). The
platform ClusterRole bulkhead-tenant-reconciler is always rendered, so it stays;
the per-tenant Roles of earlier versions are pruned. Applying that ClusterRole
needs every right it grants (or escalate): run this as a cluster administrator.
The cluster comes from KUBECONFIG (or ~/.kube/config), else the in-cluster account.

Examples:
  bulkhead k8s apply -f examples/ --dry-run   # server-side dry run, prunes listed only
  bulkhead k8s apply -f examples/
  bulkhead k8s apply -f examples/ --no-prune --force-conflicts"
    )]
    Apply {
        /// Spec files or directories.
        #[arg(short, long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Take over fields another field manager owns.
        #[arg(long)]
        force_conflicts: bool,
        /// Do not delete objects the spec no longer renders.
        #[arg(long)]
        no_prune: bool,
        /// Server-side dry run: the API server validates and admits, stores nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for a Namespace to become Active.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Reconcile Tenant custom resources into the rendered stack (runs until stopped).
    #[command(
        after_help = "Watches Tenants (tenants.bulkhead.dev, the CRD of `bulkhead k8s crd`). For each
change: validates the Tenant like a spec file (an invalid one gets Degraded=True with
the field and what was expected, and nothing else changes), adds the finalizer
bulkhead.dev/cleanup, renders the tenant's stack plus the platform's admission
policies, server-side applies them (field manager `bulkhead`), prunes the tenant's
objects the render no longer has (the tenant's reconciler RoleBinding names the
ClusterRole bulkhead-tenant-reconciler, which the controller neither writes nor
deletes: install it with --manifests; missing or not exactly as rendered, the Tenant
is Degraded with reason ReconcilerRoleInvalid and nothing is applied), and writes status conditions Ready and Degraded
(observedGeneration) and an event. Deleting a Tenant deletes its objects, then
releases the finalizer. Errors are retried with backoff (5 s doubling to 5 min);
every Tenant is re-applied every 10 min to correct drift.

The Platform comes from --platform (a file holding exactly one Platform document),
else the default platform. The cluster comes from KUBECONFIG (or ~/.kube/config),
else the in-cluster account. Stops on SIGINT or SIGTERM.

With --manifests it prints, instead of running, what runs it on a cluster: the
Namespace (Pod Security restricted), ServiceAccount, the ClusterRole
bulkhead-tenant-reconciler (the rights of every tenant's reconciler, bound per tenant
namespace by a RoleBinding), the controller's ClusterRole (exactly the requests it
makes, plus get and bind on bulkhead-tenant-reconciler by name: no tenant rights of
its own, no Secrets), ClusterRoleBinding and a one-replica Deployment with a restricted
security context running `bulkhead k8s controller`.

Examples:
  bulkhead k8s crd | kubectl apply --server-side -f -
  bulkhead k8s controller --platform examples/platform.yaml
  bulkhead k8s controller --manifests --image registry.example/bulkhead:0.1 | kubectl apply --server-side -f -"
    )]
    Controller {
        /// The Platform file (one Platform document); the default platform without it.
        #[arg(long, conflicts_with = "manifests")]
        platform: Option<PathBuf>,
        /// Print the manifests that deploy the controller instead of running it.
        #[arg(long)]
        manifests: bool,
        /// With --manifests: the namespace the controller runs in.
        #[arg(long, default_value = "bulkhead-system", requires = "manifests")]
        namespace: String,
        /// With --manifests: the image holding the bulkhead binary.
        #[arg(long, requires = "manifests")]
        image: Option<String>,
        /// With --manifests: a ConfigMap in that namespace whose key platform.yaml is the
        /// Platform (mounted and passed as --platform); without it, the default platform.
        #[arg(long, requires = "manifests")]
        platform_configmap: Option<String>,
        /// Take over fields another field manager owns.
        #[arg(long)]
        force_conflicts: bool,
        /// Seconds to wait for a Namespace to become Active.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Print the Tenant CustomResourceDefinition (tenants.bulkhead.dev, v1alpha1).
    #[command(
        after_help = "Generated from the same Rust types as `bulkhead schema tenant`, made
structural for the API server.

Examples:
  bulkhead k8s crd | kubectl apply --server-side -f -"
    )]
    Crd,
    /// Evaluate the NetworkPolicies of a manifest directory: who reaches whom.
    #[command(
        after_help = "Reads Namespaces, workloads (Pods, Deployments, StatefulSets, DaemonSets,
ReplicaSets, Jobs, CronJobs; a workload with replicas is one endpoint, labelled as its
pod template) and NetworkPolicies, and prints every allowed connection as
`ns/workload[Kind] => ns/workload[Kind] : TCP 80,443`, then the namespace matrix.

A cross-tenant path is a finding (BH-K8S-019) unless the spec given with --spec
allows it on those ports. Tenant namespaces are all but default, kube-* and the
platform's own (flux-system, istio-system, cert-manager, bulkhead-system).

ipBlocks do not match pod addresses by default (selectors decide pod-to-pod traffic);
--ip-block-matches-pods makes a Pod's status.podIPs match them, as some network
plugins do. Exit code 1 when a finding is at or above --fail-on.

--live reads the cluster as `bulkhead k8s audit --live` does.

Examples:
  bulkhead k8s reach -f rendered/
  bulkhead k8s reach --live --spec examples/
  bulkhead k8s reach -f cluster-dump/ --spec examples/ --format sarif > reach.sarif
  bulkhead k8s reach -f cluster-dump/ -o json | jq '.connections | length'"
    )]
    Reach {
        /// A directory of manifests.
        #[arg(
            short,
            long = "file",
            required_unless_present = "live",
            conflicts_with = "live"
        )]
        file: Option<PathBuf>,
        /// Read the cluster instead (KUBECONFIG, ~/.kube/config or in-cluster).
        #[arg(long)]
        live: bool,
        /// The kubeconfig context to read with --live (default: the current one).
        #[arg(long)]
        context: Option<String>,
        /// Our spec (files or directories): the cross-tenant paths its tenants allow.
        #[arg(long)]
        spec: Vec<PathBuf>,
        /// ipBlocks match pod addresses (default: only addresses outside the cluster).
        #[arg(long)]
        ip_block_matches_pods: bool,
        /// Exit 1 when a finding is at or above this severity.
        #[arg(long, value_enum, default_value_t = FailOn::High)]
        fail_on: FailOn,
        /// Report format (overrides -o): table, json, yaml, sarif or junit (the last two:
        /// findings only).
        #[arg(long, value_enum)]
        format: Option<AuditFormat>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Low,
    Medium,
    High,
    Critical,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
    Yaml,
    Sarif,
    Junit,
}

#[derive(Debug, Subcommand)]
pub enum ElevateAction {
    /// Ask for an elevation; another platform admin must approve it.
    Request {
        /// quota-raise, operator-exec or egress-exception.
        #[arg(long)]
        kind: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Kind-specific parameters, JSON.
        #[arg(long)]
        parameters: Option<String>,
        /// Why (recorded and audited).
        #[arg(long)]
        reason: String,
        /// Lifetime once approved: 90s, 30m, 12h, 7d (at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Approve someone else's pending elevation; it is in force at once.
    Approve {
        /// The elevation's id.
        id: String,
        /// A note for the audit log.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny someone else's pending elevation.
    Deny {
        /// The elevation's id.
        id: String,
        /// A note for the audit log.
        #[arg(long)]
        note: Option<String>,
    },
    /// Every elevation and its state.
    List,
    /// End an active elevation now; the host converges back.
    Revoke {
        /// The elevation's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token; prints it once.
    Create {
        /// platform-admin, tenant-admin or tenant-viewer.
        #[arg(long)]
        role: String,
        /// The tenant of a tenant role.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: 90s, 30m, 12h, 7d (at most 366d).
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// Who will hold it (default: the actor).
        #[arg(long)]
        subject: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        id: String,
    },
}
