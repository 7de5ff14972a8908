//! Elevated access: temporary, approved exceptions to the desired state, and the
//! overlay that makes them (and the noisy-neighbour tightenings) part of what the
//! host converges to.
//!
//! ```text
//!  request (platform-admin A: kind, tenant, parameters, reason, ttl)   → pending
//!  approve / deny (platform-admin B ≠ A; Cedar @id("two-person-rule") + store CHECK)
//!  active ──overlay──> effective Desired ──converge──> host      (every step audited)
//!  expires_at passes → reconciler marks it expired → converge back to the revision
//! ```
//!
//! | kind | parameters | effect while active |
//! |---|---|---|
//! | `quota-raise` | `{"memory": "2Gi", "pids": 1024, "cpuWeight": 400, "cpu": "2"}` (any of them) | the tenant's quota takes these values (never lower than the revision's) |
//! | `egress-exception` | `{"cidr": "203.0.113.0/24", "ports": ["443/tcp"]}` | one more egress rule of the tenant, so the compiled firewall opens it (beyond the host only with the platform's `nat: true`; without, the firewall narrows it and says so, like any rule) |
//! | `operator-exec` | `{}` | the requester (by token subject) may exec into that tenant's workloads |
//!
//! [`overlay`] applies grants by editing the canonical objects and loading them again
//! with the spec's own validation, so an elevation can never produce a state the
//! spec would refuse. A grant that no longer validates against a later revision is
//! skipped (the revision, stricter, stays in force) and reported.

use bulkhead_spec::Desired;
use bulkhead_store::{Elevation, Tightening};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Longest elevation: elevations are for incidents and one-off jobs, not standing
/// rights.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// What can be elevated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ElevationKind {
    /// Raise the tenant's quota (memory, pids, cpu, cpu weight).
    QuotaRaise,
    /// Let the requester exec into the tenant's workloads.
    OperatorExec,
    /// Open one more egress destination (CIDR and ports) for the tenant.
    EgressException,
}

impl ElevationKind {
    /// The name in the store, the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ElevationKind::QuotaRaise => "quota-raise",
            ElevationKind::OperatorExec => "operator-exec",
            ElevationKind::EgressException => "egress-exception",
        }
    }

    /// Parses a kind name.
    pub fn parse(text: &str) -> Option<ElevationKind> {
        [
            ElevationKind::QuotaRaise,
            ElevationKind::OperatorExec,
            ElevationKind::EgressException,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// What `POST /elevations` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElevationRequest {
    /// What to elevate.
    pub kind: ElevationKind,
    /// The tenant.
    pub tenant: String,
    /// Kind-specific parameters (see the table in the docs).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// Why: recorded with the request and in the audit log.
    pub reason: String,
    /// Lifetime once approved, seconds (at most 7 days).
    pub ttl_seconds: u64,
}

/// An approval or denial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// The decider's note.
    #[serde(default)]
    pub note: Option<String>,
}

/// An elevation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElevationView {
    /// Public id.
    pub id: String,
    /// quota-raise, operator-exec or egress-exception.
    pub kind: String,
    /// The tenant.
    pub tenant: String,
    /// Parameters.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// Why.
    pub reason: String,
    /// Lifetime once approved, seconds.
    pub ttl_seconds: i64,
    /// Who asked (token subject).
    pub requester: String,
    /// Unix seconds.
    pub requested_at: i64,
    /// pending, active, denied, expired or revoked.
    pub status: String,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// Unix seconds.
    pub decided_at: Option<i64>,
    /// The decider's note.
    pub note: Option<String>,
    /// When an approved elevation stops, unix seconds.
    pub expires_at: Option<i64>,
    /// When it ended, unix seconds.
    pub ended_at: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
}

impl From<Elevation> for ElevationView {
    fn from(e: Elevation) -> Self {
        ElevationView {
            parameters: serde_json::from_str(&e.parameters).unwrap_or(Value::Null),
            id: e.id,
            kind: e.kind,
            tenant: e.tenant,
            reason: e.reason,
            ttl_seconds: e.ttl_seconds,
            requester: e.requester,
            requested_at: e.requested_at,
            status: e.status,
            decided_by: e.decided_by,
            decided_at: e.decided_at,
            note: e.note,
            expires_at: e.expires_at,
            ended_at: e.ended_at,
            ended_by: e.ended_by,
        }
    }
}

/// An approved change: the outcome of a decision or revocation and what the host did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElevationChange {
    /// The elevation now.
    pub elevation: ElevationView,
    /// Host actions the converge took (each audited).
    pub host_actions: Vec<String>,
}

/// A grant that could not be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The elevation or tightening (`tightening/<tenant>`).
    pub id: String,
    /// Why.
    pub why: String,
}

const QUOTA_FIELDS: [&str; 4] = ["memory", "pids", "cpuWeight", "cpu"];

/// Checks a request's parameters for its kind (shape only; [`overlay`] checks them
/// against the desired state). One message per problem.
pub fn check_parameters(kind: ElevationKind, parameters: &Value) -> Result<(), Vec<String>> {
    let empty = serde_json::Map::new();
    let object = match parameters {
        Value::Null => &empty,
        Value::Object(map) => map,
        _ => return Err(vec!["parameters: expected an object".to_owned()]),
    };
    let mut problems = Vec::new();
    match kind {
        ElevationKind::QuotaRaise => {
            if object.is_empty() {
                problems.push(format!(
                    "parameters: expected at least one of {}",
                    QUOTA_FIELDS.join(", ")
                ));
            }
            for key in object.keys() {
                if !QUOTA_FIELDS.contains(&key.as_str()) {
                    problems.push(format!(
                        "parameters.{key}: not a quota a raise may change (expected one of {})",
                        QUOTA_FIELDS.join(", ")
                    ));
                }
            }
        }
        ElevationKind::EgressException => {
            match object.get("cidr") {
                Some(Value::String(_)) => {}
                _ => problems.push(
                    "parameters.cidr: expected a CIDR string, e.g. 203.0.113.0/24".to_owned(),
                ),
            }
            match object.get("ports") {
                None => {}
                Some(Value::Array(ports)) if ports.iter().all(Value::is_string) => {}
                Some(_) => problems.push(
                    "parameters.ports: expected a list of port specs, e.g. [\"443/tcp\"]"
                        .to_owned(),
                ),
            }
            for key in object.keys() {
                if key != "cidr" && key != "ports" {
                    problems.push(format!("parameters.{key}: unknown (expected cidr, ports)"));
                }
            }
        }
        ElevationKind::OperatorExec => {
            if !object.is_empty() {
                problems.push("parameters: operator-exec takes none (expected {})".to_owned());
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One grant as an edit of a tenant's canonical object.
fn edit(tenant: &mut Value, kind: ElevationKind, parameters: &Value) -> Result<(), String> {
    let spec = tenant
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or("the tenant has no spec")?;
    match kind {
        ElevationKind::QuotaRaise => {
            let quota = spec
                .entry("quota")
                .or_insert_with(|| Value::Object(serde_json::Map::new()))
                .as_object_mut()
                .ok_or("spec.quota is not a mapping")?;
            for field in QUOTA_FIELDS {
                if let Some(value) = parameters.get(field) {
                    quota.insert(field.to_owned(), value.clone());
                }
            }
        }
        ElevationKind::EgressException => {
            let network = spec
                .entry("network")
                .or_insert_with(|| Value::Object(serde_json::Map::new()))
                .as_object_mut()
                .ok_or("spec.network is not a mapping")?;
            let egress = network
                .entry("egress")
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .ok_or("spec.network.egress is not a list")?;
            let mut rule = serde_json::Map::new();
            rule.insert(
                "to".to_owned(),
                serde_json::json!([{ "cidr": parameters.get("cidr").cloned().unwrap_or(Value::Null) }]),
            );
            if let Some(ports) = parameters.get("ports") {
                rule.insert("ports".to_owned(), ports.clone());
            }
            egress.push(Value::Object(rule));
        }
        ElevationKind::OperatorExec => {}
    }
    Ok(())
}

/// The desired state as text, with `edits` applied to tenants' canonical objects.
fn edited(
    desired: &Desired,
    edits: &[(&str, ElevationKind, &Value)],
) -> Result<Desired, Vec<String>> {
    let objects = desired
        .canonical_objects()
        .map_err(|e| vec![format!("cannot render the desired state: {e}")])?;
    let mut text = String::new();
    for object in objects {
        let mine: Vec<_> = edits
            .iter()
            .filter(|(tenant, _, _)| object.kind == "Tenant" && object.name == *tenant)
            .collect();
        text.push_str("---\n");
        if mine.is_empty() {
            text.push_str(&object.yaml);
            continue;
        }
        let mut value: Value = serde_saphyr::from_str(&object.yaml)
            .map_err(|e| vec![format!("tenant {}: cannot read it back: {e}", object.name)])?;
        for (_, kind, parameters) in mine {
            edit(&mut value, *kind, parameters)
                .map_err(|e| vec![format!("tenant {}: {e}", object.name)])?;
        }
        // JSON is YAML: the spec's loader validates it like any input.
        let json = serde_json::to_string(&value).map_err(|e| vec![e.to_string()])?;
        text.push_str(&json);
        text.push('\n');
    }
    bulkhead_spec::load_str("<elevation>", &text)
        .map_err(|diagnostics| diagnostics.iter().map(ToString::to_string).collect())
}

fn quota_not_lowered(base: &Desired, raised: &Desired, tenant: &str) -> Result<(), String> {
    let (Some(before), Some(after)) = (
        base.tenants.iter().find(|(n, _)| n.as_str() == tenant),
        raised.tenants.iter().find(|(n, _)| n.as_str() == tenant),
    ) else {
        return Err(format!("no tenant named {tenant:?}"));
    };
    let (b, a) = (&before.1.spec.quota, &after.1.spec.quota);
    let mut lowered = Vec::new();
    if a.memory.get() < b.memory.get() {
        lowered.push("memory");
    }
    if a.pids < b.pids {
        lowered.push("pids");
    }
    if a.cpu_weight < b.cpu_weight {
        lowered.push("cpuWeight");
    }
    match (b.cpu, a.cpu) {
        (None, Some(_)) => lowered.push("cpu"),
        (Some(b), Some(a)) if a.millis() < b.millis() => lowered.push("cpu"),
        _ => {}
    }
    if lowered.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "a raise may not lower the tenant's {} (expected values at or above the revision's)",
            lowered.join(", ")
        ))
    }
}

/// Checks that a request applies to `desired` (the tenant exists; the edit validates;
/// a quota raise raises). One message per problem.
pub fn check_against(
    desired: Option<&Desired>,
    request: &ElevationRequest,
) -> Result<(), Vec<String>> {
    check_parameters(request.kind, &request.parameters)?;
    if request.reason.trim().is_empty() {
        return Err(vec![
            "reason: expected why the elevation is needed".to_owned(),
        ]);
    }
    if request.ttl_seconds == 0 || request.ttl_seconds > MAX_TTL_SECONDS {
        return Err(vec![format!(
            "ttl_seconds: {} is out of range (expected 1 to {MAX_TTL_SECONDS})",
            request.ttl_seconds
        )]);
    }
    let Some(desired) = desired.filter(|d| d.tenants.keys().any(|n| n.as_str() == request.tenant))
    else {
        return Err(vec![format!(
            "tenant: no tenant named {:?}",
            request.tenant
        )]);
    };
    if request.kind == ElevationKind::OperatorExec {
        return Ok(());
    }
    let raised = edited(
        desired,
        &[(request.tenant.as_str(), request.kind, &request.parameters)],
    )?;
    if request.kind == ElevationKind::QuotaRaise {
        quota_not_lowered(desired, &raised, &request.tenant).map_err(|e| vec![e])?;
    }
    Ok(())
}

/// The desired state with the active `grants` and `tightenings` applied. Each one is
/// applied on its own first; one that does not validate (or, for a raise, would now
/// lower a quota a later revision raised) is skipped and returned, so the revision's
/// stricter value stays in force. Tightenings only ever lower a cpu weight.
pub fn overlay(
    desired: &Desired,
    grants: &[Elevation],
    tightenings: &[Tightening],
) -> (Desired, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut parsed: Vec<(String, String, ElevationKind, Value)> = Vec::new();
    for grant in grants {
        let Some(kind) = ElevationKind::parse(&grant.kind) else {
            skipped.push(Skipped {
                id: grant.id.clone(),
                why: format!("unknown kind {:?}", grant.kind),
            });
            continue;
        };
        if kind == ElevationKind::OperatorExec {
            continue;
        }
        let parameters: Value = match serde_json::from_str(&grant.parameters) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(Skipped {
                    id: grant.id.clone(),
                    why: format!("parameters: {e}"),
                });
                continue;
            }
        };
        let alone = edited(desired, &[(grant.tenant.as_str(), kind, &parameters)]).and_then(|d| {
            if kind == ElevationKind::QuotaRaise {
                quota_not_lowered(desired, &d, &grant.tenant).map_err(|e| vec![e])
            } else {
                Ok(())
            }
        });
        match alone {
            Ok(()) => parsed.push((grant.id.clone(), grant.tenant.clone(), kind, parameters)),
            Err(why) => skipped.push(Skipped {
                id: grant.id.clone(),
                why: why.join("; "),
            }),
        }
    }
    for t in tightenings {
        let current = desired
            .tenants
            .iter()
            .find(|(n, _)| n.as_str() == t.tenant)
            .map(|(_, tenant)| tenant.spec.quota.cpu_weight);
        match current {
            Some(weight) if t.cpu_weight < weight => parsed.push((
                format!("tightening/{}", t.tenant),
                t.tenant.clone(),
                ElevationKind::QuotaRaise,
                serde_json::json!({ "cpuWeight": t.cpu_weight }),
            )),
            Some(_) => {}
            None => skipped.push(Skipped {
                id: format!("tightening/{}", t.tenant),
                why: format!("no tenant named {:?}", t.tenant),
            }),
        }
    }
    if parsed.is_empty() {
        return (desired.clone(), skipped);
    }
    let edits: Vec<(&str, ElevationKind, &Value)> = parsed
        .iter()
        .map(|(_, tenant, kind, parameters)| (tenant.as_str(), *kind, parameters))
        .collect();
    match edited(desired, &edits) {
        Ok(effective) => (effective, skipped),
        Err(why) => {
            // Together they do not validate (e.g. two egress rules that overlap):
            // keep the revision and say so for each.
            skipped.extend(parsed.into_iter().map(|(id, ..)| Skipped {
                id,
                why: why.join("; "),
            }));
            (desired.clone(), skipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata: { name: p }
spec:
  network: { tenantRange: 10.250.0.0/24 }
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: web }
spec:
  quota: { memory: 1Gi, pids: 512, cpuWeight: 100 }
";

    fn grant(kind: &str, parameters: &str) -> Elevation {
        Elevation {
            id: "e1".to_owned(),
            kind: kind.to_owned(),
            tenant: "web".to_owned(),
            parameters: parameters.to_owned(),
            reason: "r".to_owned(),
            ttl_seconds: 60,
            requester: "a".to_owned(),
            requester_token: "t".to_owned(),
            requested_at: 0,
            status: "active".to_owned(),
            decided_by: Some("b".to_owned()),
            decided_at: Some(1),
            note: None,
            expires_at: Some(61),
            ended_at: None,
            ended_by: None,
        }
    }

    fn web(d: &Desired) -> &bulkhead_spec::Tenant {
        d.tenants.values().next().unwrap()
    }

    #[test]
    fn a_quota_raise_changes_only_that_quota() {
        let base = bulkhead_spec::load_str("b.yaml", BASE).unwrap();
        let (effective, skipped) = overlay(
            &base,
            &[grant("quota-raise", r#"{"memory":"2Gi","pids":1024}"#)],
            &[],
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(web(&effective).spec.quota.memory.get(), 2 << 30);
        assert_eq!(web(&effective).spec.quota.pids, 1024);
        assert_eq!(web(&effective).spec.quota.cpu_weight, 100);
    }

    #[test]
    fn an_egress_exception_adds_one_rule() {
        let base = bulkhead_spec::load_str("b.yaml", BASE).unwrap();
        let (effective, skipped) = overlay(
            &base,
            &[grant(
                "egress-exception",
                r#"{"cidr":"203.0.113.0/24","ports":["443/tcp"]}"#,
            )],
            &[],
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(web(&effective).spec.network.egress.len(), 1);
        assert_eq!(web(&base).spec.network.egress.len(), 0);
    }

    #[test]
    fn a_lowering_or_invalid_grant_is_skipped_and_the_revision_stays() {
        let base = bulkhead_spec::load_str("b.yaml", BASE).unwrap();
        let (effective, skipped) =
            overlay(&base, &[grant("quota-raise", r#"{"memory":"512Mi"}"#)], &[]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(effective, base);
        let (effective, skipped) =
            overlay(&base, &[grant("quota-raise", r#"{"memory":"12Gx"}"#)], &[]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].why.contains("memory"), "{}", skipped[0].why);
        assert_eq!(effective, base);
    }

    #[test]
    fn a_tightening_only_lowers_the_weight() {
        let base = bulkhead_spec::load_str("b.yaml", BASE).unwrap();
        let t = |w| Tightening {
            tenant: "web".to_owned(),
            cpu_weight: w,
            reason: "cpu".to_owned(),
            started_at: 0,
            until: 10,
        };
        let (effective, _) = overlay(&base, &[], &[t(10)]);
        assert_eq!(web(&effective).spec.quota.cpu_weight, 10);
        let (effective, _) = overlay(&base, &[], &[t(500)]);
        assert_eq!(web(&effective).spec.quota.cpu_weight, 100);
    }

    #[test]
    fn requests_are_checked_before_they_are_stored() {
        let base = bulkhead_spec::load_str("b.yaml", BASE).unwrap();
        let request = |kind, parameters: &str| ElevationRequest {
            kind,
            tenant: "web".to_owned(),
            parameters: serde_json::from_str(parameters).unwrap(),
            reason: "incident 7".to_owned(),
            ttl_seconds: 600,
        };
        assert!(
            check_against(
                Some(&base),
                &request(ElevationKind::QuotaRaise, r#"{"memory":"4Gi"}"#)
            )
            .is_ok()
        );
        assert!(
            check_against(
                Some(&base),
                &request(ElevationKind::QuotaRaise, r#"{"memory":"1Mi"}"#)
            )
            .is_err()
        );
        assert!(
            check_against(
                Some(&base),
                &request(ElevationKind::QuotaRaise, r#"{"storage":"9Gi"}"#)
            )
            .is_err()
        );
        assert!(check_against(Some(&base), &request(ElevationKind::OperatorExec, "{}")).is_ok());
        assert!(
            check_against(
                Some(&base),
                &request(
                    ElevationKind::EgressException,
                    r#"{"cidr":"10.250.0.0/25"}"#
                )
            )
            .is_err(),
            "inside the tenant range"
        );
        let mut other = request(ElevationKind::OperatorExec, "{}");
        other.tenant = "nope".to_owned();
        assert!(check_against(Some(&base), &other).is_err());
    }
}
