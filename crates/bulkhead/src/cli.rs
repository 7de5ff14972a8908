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
  6  the host lacks a feature the spec needs (see bulkhead doctor)";

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
