//! What every command needs: the instance, the store, the actor, and how failures map
//! to exit codes.

use std::path::PathBuf;

use anyhow::Context as _;
use bulkhead_node::naming::Instance;
use bulkhead_spec::{Desired, Diagnostics, Source};
use bulkhead_store::{Revision, Store};

use crate::cli::Global;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 3;
pub const EXIT_CHANGES: u8 = 4;
pub const EXIT_TAMPERED: u8 = 5;
pub const EXIT_NOT_READY: u8 = 6;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The input has errors; nothing was changed.
    Invalid(Diagnostics),
    /// Anything else, with its chain of causes.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

impl From<Diagnostics> for Failure {
    fn from(diagnostics: Diagnostics) -> Self {
        Failure::Invalid(diagnostics)
    }
}

pub type Outcome = Result<u8, Failure>;

/// Loads and validates spec files; errors become [`Failure::Invalid`].
pub fn load(paths: &[PathBuf]) -> Result<Desired, Failure> {
    Ok(bulkhead_spec::load(paths)?)
}

/// Who is acting: `--actor`, else the invoking user.
pub fn actor(global: &Global) -> String {
    global
        .actor
        .clone()
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(user_from_uid)
}

/// The user name of this process's uid from /etc/passwd, else `uid:N`.
fn user_from_uid() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".to_owned();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse() == Ok(uid)).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// The instance: `--instance`, else the platform file's, else the default. A flag that
/// contradicts the platform file is an error rather than a silent choice.
pub fn instance(global: &Global, desired: Option<&Desired>) -> Result<Instance, Failure> {
    let from_spec = desired.map(|d| d.platform.spec.instance.clone());
    let prefix = match (&global.instance, from_spec) {
        (Some(flag), Some(spec)) if *flag != spec => {
            return Err(anyhow::anyhow!(
                "--instance {flag:?} contradicts the platform file's spec.instance {spec:?} (expected the same prefix, or no flag)"
            )
            .into());
        }
        (Some(flag), _) => flag.clone(),
        (None, Some(spec)) => spec,
        (None, None) => bulkhead_spec::defaults::INSTANCE.to_owned(),
    };
    Ok(Instance::new(&prefix, &global.state_root))
}

/// Opens (creating if needed) the instance's store.
pub fn open_store(instance: &Instance) -> Result<Store, Failure> {
    let path = instance.store_path();
    Store::open(&path)
        .with_context(|| format!("cannot open the store at {}", path.display()))
        .map_err(Failure::from)
}

/// Opens the store only if it exists: read-only commands never create state.
pub fn existing_store(instance: &Instance) -> Result<Option<Store>, Failure> {
    if instance.store_path().exists() {
        open_store(instance).map(Some)
    } else {
        Ok(None)
    }
}

/// The store of an instance that must already exist, with an error that says what to do.
pub fn required_store(global: &Global) -> Result<Store, Failure> {
    let instance = instance(global, None)?;
    existing_store(&instance)?.ok_or_else(|| {
        Failure::Other(anyhow::anyhow!(
            "instance {:?} has no store at {} (expected `bulkhead apply` to have run)",
            instance.prefix(),
            instance.store_path().display()
        ))
    })
}

/// The desired state of a stored revision, re-validated on the way out.
pub fn desired_of(revision: &Revision) -> Result<Desired, Failure> {
    desired_within(revision, &std::collections::BTreeSet::new())
}

/// [`desired_of`] for the part of a revision left in `revision.objects`, whose other
/// tenants are named in `elsewhere`.
fn desired_within(
    revision: &Revision,
    elsewhere: &std::collections::BTreeSet<String>,
) -> Result<Desired, Failure> {
    let sources: Vec<Source> = revision
        .objects
        .iter()
        .map(|object| Source {
            name: format!("revision {}: {}", revision.id, object.key).into(),
            text: object.document.clone(),
        })
        .collect();
    bulkhead_spec::load_sources_within(&sources, elsewhere).map_err(|diagnostics| {
        Failure::Other(anyhow::anyhow!(
            "revision {} no longer validates (was it written by another version?):\n{diagnostics}",
            revision.id
        ))
    })
}

/// One tenant's part of the last applied revision: the platform, the tenant and its
/// workloads, validated with [`bulkhead_spec::load_sources_within`] (the revision's
/// other tenants are known by name). `bulkhead run` needs no more, and its cost then
/// does not grow with the number of tenants; the revision as a whole was validated
/// before it was stored.
pub fn desired_for_tenant(global: &Global, tenant: &str) -> Result<Desired, Failure> {
    let instance = instance(global, None)?;
    let nothing_applied = || {
        anyhow::anyhow!(
            "instance {:?} has nothing applied yet (expected `bulkhead apply DIR` first, or -f DIR to read files)",
            instance.prefix()
        )
    };
    let store = existing_store(&instance)?;
    crate::phases::mark("open-store");
    let store = store.ok_or_else(nothing_applied)?;
    let mut revision = store
        .latest_revision()
        .context("cannot read the latest revision")?
        .ok_or_else(nothing_applied)?;
    crate::phases::mark("read-revision");
    let mut elsewhere = std::collections::BTreeSet::new();
    revision.objects.retain(|object| {
        let key = &object.key;
        match key.kind.as_str() {
            "Tenant" if key.name != tenant => {
                elsewhere.insert(key.name.clone());
                false
            }
            "Workload" => key.namespace.as_deref() == Some(tenant),
            _ => true,
        }
    });
    let found = revision
        .objects
        .iter()
        .any(|o| o.key.kind == "Tenant" && o.key.name == tenant);
    if !found {
        return Err(anyhow::anyhow!(
            "no tenant named {tenant:?} (expected one of: {})",
            elsewhere.into_iter().collect::<Vec<_>>().join(", ")
        )
        .into());
    }
    let desired = desired_within(&revision, &elsewhere)?;
    crate::phases::mark("validate-revision");
    Ok(desired)
}

/// The desired state to read from: files when given, else the last applied revision.
pub fn desired_from(global: &Global, files: &[PathBuf]) -> Result<(Desired, String), Failure> {
    if !files.is_empty() {
        let desired = load(files)?;
        return Ok((desired, "files".to_owned()));
    }
    let instance = instance(global, None)?;
    let store = existing_store(&instance)?;
    crate::phases::mark("open-store");
    let Some(store) = store else {
        return Err(anyhow::anyhow!(
            "instance {:?} has nothing applied yet (expected `bulkhead apply DIR` first, or -f DIR to read files)",
            instance.prefix()
        )
        .into());
    };
    let revision = store
        .latest_revision()
        .context("cannot read the latest revision")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "instance {:?} has nothing applied yet (expected `bulkhead apply DIR` first, or -f DIR to read files)",
                instance.prefix()
            )
        })?;
    crate::phases::mark("read-revision");
    let desired = desired_of(&revision)?;
    crate::phases::mark("validate-revision");
    Ok((desired, format!("revision {}", revision.id)))
}
