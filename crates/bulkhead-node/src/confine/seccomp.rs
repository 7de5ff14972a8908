//! Seccomp filters per security profile, kept as data.
//!
//! Each profile's denylist is a checked-in file, `profiles/seccomp/<profile>.json`,
//! built into the binary. [`SeccompProfile::builtin`] parses and validates it;
//! [`SeccompProfile::compile`] turns it into a [`SeccompProgram`] for one
//! [`Arch`] with `seccompiler` (pure Rust BPF, names resolved from its syscall
//! tables). [`SeccompProgram::apply`] loads it and allocates nothing, so it can
//! run between `fork` and `execve`.
//!
//! Every program, whatever the profile:
//! - starts with the **x32 rule** on x86_64: a syscall number with bit 30 set
//!   (`nr >= 0x40000000`, the x32 ABI) fails with `EPERM`. x32 calls report the
//!   x86_64 audit architecture, so without this rule `0x40000000 | nr` would
//!   reach the kernel under a number the denylist never names. seccompiler does
//!   not know about x32; the rule is our own five BPF instructions in front.
//! - kills the process on a foreign architecture (seccompiler's own check):
//!   32-bit `int 0x80` calls use other numbers, so a filter written for x86_64
//!   numbers cannot judge them. Killing is right here: nothing legitimate in a
//!   tenant sandbox speaks i386 by accident, and an error code would invite
//!   retries against an unfiltered table.
//! - returns `EPERM` for every denied call (so a probe can tell "denied as
//!   designed" from a crash), except where a file says otherwise: `clone3`
//!   gets `ENOSYS`, which makes the C library fall back to `clone`, whose flags
//!   the filter can read.
//!
//! One BPF program is loaded per distinct errno (seccompiler gives every rule
//! of a filter the same action); the kernel runs them all and distinct
//! syscalls never meet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use bulkhead_spec::Profile;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch, sock_filter};
use serde::Deserialize;

const RESTRICTED_JSON: &str = include_str!("../../profiles/seccomp/restricted.json");
const BASELINE_JSON: &str = include_str!("../../profiles/seccomp/baseline.json");
const PRIVILEGED_JSON: &str = include_str!("../../profiles/seccomp/privileged.json");

/// First syscall number of the x32 ABI (`__X32_SYSCALL_BIT`).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

// Classic BPF opcodes (`<linux/bpf_common.h>`) used by the x32 rule.
/// `BPF_LD | BPF_W | BPF_ABS` (the first two are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
/// Offsets into `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
/// `SECCOMP_RET_ERRNO`.
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// A CPU architecture a filter can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// x86_64 (with the x32 rule).
    X86_64,
    /// 64-bit Arm.
    Aarch64,
}

impl Arch {
    /// Every architecture a profile compiles for.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this binary runs on, if filters exist for it.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The name as written in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a denied syscall returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum DenyErrno {
    /// "Operation not permitted": denied as designed.
    #[serde(rename = "EPERM")]
    Eperm,
    /// "Function not implemented": for calls the C library retries another way.
    #[serde(rename = "ENOSYS")]
    Enosys,
}

impl DenyErrno {
    /// The errno value.
    pub fn errno(self) -> i32 {
        match self {
            DenyErrno::Eperm => libc::EPERM,
            DenyErrno::Enosys => libc::ENOSYS,
        }
    }

    /// The errno's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyErrno::Eperm => "EPERM",
            DenyErrno::Enosys => "ENOSYS",
        }
    }
}

/// A condition on one syscall argument; the call is denied only when it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgCondition {
    /// Denied when the argument has any of these bits set.
    AnyBit {
        /// Argument index, 0 to 5.
        arg: u8,
        /// Named flags with their values.
        flags: Vec<(String, u64)>,
    },
    /// Denied unless the argument equals one of these values.
    NoneOf {
        /// Argument index, 0 to 5.
        arg: u8,
        /// Named values.
        values: Vec<(String, u64)>,
    },
}

impl fmt::Display for ArgCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |list: &[(String, u64)]| {
            list.iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join("|")
        };
        match self {
            ArgCondition::AnyBit { arg, flags } => {
                write!(f, "when arg{arg} has any of {}", names(flags))
            }
            ArgCondition::NoneOf { arg, values } => {
                write!(f, "unless arg{arg} is {}", names(values))
            }
        }
    }
}

/// One group of denied syscalls with the reason they are denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRule {
    /// Why these calls are denied (shown in docs and summaries).
    pub why: String,
    /// Syscall names, as the kernel's syscall tables spell them.
    pub syscalls: Vec<String>,
    /// What the denied calls return.
    pub errno: DenyErrno,
    /// Deny only when this holds; always when `None`.
    pub when: Option<ArgCondition>,
    /// Only on these architectures; on all when empty.
    pub arches: Vec<Arch>,
}

impl DenyRule {
    /// Whether the rule applies on `arch`.
    pub fn applies_to(&self, arch: Arch) -> bool {
        self.arches.is_empty() || self.arches.contains(&arch)
    }
}

/// A validated seccomp profile: a denylist over a default of allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompProfile {
    /// Which security profile this is.
    pub profile: Profile,
    /// One line on what the profile is for.
    pub description: String,
    /// Denied syscalls in file order.
    pub deny: Vec<DenyRule>,
}

/// Why a seccomp profile could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The file is not valid JSON of the expected shape.
    #[error("seccomp profile {file}: {source}")]
    Parse {
        /// The file (or name) that was parsed.
        file: String,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The file names another profile than the one asked for.
    #[error("seccomp profile {file}: declares profile {found:?}, expected {expected:?}")]
    WrongProfile {
        /// The file.
        file: String,
        /// The profile asked for.
        expected: String,
        /// The profile the file declares.
        found: String,
    },
    /// A flag or value name the compiler does not know.
    #[error(
        "seccomp profile {file}: unknown constant {name:?} in the condition on {syscalls} (expected one of {known})"
    )]
    UnknownConstant {
        /// The file.
        file: String,
        /// The unknown name.
        name: String,
        /// The rule's syscalls.
        syscalls: String,
        /// The names that are known.
        known: String,
    },
    /// A syscall appears in more than one rule, so one rule would silently
    /// override the other.
    #[error("seccomp profile {file}: syscall {syscall} is named by more than one rule on {arch}")]
    Duplicate {
        /// The file.
        file: String,
        /// The syscall.
        syscall: String,
        /// The architecture on which both rules apply.
        arch: Arch,
    },
    /// A rule is malformed (no syscalls, no condition values, bad argument index).
    #[error("seccomp profile {file}: rule for {syscalls}: {problem}")]
    BadRule {
        /// The file.
        file: String,
        /// The rule's syscalls.
        syscalls: String,
        /// What is wrong.
        problem: String,
    },
    /// seccompiler rejected the filter (unknown syscall name for the
    /// architecture, too many instructions, …).
    #[error("seccomp profile {profile} for {arch}: {source}")]
    Compile {
        /// The profile.
        profile: &'static str,
        /// The architecture.
        arch: Arch,
        /// seccompiler's error.
        #[source]
        source: seccompiler::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    profile: String,
    description: String,
    deny: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    why: String,
    syscalls: Vec<String>,
    #[serde(default = "default_errno")]
    errno: DenyErrno,
    #[serde(default)]
    when: Option<RawCondition>,
    #[serde(default)]
    arches: Vec<Arch>,
}

fn default_errno() -> DenyErrno {
    DenyErrno::Eperm
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    arg: u8,
    op: RawOp,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOp {
    AnyBit,
    NoneOf,
}

/// Named constants a condition may use. Values from `libc`, which has them per
/// architecture; these are the same on every architecture we compile for.
fn constant(name: &str) -> Option<u64> {
    let value: i64 = match name {
        "CLONE_NEWNS" => libc::CLONE_NEWNS.into(),
        "CLONE_NEWCGROUP" => libc::CLONE_NEWCGROUP.into(),
        "CLONE_NEWUTS" => libc::CLONE_NEWUTS.into(),
        "CLONE_NEWIPC" => libc::CLONE_NEWIPC.into(),
        "CLONE_NEWUSER" => libc::CLONE_NEWUSER.into(),
        "CLONE_NEWPID" => libc::CLONE_NEWPID.into(),
        "CLONE_NEWNET" => libc::CLONE_NEWNET.into(),
        "PTRACE_TRACEME" => i64::from(libc::PTRACE_TRACEME),
        _ => return None,
    };
    u64::try_from(value).ok()
}

const KNOWN_CONSTANTS: &str = "CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, PTRACE_TRACEME";

impl SeccompProfile {
    /// The checked-in profile for `profile`.
    pub fn builtin(profile: Profile) -> Result<Self, SeccompError> {
        let (file, json) = match profile {
            Profile::Restricted => ("profiles/seccomp/restricted.json", RESTRICTED_JSON),
            Profile::Baseline => ("profiles/seccomp/baseline.json", BASELINE_JSON),
            Profile::Privileged => ("profiles/seccomp/privileged.json", PRIVILEGED_JSON),
        };
        Self::parse(file, json, profile)
    }

    /// Parses and validates a profile file; `file` names it in errors.
    pub fn parse(file: &str, json: &str, expected: Profile) -> Result<Self, SeccompError> {
        let raw: RawProfile = serde_json::from_str(json).map_err(|source| SeccompError::Parse {
            file: file.to_owned(),
            source,
        })?;
        if raw.profile != expected.as_str() {
            return Err(SeccompError::WrongProfile {
                file: file.to_owned(),
                expected: expected.as_str().to_owned(),
                found: raw.profile,
            });
        }
        let mut deny = Vec::with_capacity(raw.deny.len());
        for rule in raw.deny {
            let syscalls = rule.syscalls.join(", ");
            let bad = |problem: &str| SeccompError::BadRule {
                file: file.to_owned(),
                syscalls: syscalls.clone(),
                problem: problem.to_owned(),
            };
            if rule.syscalls.is_empty() {
                return Err(bad("no syscalls listed"));
            }
            let when = match rule.when {
                None => None,
                Some(condition) => {
                    if condition.arg > 5 {
                        return Err(bad("argument index must be 0 to 5"));
                    }
                    if condition.values.is_empty() {
                        return Err(bad("condition lists no values"));
                    }
                    let mut named = Vec::with_capacity(condition.values.len());
                    for name in condition.values {
                        let Some(value) = constant(&name) else {
                            return Err(SeccompError::UnknownConstant {
                                file: file.to_owned(),
                                name,
                                syscalls,
                                known: KNOWN_CONSTANTS.to_owned(),
                            });
                        };
                        named.push((name, value));
                    }
                    Some(match condition.op {
                        RawOp::AnyBit => {
                            if named.iter().any(|(_, value)| *value == 0) {
                                return Err(bad("any_bit needs non-zero flags"));
                            }
                            ArgCondition::AnyBit {
                                arg: condition.arg,
                                flags: named,
                            }
                        }
                        RawOp::NoneOf => ArgCondition::NoneOf {
                            arg: condition.arg,
                            values: named,
                        },
                    })
                }
            };
            deny.push(DenyRule {
                why: rule.why,
                syscalls: rule.syscalls,
                errno: rule.errno,
                when,
                arches: rule.arches,
            });
        }
        let parsed = SeccompProfile {
            profile: expected,
            description: raw.description,
            deny,
        };
        for arch in Arch::ALL {
            let mut seen = BTreeSet::new();
            for (name, _) in parsed.denied(arch) {
                if !seen.insert(name) {
                    return Err(SeccompError::Duplicate {
                        file: file.to_owned(),
                        syscall: name.to_owned(),
                        arch,
                    });
                }
            }
        }
        Ok(parsed)
    }

    /// Every syscall denied on `arch`, with its rule, in file order.
    pub fn denied(&self, arch: Arch) -> impl Iterator<Item = (&str, &DenyRule)> {
        self.deny
            .iter()
            .filter(move |rule| rule.applies_to(arch))
            .flat_map(|rule| rule.syscalls.iter().map(move |name| (name.as_str(), rule)))
    }

    /// Compiles the profile for `arch`: the x32 rule (x86_64), then one BPF
    /// program per errno.
    pub fn compile(&self, arch: Arch) -> Result<SeccompProgram, SeccompError> {
        let compile_error = |source| SeccompError::Compile {
            profile: self.profile.as_str(),
            arch,
            source,
        };
        let mut by_errno: BTreeMap<DenyErrno, Vec<serde_json::Value>> = BTreeMap::new();
        for (name, rule) in self.denied(arch) {
            let entries = by_errno.entry(rule.errno).or_default();
            entries.extend(json_rules(name, rule.when.as_ref()));
        }
        let mut filters = Vec::with_capacity(by_errno.len().max(1));
        for (errno, rules) in by_errno {
            // seccompiler's JSON front end is the only public way to its
            // syscall tables, so the denylist goes through it.
            let key = errno.as_str();
            let document = serde_json::json!({
                key: {
                    "default_action": "allow",
                    "filter_action": { "errno": errno.errno() },
                    "filter": rules,
                }
            });
            let text = document.to_string();
            let mut compiled = seccompiler::compile_from_json(text.as_bytes(), arch.target())
                .map_err(compile_error)?;
            let program = compiled.remove(key).ok_or_else(|| {
                compile_error(seccompiler::Error::Backend(
                    seccompiler::BackendError::EmptyRule,
                ))
            })?;
            filters.push(program);
        }
        if filters.is_empty() {
            // No denylist: the architecture check and allow, so the x32 rule
            // has a program to sit in front of.
            let allow_all = SeccompFilter::new(
                BTreeMap::new(),
                SeccompAction::Allow,
                SeccompAction::Errno(DenyErrno::Eperm.errno().unsigned_abs()),
                arch.target(),
            )
            .map_err(|error| compile_error(seccompiler::Error::Backend(error)))?;
            filters.push(
                BpfProgram::try_from(allow_all)
                    .map_err(|error| compile_error(seccompiler::Error::Backend(error)))?,
            );
        }
        if arch == Arch::X86_64 {
            let mut first = x32_rule();
            first.append(&mut filters[0]);
            filters[0] = first;
        }
        Ok(SeccompProgram { arch, filters })
    }

    /// A readable listing of what the compiled profile denies on `arch`; the
    /// golden tests pin it.
    pub fn summary(&self, arch: Arch) -> Result<String, SeccompError> {
        let program = self.compile(arch)?;
        let mut out = String::new();
        let _ = writeln!(out, "profile: {} ({arch})", self.profile.as_str());
        let sizes: Vec<String> = program
            .filters
            .iter()
            .map(|f| f.len().to_string())
            .collect();
        let _ = writeln!(
            out,
            "programs: {} ({} BPF instructions)",
            program.filters.len(),
            sizes.join(" + ")
        );
        if arch == Arch::X86_64 {
            let _ = writeln!(out, "x32 (nr >= {X32_SYSCALL_BIT:#x}): EPERM");
        }
        let _ = writeln!(out, "other architectures: kill process");
        let mut lines: BTreeMap<DenyErrno, Vec<String>> = BTreeMap::new();
        for (name, rule) in self.denied(arch) {
            let line = match &rule.when {
                Some(condition) => format!("{name} {condition}"),
                None => name.to_owned(),
            };
            lines.entry(rule.errno).or_default().push(line);
        }
        if lines.is_empty() {
            let _ = writeln!(out, "denied: none");
        }
        for (errno, mut names) in lines {
            names.sort();
            let _ = writeln!(out, "denied with {} ({}):", errno.as_str(), names.len());
            for name in names {
                let _ = writeln!(out, "  {name}");
            }
        }
        Ok(out)
    }
}

/// The seccompiler JSON rules for one denied syscall.
fn json_rules(name: &str, when: Option<&ArgCondition>) -> Vec<serde_json::Value> {
    match when {
        None => vec![serde_json::json!({ "syscall": name })],
        // One rule per flag: rules are alternatives, so any flag matches.
        Some(ArgCondition::AnyBit { arg, flags }) => flags
            .iter()
            .map(|(_, flag)| {
                serde_json::json!({
                    "syscall": name,
                    "args": [{ "index": arg, "type": "qword", "op": { "masked_eq": flag }, "val": flag }],
                })
            })
            .collect(),
        // One rule whose conditions must all hold: the value is none of these.
        Some(ArgCondition::NoneOf { arg, values }) => {
            let conditions: Vec<_> = values
                .iter()
                .map(|(_, value)| {
                    serde_json::json!({ "index": arg, "type": "qword", "op": "ne", "val": value })
                })
                .collect();
            vec![serde_json::json!({ "syscall": name, "args": conditions })]
        }
    }
}

fn statement(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The x32 rule: on x86_64, any syscall number with the x32 bit fails with
/// EPERM; other architectures fall through to seccompiler's check, which
/// kills them.
fn x32_rule() -> BpfProgram {
    vec![
        statement(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        // Not x86_64: skip the next three instructions.
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 0, 3),
        statement(BPF_LD_W_ABS, SECCOMP_DATA_NR),
        // Below the x32 range: skip the return.
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        statement(
            BPF_RET_K,
            SECCOMP_RET_ERRNO | DenyErrno::Eperm.errno().unsigned_abs(),
        ),
    ]
}

/// A compiled profile: BPF programs in load order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompProgram {
    arch: Arch,
    filters: Vec<BpfProgram>,
}

impl SeccompProgram {
    /// The architecture it was compiled for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// How many BPF programs [`apply`](Self::apply) loads.
    pub fn program_count(&self) -> usize {
        self.filters.len()
    }

    /// Loads every program into the calling thread. Allocates nothing; meant
    /// for the child between `fork` and `execve`, after no_new_privs (which
    /// seccompiler sets again anyway). Returns the errno on failure.
    pub fn apply(&self) -> Result<(), i32> {
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(|error| match error {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                    io.raw_os_error().unwrap_or(libc::EINVAL)
                }
                _ => libc::EINVAL,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_compiles_for_every_arch() {
        for profile in Profile::ALL {
            let parsed = SeccompProfile::builtin(profile).unwrap();
            for arch in Arch::ALL {
                let program = parsed.compile(arch).unwrap();
                assert!(program.program_count() >= 1, "{profile:?} {arch}");
            }
        }
    }

    #[test]
    fn restricted_denies_what_the_design_requires() {
        let required = [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "name_to_handle_at",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "clock_settime",
            "clock_adjtime",
            "settimeofday",
            "adjtimex",
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "quotactl",
            "pivot_root",
            "chroot",
        ];
        let restricted = SeccompProfile::builtin(Profile::Restricted).unwrap();
        for arch in Arch::ALL {
            let denied: BTreeMap<&str, &DenyRule> = restricted.denied(arch).collect();
            for name in required {
                let rule = denied
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} on {arch}"));
                assert_eq!(rule.errno, DenyErrno::Eperm, "{name}");
                assert_eq!(rule.when, None, "{name} is denied unconditionally");
            }
        }
    }

    #[test]
    fn baseline_is_a_subset_of_restricted() {
        let restricted = SeccompProfile::builtin(Profile::Restricted).unwrap();
        let baseline = SeccompProfile::builtin(Profile::Baseline).unwrap();
        for arch in Arch::ALL {
            let strict: BTreeSet<&str> = restricted.denied(arch).map(|(n, _)| n).collect();
            for (name, _) in baseline.denied(arch) {
                assert!(
                    strict.contains(name),
                    "baseline denies {name} but restricted does not"
                );
            }
        }
    }

    #[test]
    fn x32_rule_comes_first_on_x86_64_only() {
        let privileged = SeccompProfile::builtin(Profile::Privileged).unwrap();
        let x86 = privileged.compile(Arch::X86_64).unwrap();
        assert_eq!(x86.filters[0][..5], x32_rule()[..]);
        let arm = privileged.compile(Arch::Aarch64).unwrap();
        let x32_check = &x32_rule()[3];
        assert!(!arm.filters.iter().flatten().any(|insn| insn == x32_check));
    }

    #[test]
    fn a_syscall_in_two_rules_is_rejected() {
        let json = r#"{"profile": "baseline", "description": "", "deny": [
            {"why": "a", "syscalls": ["mount"]},
            {"why": "b", "syscalls": ["mount"], "arches": ["aarch64"]}
        ]}"#;
        let error = SeccompProfile::parse("dup.json", json, Profile::Baseline).unwrap_err();
        assert_eq!(
            error.to_string(),
            "seccomp profile dup.json: syscall mount is named by more than one rule on aarch64"
        );
    }

    #[test]
    fn unknown_syscall_and_constant_are_rejected() {
        let json = r#"{"profile": "baseline", "description": "", "deny": [
            {"why": "a", "syscalls": ["no_such_call"]}
        ]}"#;
        let parsed = SeccompProfile::parse("x.json", json, Profile::Baseline).unwrap();
        let error = parsed.compile(Arch::X86_64).unwrap_err();
        assert!(error.to_string().contains("no_such_call"), "{error}");

        let json = r#"{"profile": "baseline", "description": "", "deny": [
            {"why": "a", "syscalls": ["clone"], "when": {"arg": 0, "op": "any_bit", "values": ["CLONE_NOPE"]}}
        ]}"#;
        let error = SeccompProfile::parse("x.json", json, Profile::Baseline).unwrap_err();
        assert!(error.to_string().contains("CLONE_NOPE"), "{error}");

        let error = SeccompProfile::parse("x.json", json, Profile::Restricted).unwrap_err();
        assert!(
            error.to_string().contains("expected \"restricted\""),
            "{error}"
        );
    }

    #[test]
    fn golden_summaries() {
        for profile in Profile::ALL {
            let parsed = SeccompProfile::builtin(profile).unwrap();
            for arch in Arch::ALL {
                let summary = parsed.summary(arch).unwrap();
                insta::assert_snapshot!(format!("{}_{arch}", profile.as_str()), summary);
            }
        }
    }
}
