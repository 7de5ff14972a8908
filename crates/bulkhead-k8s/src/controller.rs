//! `bulkhead k8s controller`: reconciles `Tenant` custom resources (the CRD of
//! [`crate::crd`]) into the rendered stack, with kube's controller runtime.
//!
//! # One reconcile ([`reconcile`])
//!
//! 1. **Deleted** (`metadata.deletionTimestamp` set) and holding our finalizer
//!    [`FINALIZER`]: delete every object labelled as the tenant's
//!    ([`crate::apply::delete_tenant`]; objects inside its Namespace go with it),
//!    re-apply the platform's admission policies for the Tenants that remain (they name
//!    every tenant), then remove the finalizer with a JSON patch that first tests it is
//!    still at that index. A failure keeps the finalizer, so the Tenant stays until
//!    cleanup succeeds.
//! 2. **Validate** the Tenant with the spec crate, exactly as a file would be: the
//!    platform (from the file given to the controller, else the default platform) plus
//!    this Tenant, every other Tenant's name standing for references
//!    ([`bulkhead_spec::load_sources_within`]); then with the other Tenants that
//!    validate together (a Tenant naming an invalid one fails too, and is left out of
//!    the others' render, so one broken Tenant degrades those that refer to it and
//!    nobody else). An invalid spec gets `Degraded=True` (reason `InvalidSpec`, the
//!    diagnostics: `Tenant/<name>: field.path: what was expected`),
//!    `Ready=False`, a Warning event, and nothing else: no finalizer, no apply, no
//!    prune. It is looked at again when it changes and at the periodic resync.
//!    The validation of the whole set (and its load and render) is computed once per
//!    state of the store and shared by every reconcile of that state (a private
//!    snapshot keyed by each Tenant's uid, generation, labels and deletion), so the
//!    N reconciles one change triggers validate the N Tenants once, not N times each;
//!    a Tenant the store does not hold in that very version is validated on its own.
//! 3. **Finalizer first**: if [`FINALIZER`] is missing it is added (JSON patch, tested
//!    against the finalizers seen) before anything is created.
//! 4. **Render** that desired state and keep this Tenant's objects and the platform's
//!    admission policies; **apply** them with [`crate::apply::apply`] (server-side
//!    apply, field manager `bulkhead`) and prune this Tenant's objects the render no
//!    longer has (only objects with its `bulkhead.dev/tenant` label). The tenant's
//!    reconciler RoleBinding names the platform ClusterRole
//!    [`crate::rbac::CLUSTER_ROLE`], which the controller neither applies nor prunes
//!    ([`crate::apply::PLATFORM_ONLY`]): it is installed with the controller's
//!    manifests, and the controller may bind it (`bind` by `resourceNames`) without
//!    holding the rights it grants. Before applying, it reads that ClusterRole
//!    ([`check_reconciler_role`]): missing, or granting other rules than a tenant
//!    reconciler's, it applies nothing and sets `Degraded` (reason
//!    `ReconcilerRoleInvalid`, saying how to install it), retried with backoff.
//! 5. **Status** through the status subresource (a merge patch of `.status`):
//!    `observedGeneration`, conditions `Ready` and `Degraded` (reason and message), and
//!    the count of objects applied and pruned; an **Event** (`Applied`, `InvalidSpec`,
//!    `ApplyFailed`, `Deleted`, `CleanupFailed`) on the Tenant, published by kube's
//!    event recorder (in `default`, as the Tenant is cluster-scoped). Publishing events
//!    is best effort: a refused event does not fail the reconcile.
//!
//! Errors (the API server refusing a patch, an apply that stops) set `Degraded`
//! (reason `ApplyFailed`) where the status can still be written and return a
//! [`ReconcileError`]; [`error_policy`] requeues with exponential backoff per Tenant
//! ([`backoff`]: 5 s doubling to 5 min). A success requeues after [`RESYNC`] to
//! correct drift. [`run`] wires this into kube's controller runtime, whose reflector
//! store is where a reconcile reads the other Tenants; a change to any Tenant's spec,
//! labels or deletion reconciles every Tenant, since their renders name each other.
//!
//! The Tenant CRD has no Workload kind: Deployments reach a tenant's namespace through
//! its GitOps source (Flux, impersonating the tenant's reconciler account).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_spec::{Diagnostics, Source};
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{PredicateConfig, WatchStreamExt as _, watcher};
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};

use crate::apply::{ApplyError, ApplyOptions, ApplyReport, apply, delete_tenant};
use crate::crd::{GROUP, KIND, PLURAL, VERSION};
use crate::options::K8sOptions;
use crate::render::render;

/// The finalizer that holds a deleted Tenant until its objects are deleted.
pub const FINALIZER: &str = "bulkhead.dev/cleanup";
/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "bulkhead-controller";
/// How long after a successful reconcile a Tenant is reconciled again (drift).
pub const RESYNC: Duration = Duration::from_secs(600);
/// The first retry after an error.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The `Tenant` resource (`tenants.bulkhead.dev/v1alpha1`, cluster-scoped).
pub fn tenant_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// The wait before retry number `failures` (1 for the first failure).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// What a reconcile needs: the client, the platform, the other Tenants (a reflector
/// store: the controller's own cache), render and apply options, the event recorder.
pub struct Context {
    client: kube::Client,
    platform: Vec<Source>,
    tenants: Store<DynamicObject>,
    render: K8sOptions,
    apply: ApplyOptions,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("platform", &self.platform.len())
            .field("render", &self.render)
            .field("apply", &self.apply)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context. `platform` holds the Platform document (empty: the default platform);
    /// `tenants` is the store the other Tenants are read from. Events are reported as
    /// [`CONTROLLER_NAME`], instance `$POD_NAME` when the environment has it (the
    /// controller's pod, through the downward API).
    pub fn new(
        client: kube::Client,
        platform: Vec<Source>,
        tenants: Store<DynamicObject>,
        render: K8sOptions,
        apply: ApplyOptions,
    ) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            platform,
            tenants,
            render,
            apply,
            failures: Mutex::new(HashMap::new()),
            snapshot: Mutex::new(None),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A poisoned map only holds retry counts: keep using it.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a reconcile failed; the controller retries with [`backoff`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The Tenant has no name (the API server always sets one).
    #[error("the Tenant has no metadata.name")]
    Unnamed,
    /// A patch of the Tenant (finalizer or status) was refused.
    #[error("cannot {what} of Tenant {tenant}: {source}")]
    Patch {
        /// `add the finalizer`, `remove the finalizer`, `write the status`.
        what: &'static str,
        /// The Tenant.
        tenant: String,
        /// What the client said.
        source: Box<kube::Error>,
    },
    /// Applying (or deleting) the Tenant's objects stopped.
    #[error("tenant {tenant}: {source}")]
    Apply {
        /// The Tenant.
        tenant: String,
        /// The apply error.
        source: Box<ApplyError>,
    },
    /// The platform ClusterRole the tenant's RoleBinding names is missing, unreadable
    /// or grants other rules than a tenant reconciler's: nothing is applied.
    #[error("tenant {tenant}: {message}")]
    ReconcilerRole {
        /// The Tenant.
        tenant: String,
        /// What is wrong with the ClusterRole.
        message: String,
    },
    /// The rendered objects could not be built (a bug, not input).
    #[error("tenant {tenant}: {message}")]
    Render {
        /// The Tenant.
        tenant: String,
        /// The render error.
        message: String,
    },
}

/// Diagnostics as a status message, one per line. A Tenant's are
/// `Tenant/<name>: field.path: what was expected`, without line and column: those
/// would count lines of the document the controller wrote from the object, not of
/// anything the user has. The platform file's keep theirs.
pub fn diagnostics_text(diagnostics: &Diagnostics) -> String {
    diagnostics
        .iter()
        .map(|d| {
            if d.pos.file.starts_with(&format!("{KIND}/")) {
                if d.path.is_empty() {
                    format!("{}: {}", d.pos.file, d.message)
                } else {
                    format!("{}: {}: {}", d.pos.file, d.path, d.message)
                }
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why the platform file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The file could not be read.
    #[error("{0}")]
    Read(Diagnostics),
    /// A document is not YAML.
    #[error("{file}: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// The file holds something other than exactly one Platform.
    #[error(
        "{file}: holds {found} (expected exactly one document of kind Platform; Tenants come from the cluster)"
    )]
    NotOnePlatform {
        /// The file.
        file: String,
        /// The kinds found.
        found: String,
    },
}

/// Reads the Platform the controller renders with: one file holding exactly one
/// `Platform` document. It is validated with every Tenant on each reconcile (its
/// references name Tenants); a mistake in it degrades every Tenant, naming the file.
pub fn platform_sources(path: &std::path::Path) -> Result<Vec<Source>, PlatformError> {
    let (sources, diagnostics) = bulkhead_spec::read_sources(&[path.to_owned()]);
    if !diagnostics.is_empty() {
        return Err(PlatformError::Read(diagnostics));
    }
    let mut kinds = Vec::new();
    for source in &sources {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&source.text).map_err(|e| PlatformError::Yaml {
                file: source.name.to_string(),
                message: e.to_string(),
            })?;
        for document in documents.iter().filter(|d| !d.is_null()) {
            kinds.push(document["kind"].as_str().unwrap_or("no kind").to_owned());
        }
    }
    if kinds != ["Platform"] {
        return Err(PlatformError::NotOnePlatform {
            file: path.display().to_string(),
            found: if kinds.is_empty() {
                "no document".to_owned()
            } else {
                kinds.join(", ")
            },
        });
    }
    Ok(sources)
}

/// The spec-crate document for a Tenant object: its name, labels and spec.
fn tenant_source(tenant: &DynamicObject) -> Result<Source, ReconcileError> {
    let name = tenant
        .metadata
        .name
        .clone()
        .ok_or(ReconcileError::Unnamed)?;
    let mut metadata = json!({ "name": name });
    if let Some(labels) = tenant.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata["labels"] = json!(labels);
    }
    let document = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": metadata,
        "spec": tenant.data.get("spec").cloned().unwrap_or(Value::Null),
    });
    let text = serde_saphyr::to_string(&document).map_err(|e| ReconcileError::Render {
        tenant: name.clone(),
        message: format!("cannot write the Tenant as YAML: {e}"),
    })?;
    Ok(Source {
        name: Arc::from(format!("Tenant/{name}")),
        text,
    })
}

/// The Tenants of the store other than `name`, by name.
fn others(ctx: &Context, name: &str) -> BTreeMap<String, Arc<DynamicObject>> {
    ctx.tenants
        .state()
        .into_iter()
        .filter_map(|t| {
            let n = t.metadata.name.clone()?;
            (n != name && t.metadata.deletion_timestamp.is_none()).then_some((n, t))
        })
        .collect()
}

/// Validates one Tenant against the platform, other Tenants standing for references.
fn validate_alone(
    ctx: &Context,
    source: &Source,
    elsewhere: &BTreeSet<String>,
) -> Result<(), Diagnostics> {
    let mut sources = ctx.platform.clone();
    sources.push(source.clone());
    bulkhead_spec::load_sources_within(&sources, elsewhere).map(|_| ())
}

/// The Tenants of `candidates` that validate together: each is checked against the
/// platform with the others' names standing for references, and any that fails is
/// dropped, until none does (a Tenant referring to a dropped one fails next round).
fn valid_together(ctx: &Context, candidates: &BTreeMap<String, Source>) -> BTreeSet<String> {
    valid_together_from(ctx, candidates, candidates.keys().cloned().collect())
}

/// [`valid_together`], starting from `valid` (a subset of `candidates` whose first
/// round is already known).
fn valid_together_from(
    ctx: &Context,
    candidates: &BTreeMap<String, Source>,
    mut valid: BTreeSet<String>,
) -> BTreeSet<String> {
    loop {
        let failing: Vec<String> = valid
            .iter()
            .filter(|name| {
                let mut rest = valid.clone();
                rest.remove(*name);
                candidates
                    .get(*name)
                    .is_none_or(|source| validate_alone(ctx, source, &rest).is_err())
            })
            .cloned()
            .collect();
        if failing.is_empty() {
            return valid;
        }
        for name in failing {
            valid.remove(&name);
        }
    }
}

/// The platform and these Tenants' documents, ready for [`bulkhead_spec::load_sources`].
fn sources_of(
    ctx: &Context,
    candidates: &BTreeMap<String, Source>,
    names: &BTreeSet<String>,
) -> Vec<Source> {
    let mut sources = ctx.platform.clone();
    sources.extend(
        names
            .iter()
            .filter_map(|name| candidates.get(name))
            .cloned(),
    );
    sources
}

/// The documents of the Tenants in the store other than `name` (objects that cannot be
/// written as a document are left out: they validate as nothing).
fn other_sources(ctx: &Context, name: &str) -> BTreeMap<String, Source> {
    others(ctx, name)
        .into_iter()
        .filter_map(|(other, object)| Some((other, tenant_source(&object).ok()?)))
        .collect()
}

/// What a reconcile derives from the whole set of Tenants, computed once per state of
/// the store and shared by every reconcile of that state. A change to one Tenant
/// reconciles all of them; without this each of those N reconciles validated all N
/// Tenants and rendered them all (about N² validations per change), with it the set
/// is validated, loaded and rendered once (bench `k8s-controller`).
///
/// The state is identified by what validation and the render read of each Tenant:
/// name, uid, spec (by `metadata.generation`, which the API server bumps on every spec
/// change; the spec itself when there is none), labels and whether it is being
/// deleted; status writes change none of these.
#[derive(Debug)]
struct Snapshot {
    /// The identity of each Tenant in the store, by name.
    keys: BTreeMap<String, u64>,
    /// The documents of the Tenants not being deleted.
    candidates: BTreeMap<String, Source>,
    /// Tenants that fail on their own, every other Tenant standing for references.
    alone: BTreeMap<String, Diagnostics>,
    /// The Tenants that validate together ([`valid_together`]).
    valid: BTreeSet<String>,
    /// The platform and the valid Tenants, loaded and rendered (on first use).
    plan: std::sync::OnceLock<Plan>,
}

/// The desired state a reconcile applies, or why there is none.
#[derive(Clone, Debug)]
enum Plan {
    /// The spec does not validate: the diagnostics for the status.
    Invalid(Diagnostics),
    /// Validated: the render (every Tenant's objects and the platform's), or why it
    /// failed.
    Render(Result<Arc<Vec<crate::RenderedObject>>, String>),
}

/// The identity of a Tenant for [`Snapshot`].
fn tenant_key(tenant: &DynamicObject) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tenant.metadata.uid.hash(&mut hasher);
    match tenant.metadata.generation {
        Some(generation) => generation.hash(&mut hasher),
        None => tenant
            .data
            .get("spec")
            .map(Value::to_string)
            .hash(&mut hasher),
    }
    tenant.metadata.labels.hash(&mut hasher);
    tenant
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    hasher.finish()
}

/// Loads and renders the platform with the Tenants `names` of `candidates`.
fn plan_of(ctx: &Context, candidates: &BTreeMap<String, Source>, names: &BTreeSet<String>) -> Plan {
    match bulkhead_spec::load_sources(&sources_of(ctx, candidates, names)) {
        Err(diagnostics) => Plan::Invalid(diagnostics),
        Ok(desired) => Plan::Render(
            render(&desired, &ctx.render)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        ),
    }
}

impl Context {
    /// The [`Snapshot`] of the store as it is now: the cached one when no Tenant's
    /// identity changed, else a new one (documents of unchanged Tenants reused).
    fn snapshot(&self) -> Arc<Snapshot> {
        let objects: BTreeMap<String, Arc<DynamicObject>> = self
            .tenants
            .state()
            .into_iter()
            .filter_map(|t| Some((t.metadata.name.clone()?, t)))
            .collect();
        let keys: BTreeMap<String, u64> = objects
            .iter()
            .map(|(name, object)| (name.clone(), tenant_key(object)))
            .collect();
        // Held while building: concurrent reconciles wait for one build, not run N.
        let mut cached = self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(snapshot) = cached.as_ref().filter(|s| s.keys == keys) {
            return Arc::clone(snapshot);
        }
        let previous = cached.take();
        let mut candidates = BTreeMap::new();
        for (name, object) in &objects {
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let reused = previous.as_ref().and_then(|p| {
                (p.keys.get(name) == keys.get(name))
                    .then(|| p.candidates.get(name).cloned())
                    .flatten()
            });
            // A Tenant that cannot be written as a document validates as nothing.
            if let Some(source) = reused.or_else(|| tenant_source(object).ok()) {
                candidates.insert(name.clone(), source);
            }
        }
        let names: BTreeSet<String> = candidates.keys().cloned().collect();
        let mut alone = BTreeMap::new();
        for (name, source) in &candidates {
            let mut elsewhere = names.clone();
            elsewhere.remove(name);
            if let Err(diagnostics) = validate_alone(self, source, &elsewhere) {
                alone.insert(name.clone(), diagnostics);
            }
        }
        let first: BTreeSet<String> = names
            .iter()
            .filter(|n| !alone.contains_key(*n))
            .cloned()
            .collect();
        let valid = valid_together_from(self, &candidates, first);
        let snapshot = Arc::new(Snapshot {
            keys,
            candidates,
            alone,
            valid,
            plan: std::sync::OnceLock::new(),
        });
        *cached = Some(Arc::clone(&snapshot));
        snapshot
    }
}

/// Validates, loads and renders for the Tenant `name` whose document is `source`: from
/// the shared [`Snapshot`] when the store holds this very Tenant, else on its own.
/// Both give the same answer: the Tenant must validate on its own (every other Tenant
/// standing for references), then it is loaded with the Tenants that validate together.
fn plan(ctx: &Context, name: &str, source: &Source) -> Plan {
    let snapshot = ctx.snapshot();
    let in_snapshot = snapshot
        .candidates
        .get(name)
        .is_some_and(|s| s.text == source.text);
    if in_snapshot && snapshot.valid.contains(name) {
        return snapshot
            .plan
            .get_or_init(|| plan_of(ctx, &snapshot.candidates, &snapshot.valid))
            .clone();
    }
    let (mut candidates, problem, valid) = if in_snapshot {
        (
            snapshot.candidates.clone(),
            snapshot.alone.get(name).cloned(),
            snapshot.valid.clone(),
        )
    } else {
        // The store does not hold this version of the Tenant (yet): compute.
        let mut candidates = other_sources(ctx, name);
        let elsewhere: BTreeSet<String> = candidates.keys().cloned().collect();
        let problem = validate_alone(ctx, source, &elsewhere).err();
        candidates.insert(name.to_owned(), source.clone());
        let valid = valid_together(ctx, &candidates);
        (candidates, problem, valid)
    };
    candidates.insert(name.to_owned(), source.clone());
    let mut rest = valid.clone();
    rest.remove(name);
    let problem = problem.or_else(|| {
        (!valid.contains(name))
            .then(|| validate_alone(ctx, source, &rest).err())
            .flatten()
    });
    if let Some(diagnostics) = problem {
        return Plan::Invalid(diagnostics);
    }
    let mut names = valid;
    names.insert(name.to_owned());
    plan_of(ctx, &candidates, &names)
}

/// Re-applies the platform's objects (admission policies, which name every tenant)
/// for the Tenants that remain after `gone` was deleted. Nothing to do when they do
/// not validate together.
async fn refresh_platform(ctx: &Context, gone: &str) -> Result<usize, ReconcileError> {
    let candidates = other_sources(ctx, gone);
    let valid = valid_together(ctx, &candidates);
    let Ok(desired) = bulkhead_spec::load_sources(&sources_of(ctx, &candidates, &valid)) else {
        return Ok(0);
    };
    let objects = render(&desired, &ctx.render).map_err(|e| ReconcileError::Render {
        tenant: gone.to_owned(),
        message: e.to_string(),
    })?;
    // Not the shared reconciler ClusterRole: the controller holds `bind` on it, not the
    // rights it grants, so it cannot write it (and has no need: no tenant changes it).
    let platform: Vec<_> = objects
        .into_iter()
        .filter(|o| o.tenant.is_none() && !crate::apply::PLATFORM_ONLY.contains(&o.kind.as_str()))
        .collect();
    let options = ApplyOptions {
        prune: false,
        ..ctx.apply.clone()
    };
    let report = apply(&ctx.client, &platform, &options)
        .await
        .map_err(|source| ReconcileError::Apply {
            tenant: gone.to_owned(),
            source: Box::new(source),
        })?;
    Ok(report.applied.len())
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &Value,
) -> Condition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status does.
    let previous = previous
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == kind));
    let last_transition_time = previous
        .filter(|c| c["status"] == status)
        .and_then(|c| serde_json::from_value::<Time>(c["lastTransitionTime"].clone()).ok())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        // The API server caps a condition message at 32 KiB.
        message: message.chars().take(4096).collect(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status of a Tenant: `Ready` and `Degraded`, with reason and message.
pub fn status(
    tenant: &DynamicObject,
    ready: bool,
    reason: &str,
    message: &str,
    report: Option<&ApplyReport>,
) -> Value {
    let generation = tenant.metadata.generation;
    let previous = &tenant.data;
    let degraded_reason = if ready { "AsExpected" } else { reason };
    let mut status = json!({
        "observedGeneration": generation,
        "conditions": [
            condition("Ready", ready, reason, message, generation, previous),
            condition("Degraded", !ready, degraded_reason, message, generation, previous),
        ],
    });
    if let Some(report) = report {
        status["applied"] = json!(report.applied.len());
        status["pruned"] = json!(report.pruned.len());
    }
    json!({ "status": status })
}

async fn write_status(ctx: &Context, name: &str, body: Value) -> Result<(), ReconcileError> {
    Api::<DynamicObject>::all_with(ctx.client.clone(), &tenant_resource())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|source| ReconcileError::Patch {
            what: "write the status",
            tenant: name.to_owned(),
            source: Box::new(source),
        })
}

async fn event(ctx: &Context, tenant: &DynamicObject, warning: bool, reason: &str, note: &str) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    // Best effort: a refused event must not fail (or repeat) the reconcile.
    let _ = ctx
        .recorder
        .publish(&event, &tenant.object_ref(&tenant_resource()))
        .await;
}

async fn patch_finalizers(
    ctx: &Context,
    name: &str,
    patch: Value,
    what: &'static str,
) -> Result<(), ReconcileError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| ReconcileError::Render {
            tenant: name.to_owned(),
            message: format!("cannot build the finalizer patch: {e}"),
        })?;
    Api::<DynamicObject>::all_with(ctx.client.clone(), &tenant_resource())
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map(|_| ())
        .map_err(|source| ReconcileError::Patch {
            what,
            tenant: name.to_owned(),
            source: Box::new(source),
        })
}

/// Reads the platform ClusterRole [`crate::rbac::CLUSTER_ROLE`] and checks that it
/// grants exactly a tenant reconciler's rules ([`crate::rbac::reconciler_rules`]), with
/// no aggregation rule: the controller binds it in the tenant's namespace and must not
/// bind a missing or widened one. Errors say what is wrong and how to fix it.
pub async fn check_reconciler_role(client: &kube::Client) -> Result<(), String> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let name = crate::rbac::CLUSTER_ROLE;
    let fix = "install it with `bulkhead k8s controller --manifests` or `bulkhead k8s apply`";
    match Api::<ClusterRole>::all(client.clone()).get_opt(name).await {
        Ok(Some(role)) => {
            if role.aggregation_rule.is_some() {
                Err(format!(
                    "ClusterRole {name} has an aggregationRule (expected exactly the tenant reconciler's rules); refusing to bind it: {fix}"
                ))
            } else if role.rules.unwrap_or_default() != crate::rbac::reconciler_rules() {
                Err(format!(
                    "ClusterRole {name} grants other rules than the tenant reconciler's (expected exactly those bulkhead renders); refusing to bind it: {fix}"
                ))
            } else {
                Ok(())
            }
        }
        Ok(None) => Err(format!(
            "ClusterRole {name} is missing (every tenant's reconciler RoleBinding names it): {fix}"
        )),
        Err(error) => Err(format!("cannot read ClusterRole {name}: {error}")),
    }
}

/// Reconciles one Tenant (see the module documentation for the steps).
pub async fn reconcile(
    tenant: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let name = tenant
        .metadata
        .name
        .clone()
        .ok_or(ReconcileError::Unnamed)?;
    let finalizers = tenant.finalizers().to_vec();
    let ours = finalizers.iter().position(|f| f == FINALIZER);

    if tenant.metadata.deletion_timestamp.is_some() {
        let Some(index) = ours else {
            return Ok(Action::await_change());
        };
        let deleted = match delete_tenant(&ctx.client, &name).await {
            Ok(deleted) => deleted,
            Err(source) => {
                let error = ReconcileError::Apply {
                    tenant: name.clone(),
                    source: Box::new(source),
                };
                event(&ctx, &tenant, true, "CleanupFailed", &error.to_string()).await;
                return Err(error);
            }
        };
        if let Err(error) = refresh_platform(&ctx, &name).await {
            event(&ctx, &tenant, true, "CleanupFailed", &error.to_string()).await;
            return Err(error);
        }
        let path = format!("/metadata/finalizers/{index}");
        patch_finalizers(
            &ctx,
            &name,
            json!([
                { "op": "test", "path": path, "value": FINALIZER },
                { "op": "remove", "path": path },
            ]),
            "remove the finalizer",
        )
        .await?;
        event(
            &ctx,
            &tenant,
            false,
            "Deleted",
            &format!("deleted {} objects", deleted.len()),
        )
        .await;
        ctx.failures().remove(&name);
        return Ok(Action::await_change());
    }

    // Validate before anything changes on the cluster: on its own (every other Tenant
    // standing for references), then with the Tenants that validate together.
    let source = tenant_source(&tenant)?;
    let rendered = match plan(&ctx, &name, &source) {
        Plan::Render(rendered) => rendered,
        Plan::Invalid(diagnostics) => {
            let message = diagnostics_text(&diagnostics);
            write_status(
                &ctx,
                &name,
                status(&tenant, false, "InvalidSpec", &message, None),
            )
            .await?;
            event(&ctx, &tenant, true, "InvalidSpec", &message).await;
            // Nothing to retry until a spec changes (which triggers a reconcile) or the
            // periodic resync.
            return Ok(Action::requeue(RESYNC));
        }
    };

    if ours.is_none() {
        let patch = if finalizers.is_empty() {
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
            ])
        } else {
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": finalizers },
                { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
            ])
        };
        patch_finalizers(&ctx, &name, patch, "add the finalizer").await?;
    }

    let objects = match rendered {
        Ok(objects) => objects,
        Err(message) => {
            write_status(
                &ctx,
                &name,
                status(&tenant, false, "InvalidSpec", &message, None),
            )
            .await?;
            event(&ctx, &tenant, true, "InvalidSpec", &message).await;
            return Ok(Action::await_change());
        }
    };
    let objects: Vec<_> = objects
        .iter()
        .filter(|o| o.tenant.as_deref().is_none_or(|t| t == name))
        .cloned()
        .collect();
    let options = ApplyOptions {
        tenant: Some(name.clone()),
        ..ctx.apply.clone()
    };
    let applied = match check_reconciler_role(&ctx.client).await {
        Ok(()) => apply(&ctx.client, &objects, &options)
            .await
            .map_err(|source| ReconcileError::Apply {
                tenant: name.clone(),
                source: Box::new(source),
            }),
        Err(message) => Err(ReconcileError::ReconcilerRole {
            tenant: name.clone(),
            message,
        }),
    };
    match applied {
        Ok(report) => {
            let message = format!(
                "{} objects applied, {} pruned",
                report.applied.len(),
                report.pruned.len()
            );
            write_status(
                &ctx,
                &name,
                status(&tenant, true, "Applied", &message, Some(&report)),
            )
            .await?;
            event(&ctx, &tenant, false, "Applied", &message).await;
            ctx.failures().remove(&name);
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            let reason = match error {
                ReconcileError::ReconcilerRole { .. } => "ReconcilerRoleInvalid",
                _ => "ApplyFailed",
            };
            let message = error.to_string();
            event(&ctx, &tenant, true, reason, &message).await;
            // The apply error is what the caller needs; a failed status write after it
            // is secondary and retried with it.
            let _ = write_status(&ctx, &name, status(&tenant, false, reason, &message, None)).await;
            Err(error)
        }
    }
}

/// Requeue after an error, with exponential backoff per Tenant.
pub fn error_policy(
    tenant: Arc<DynamicObject>,
    _error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let name = tenant.name_any();
    let mut failures = ctx.failures();
    let count = failures.entry(name).or_insert(0);
    *count = count.saturating_add(1);
    Action::requeue(backoff(*count))
}

/// What of a Tenant other Tenants' renders read: its spec (by generation), its labels
/// (tenant selectors) and whether it is being deleted.
fn render_inputs(tenant: &DynamicObject) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tenant.metadata.generation.hash(&mut hasher);
    tenant.metadata.labels.hash(&mut hasher);
    tenant
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs the controller until SIGINT or SIGTERM: watches Tenants, reconciles each
/// change. `report` hears every reconcile's outcome, as one line.
pub async fn run(
    client: kube::Client,
    platform: Vec<Source>,
    render: K8sOptions,
    apply: ApplyOptions,
    mut report: impl FnMut(String),
) {
    let resource = tenant_resource();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    // A Tenant's render depends on the others (network rules name them, admission
    // policies list them): when one's spec, labels or deletion changes, reconcile all.
    // Status writes change none of these, so they trigger nothing.
    let others_changed = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(render_inputs, PredicateConfig::default())
        .filter_map(|event| futures::future::ready(event.ok().map(|_| ())));
    let controller = Controller::new_with(api, watcher::Config::default(), resource)
        .reconcile_all_on(others_changed)
        .shutdown_on_signal();
    let ctx = Arc::new(Context::new(
        client,
        platform,
        controller.store(),
        render,
        apply,
    ));
    let mut results = std::pin::pin!(controller.run(reconcile, error_policy, ctx));
    while let Some(result) = results.next().await {
        match result {
            Ok((object, action)) => {
                report(format!("reconciled Tenant {}: {action:?}", object.name))
            }
            Err(error) => report(format!("reconcile failed: {error}")),
        }
    }
}
