//! `run`, `suspend`, `resume`, `delete`, `rollback`, `gc`: each changes the desired
//! state through a new, audited revision (except `run` and `gc`) and converges the host.

use std::collections::BTreeMap;

use anyhow::Context as _;
use bulkhead_node::host::EVICT_KEY_ANNOTATION;
use bulkhead_spec::{Desired, TenantState};
use bulkhead_store::RevisionId;

use crate::cli::Global;
use crate::commands::apply::apply_desired;
use crate::commands::host::{self, EXIT_RUN_FAILED, RunRequest};
use crate::context::{self, EXIT_OK, Failure, Outcome};

/// The last applied desired state.
fn current(global: &Global) -> Result<Desired, Failure> {
    Ok(context::desired_from(global, &[])?.0)
}

/// A changed desired state must still validate as a whole (a deleted tenant may still
/// be named by another's rules): render it and load it back.
fn revalidated(desired: &Desired) -> Result<Desired, Failure> {
    let yaml = desired
        .to_yaml()
        .context("cannot render the desired state")?;
    Ok(bulkhead_spec::load_str("<changed desired state>", &yaml)?)
}

fn tenant_mut<'a>(
    desired: &'a mut Desired,
    name: &str,
) -> Result<&'a mut bulkhead_spec::Tenant, Failure> {
    let known: Vec<String> = desired.tenants.keys().map(ToString::to_string).collect();
    desired
        .tenants
        .iter_mut()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            Failure::Other(anyhow::anyhow!(
                "no tenant named {name:?} (expected one of: {})",
                known.join(", ")
            ))
        })
}

pub fn run(global: &Global, tenant: &str, workload: Option<&str>, command: &[String]) -> Outcome {
    let outcome = (|| {
        let desired = context::desired_for_tenant(global, tenant)?;
        let instance = context::instance(global, Some(&desired))?;
        host::run(
            &instance,
            &RunRequest {
                desired: &desired,
                tenant,
                workload,
                command,
            },
        )
    })();
    match outcome {
        Ok(code) => Ok(u8::try_from(code).unwrap_or(EXIT_RUN_FAILED)),
        Err(Failure::Other(error)) => {
            eprintln!("bulkhead: {error:#}");
            Ok(EXIT_RUN_FAILED)
        }
        Err(invalid) => Err(invalid),
    }
}

pub fn suspend(global: &Global, name: &str, evict_key: bool) -> Outcome {
    let (desired, message) = suspended(global, name, evict_key)?;
    apply_desired(global, &desired, &message, false, None)
}

/// The last applied state with `name` suspended, and the revision's message.
pub fn suspended(
    global: &Global,
    name: &str,
    evict_key: bool,
) -> Result<(Desired, String), Failure> {
    let mut desired = current(global)?;
    let tenant = tenant_mut(&mut desired, name)?;
    tenant.spec.state = TenantState::Suspended;
    if evict_key {
        tenant
            .metadata
            .annotations
            .insert(EVICT_KEY_ANNOTATION.to_owned(), "true".to_owned());
    } else {
        tenant.metadata.annotations.remove(EVICT_KEY_ANNOTATION);
    }
    Ok((revalidated(&desired)?, format!("suspend {name}")))
}

pub fn resume(global: &Global, name: &str) -> Outcome {
    let (desired, message) = resumed(global, name)?;
    apply_desired(global, &desired, &message, false, None)
}

/// The last applied state with `name` active again, and the revision's message.
pub fn resumed(global: &Global, name: &str) -> Result<(Desired, String), Failure> {
    let mut desired = current(global)?;
    let tenant = tenant_mut(&mut desired, name)?;
    tenant.spec.state = TenantState::Active;
    tenant.metadata.annotations.remove(EVICT_KEY_ANNOTATION);
    Ok((revalidated(&desired)?, format!("resume {name}")))
}

pub fn delete(global: &Global, name: &str, yes: bool) -> Outcome {
    if !yes {
        return Err(Failure::Other(anyhow::anyhow!(
            "deleting tenant {name:?} destroys its data for good (expected --yes to confirm)"
        )));
    }
    let (desired, message) = without(global, name)?;
    apply_desired(global, &desired, &message, false, None)
}

/// The last applied state without tenant `name` (and its workloads).
pub fn without(global: &Global, name: &str) -> Result<(Desired, String), Failure> {
    let mut desired = current(global)?;
    tenant_mut(&mut desired, name)?;
    desired.tenants.retain(|n, _| n.as_str() != name);
    desired
        .workloads
        .retain(|(tenant, _), _| tenant.as_str() != name);
    Ok((revalidated(&desired)?, format!("delete {name}")))
}

pub fn rollback(global: &Global, revision: i64) -> Outcome {
    let store = context::required_store(global)?;
    let old = store
        .revision(RevisionId(revision))
        .with_context(|| format!("cannot read revision {revision}"))?;
    let desired = context::desired_of(&old)?;
    drop(store);
    apply_desired(
        global,
        &desired,
        &format!("rollback to revision {revision}"),
        false,
        None,
    )
}

pub fn gc(global: &Global, all: bool) -> Outcome {
    let desired = match context::desired_from(global, &[]) {
        Ok((desired, _)) => desired,
        Err(_) if all => {
            // Nothing applied (or no store): there is still the host to clean, for the
            // instance the flags name.
            let mut empty = bulkhead_spec::load_str("<empty>", "")?;
            empty.platform.spec.instance = context::instance(global, None)?.prefix().to_owned();
            empty
        }
        Err(error) => return Err(error),
    };
    let desired = if all {
        Desired {
            platform: desired.platform,
            tenants: BTreeMap::new(),
            workloads: BTreeMap::new(),
        }
    } else {
        desired
    };
    let instance = context::instance(global, Some(&desired))?;
    let mut store = context::open_store(&instance)?;
    let actions = host::converge(
        &instance,
        &desired,
        &mut store,
        &context::actor(global),
        None,
    )?;
    if all {
        bulkhead_node::host::Host::new(instance.clone())
            .and_then(|h| h.remove_instance_cgroup())
            .context("cannot remove the instance's cgroup")?;
    }
    if actions.is_empty() {
        println!("nothing to collect for instance {:?}", instance.prefix());
    }
    for action in &actions {
        println!("✓ {action}");
    }
    Ok(EXIT_OK)
}
