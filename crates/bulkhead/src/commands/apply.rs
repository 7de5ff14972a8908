//! `bulkhead plan` and `bulkhead apply`.

use std::path::PathBuf;

use anyhow::Context as _;
use bulkhead_spec::Desired;
use bulkhead_store::{
    AuditEntry, AuditOutcome, NewObject, ObjectChange, ObjectKey, Revision, RevisionDiff,
    diff_revisions,
};
use serde::Serialize;

use crate::cli::Global;
use crate::context::{self, EXIT_CHANGES, EXIT_OK, Failure, Outcome};
use crate::output;

/// The objects of a desired state as the store keeps them.
pub fn new_objects(desired: &Desired) -> Result<Vec<NewObject>, Failure> {
    let objects = desired
        .canonical_objects()
        .context("cannot render the desired state")?;
    Ok(objects
        .into_iter()
        .map(|object| {
            let key = ObjectKey::new(object.kind, object.name);
            let key = match object.tenant {
                Some(tenant) => key.in_namespace(tenant),
                None => key,
            };
            NewObject::new(key, object.yaml)
        })
        .collect())
}

#[derive(Serialize)]
struct PlanReport<'a> {
    instance: &'a str,
    against_revision: Option<i64>,
    add: usize,
    change: usize,
    remove: usize,
    changes: &'a [ObjectChange],
    network: &'a bulkhead_policy::tenancy::TenantDiff,
    host_actions: Option<&'a Vec<String>>,
}

struct Planned {
    diff: RevisionDiff,
    network: bulkhead_policy::tenancy::TenantDiff,
    against: Option<Revision>,
    objects: Vec<NewObject>,
}

fn compute(
    global: &Global,
    desired: &Desired,
    message: &str,
) -> Result<(bulkhead_node::naming::Instance, Planned), Failure> {
    let instance = context::instance(global, Some(desired))?;
    let objects = new_objects(desired)?;
    let proposed = Revision::unsaved(&context::actor(global), message, &objects);
    let against = match context::existing_store(&instance)? {
        Some(store) => store
            .latest_revision()
            .context("cannot read the latest revision")?,
        None => None,
    };
    let empty = Revision::unsaved("", "", &[]);
    let diff = diff_revisions(against.as_ref().unwrap_or(&empty), &proposed);
    let before = against.as_ref().map(context::desired_of).transpose()?;
    let network = crate::network::diff(before.as_ref(), desired)?;
    Ok((
        instance,
        Planned {
            diff,
            network,
            against,
            objects,
        },
    ))
}

fn counts(changes: &[ObjectChange]) -> (usize, usize, usize) {
    let mut add = 0;
    let mut change = 0;
    let mut remove = 0;
    for c in changes {
        match c {
            ObjectChange::Added { .. } => add += 1,
            ObjectChange::Changed { .. } => change += 1,
            ObjectChange::Removed { .. } => remove += 1,
        }
    }
    (add, change, remove)
}

fn human_plan(instance: &str, planned: &Planned) -> String {
    let mut out = String::new();
    match &planned.against {
        Some(revision) => out.push_str(&format!(
            "Plan for instance {instance:?}, against revision {} ({} by {}):\n",
            revision.id, revision.created_at, revision.actor
        )),
        None => out.push_str(&format!(
            "Plan for instance {instance:?} (nothing applied yet):\n"
        )),
    }
    for change in &planned.diff.changes {
        match change {
            ObjectChange::Added { key, .. } => out.push_str(&format!("  + {key}\n")),
            ObjectChange::Removed { key, .. } => out.push_str(&format!("  - {key}\n")),
            ObjectChange::Changed {
                key, unified_diff, ..
            } => {
                out.push_str(&format!("  ~ {key}\n"));
                for line in unified_diff
                    .lines()
                    .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
                {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    if !planned.network.is_empty() {
        out.push_str("Network (tenant level, from the policy engine):\n");
        for line in planned.network.to_string().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let (add, change, remove) = counts(&planned.diff.changes);
    if add + change + remove == 0 {
        out.push_str("No changes: the desired state matches the last applied revision.\n");
    } else {
        out.push_str(&format!(
            "{add} to add, {change} to change, {remove} to remove.\n"
        ));
    }
    out
}

pub fn plan(global: &Global, paths: &[PathBuf], detailed_exitcode: bool) -> Outcome {
    let desired = context::load(paths)?;
    let (instance, planned) = compute(global, &desired, "")?;
    // The host part needs to read cgroups, volumes and sandboxes: root only.
    let host: Result<Vec<String>, String> = if crate::commands::host::is_root() {
        crate::commands::host::preview(&instance, &desired)
            .map(|actions| actions.iter().map(ToString::to_string).collect())
            .map_err(|failure| match failure {
                Failure::Other(e) => format!("{e:#}"),
                Failure::Invalid(d) => d.to_string(),
            })
    } else {
        Err("not observed (needs root)".to_owned())
    };
    let (add, change, remove) = counts(&planned.diff.changes);
    let report = PlanReport {
        instance: instance.prefix(),
        against_revision: planned.against.as_ref().map(|r| r.id.0),
        add,
        change,
        remove,
        changes: &planned.diff.changes,
        network: &planned.network,
        host_actions: host.as_ref().ok(),
    };
    output::emit(global.output, &report, || {
        let mut text = human_plan(instance.prefix(), &planned);
        match &host {
            Ok(actions) if actions.is_empty() => text.push_str("Host: converged, nothing to do.\n"),
            Ok(actions) => {
                text.push_str(&format!("Host ({} actions):\n", actions.len()));
                for action in actions {
                    text.push_str(&format!("  • {action}\n"));
                }
            }
            Err(reason) => text.push_str(&format!("Host: {reason}\n")),
        }
        text
    })?;
    let host_changes = host.as_ref().is_ok_and(|a| !a.is_empty());
    if detailed_exitcode && (!planned.diff.is_empty() || host_changes) {
        Ok(EXIT_CHANGES)
    } else {
        Ok(EXIT_OK)
    }
}

pub fn apply(
    global: &Global,
    paths: &[PathBuf],
    message: &str,
    record_only: bool,
    fail_after: Option<usize>,
) -> Outcome {
    // Validation happens before the store is even opened: invalid input changes nothing.
    let desired = context::load(paths)?;
    apply_desired(global, &desired, message, record_only, fail_after)
}

#[derive(Serialize)]
struct ApplyReport<'a> {
    instance: &'a str,
    revision: i64,
    digest: &'a str,
    unchanged: bool,
    changes: &'a [ObjectChange],
    network: &'a bulkhead_policy::tenancy::TenantDiff,
    host_actions: &'a [String],
}

/// Records `desired` as a new revision (audited object by object), then converges the
/// host to it unless `record_only`.
pub fn apply_desired(
    global: &Global,
    desired: &Desired,
    message: &str,
    record_only: bool,
    fail_after: Option<usize>,
) -> Outcome {
    let Recorded {
        instance,
        planned,
        saved,
        host_actions,
    } = record(global, desired, message, record_only, fail_after)?;
    let report = ApplyReport {
        instance: instance.prefix(),
        revision: saved.id.0,
        digest: &saved.digest,
        unchanged: saved.unchanged,
        changes: &planned.diff.changes,
        network: &planned.network,
        host_actions: &host_actions,
    };
    output::emit(global.output, &report, || {
        let mut text = human_plan(instance.prefix(), &planned);
        text.push_str(&format!(
            "Applied as revision {} (digest {}).\n",
            saved.id,
            &saved.digest[..12.min(saved.digest.len())]
        ));
        if record_only {
            text.push_str("Recorded only: the host was not changed (--record-only).\n");
        } else if host_actions.is_empty() {
            text.push_str("Host: already converged, nothing to do.\n");
        } else {
            text.push_str(&format!(
                "Host ({} actions, each audited):\n",
                host_actions.len()
            ));
            for action in &host_actions {
                text.push_str(&format!("  ✓ {action}\n"));
            }
        }
        text
    })?;
    Ok(EXIT_OK)
}

/// What [`record`] did.
pub struct Recorded {
    instance: bulkhead_node::naming::Instance,
    planned: Planned,
    /// The stored revision.
    pub saved: bulkhead_store::SavedRevision,
    /// Host actions taken, each audited.
    pub host_actions: Vec<String>,
}

/// [`apply_desired`] without printing: records `desired` as a new audited revision and
/// converges the host (for the daemon's backend).
pub fn record(
    global: &Global,
    desired: &Desired,
    message: &str,
    record_only: bool,
    fail_after: Option<usize>,
) -> Result<Recorded, Failure> {
    let (instance, planned) = compute(global, desired, message)?;
    let actor = context::actor(global);
    let mut store = context::open_store(&instance)?;

    // Every object change is in the audit log before it is acted on.
    let mut intents = Vec::new();
    for change in &planned.diff.changes {
        let (key, before, after) = match change {
            ObjectChange::Added { key, digest } => (key, None, Some(digest.clone())),
            ObjectChange::Removed { key, digest } => (key, Some(digest.clone()), None),
            ObjectChange::Changed {
                key,
                before_digest,
                after_digest,
                ..
            } => (key, Some(before_digest.clone()), Some(after_digest.clone())),
        };
        let action = match change {
            ObjectChange::Added { .. } => "create",
            ObjectChange::Removed { .. } => "delete",
            ObjectChange::Changed { .. } => "update",
        };
        let mut entry = AuditEntry::intent(&actor, action, key.to_string().to_lowercase());
        entry.before_digest = before;
        entry.after_digest = after;
        if !message.is_empty() {
            entry.detail = Some(message.to_owned());
        }
        intents.push(
            store
                .audit_intent(entry)
                .context("cannot write the audit log")?,
        );
    }
    let saved = store.save_revision(&actor, message, &planned.objects);
    let outcome = match &saved {
        Ok(_) => AuditOutcome::Succeeded,
        Err(_) => AuditOutcome::Failed,
    };
    let detail = saved
        .as_ref()
        .map(|s| format!("revision {}", s.id))
        .map_err(|e| e.to_string());
    for intent in &intents {
        let text = match &detail {
            Ok(text) | Err(text) => text.as_str(),
        };
        store
            .audit_outcome(intent, outcome, Some(text))
            .context("cannot write the audit log")?;
    }
    let saved = saved.context("cannot store the revision")?;
    let host_actions = if record_only {
        Vec::new()
    } else {
        crate::commands::host::converge(&instance, desired, &mut store, &actor, fail_after)?
    };
    Ok(Recorded {
        instance,
        planned,
        saved,
        host_actions,
    })
}
