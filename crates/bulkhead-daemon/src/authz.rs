//! Authorization: every request is a (principal, [`Permission`], [`Resource`]) triple
//! that the checked-in Cedar policies (`policies/bulkhead.cedar`, validated against
//! `policies/bulkhead.cedarschema` when the daemon starts) allow or deny. Deny is the
//! default. The daemon audits every denial.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;

use cedar_policy::{
    Authorizer as CedarAuthorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The policies, compiled into the binary so a deployed daemon cannot drift from the
/// reviewed file.
pub const POLICIES: &str = include_str!("../policies/bulkhead.cedar");
/// The schema the policies are validated against.
pub const SCHEMA: &str = include_str!("../policies/bulkhead.cedarschema");

/// Roles of the control plane (the platform file's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    PlatformAdmin,
    /// Own tenant's workloads, logs and exec.
    TenantAdmin,
    /// Read-only on own tenant.
    TenantViewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::PlatformAdmin, Role::TenantAdmin, Role::TenantViewer];

    /// The name in tokens, policies and the platform file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantViewer => "tenant-viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// True for roles bound to one tenant.
    pub fn is_tenant_role(self) -> bool {
        self != Role::PlatformAdmin
    }
}

/// Who is asking: an authenticated token holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Principal {
    /// The token's public id.
    pub token_id: String,
    /// Who holds the token.
    pub subject: String,
    /// What it grants.
    pub role: Role,
    /// The tenant a tenant role is bound to.
    pub tenant: Option<String>,
    /// Tenants an approved, unexpired operator-exec elevation of this subject opens.
    #[serde(skip)]
    pub exec_grants: Vec<String>,
}

impl Principal {
    /// How the principal appears in the audit log.
    pub fn actor(&self) -> String {
        format!("{} (token {})", self.subject, self.token_id)
    }
}

/// An operation, named as in the Cedar policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read a tenant (and list it).
    TenantGet,
    /// Create or change a Tenant object.
    TenantApply,
    /// Suspend a tenant.
    TenantSuspend,
    /// Resume a tenant.
    TenantResume,
    /// Offboard a tenant.
    TenantDelete,
    /// List a tenant's workloads and their state.
    WorkloadList,
    /// Create or change a tenant's Workload objects.
    WorkloadApply,
    /// Read a workload's logs.
    WorkloadLogs,
    /// Run a command in a workload's cgroup and tenant's sandbox.
    WorkloadExec,
    /// Read the platform object.
    PlatformRead,
    /// Change the platform object.
    PlatformApply,
    /// List tokens.
    TokenList,
    /// Create a token.
    TokenCreate,
    /// Revoke a token.
    TokenRevoke,
    /// Read the audit log.
    AuditRead,
    /// Scrape metrics.
    MetricsRead,
    /// List elevations.
    ElevationList,
    /// Ask for an elevation.
    ElevationRequest,
    /// End an active elevation early.
    ElevationRevoke,
    /// Approve someone else's elevation.
    ElevationApprove,
    /// Deny someone else's elevation.
    ElevationDeny,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 21] = [
        Permission::TenantGet,
        Permission::TenantApply,
        Permission::TenantSuspend,
        Permission::TenantResume,
        Permission::TenantDelete,
        Permission::WorkloadList,
        Permission::WorkloadApply,
        Permission::WorkloadLogs,
        Permission::WorkloadExec,
        Permission::PlatformRead,
        Permission::PlatformApply,
        Permission::TokenList,
        Permission::TokenCreate,
        Permission::TokenRevoke,
        Permission::AuditRead,
        Permission::MetricsRead,
        Permission::ElevationList,
        Permission::ElevationRequest,
        Permission::ElevationRevoke,
        Permission::ElevationApprove,
        Permission::ElevationDeny,
    ];

    /// The Cedar action id (and the audit log's action).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TenantGet => "tenant.get",
            Permission::TenantApply => "tenant.apply",
            Permission::TenantSuspend => "tenant.suspend",
            Permission::TenantResume => "tenant.resume",
            Permission::TenantDelete => "tenant.delete",
            Permission::WorkloadList => "workload.list",
            Permission::WorkloadApply => "workload.apply",
            Permission::WorkloadLogs => "workload.logs",
            Permission::WorkloadExec => "workload.exec",
            Permission::PlatformRead => "platform.read",
            Permission::PlatformApply => "platform.apply",
            Permission::TokenList => "token.list",
            Permission::TokenCreate => "token.create",
            Permission::TokenRevoke => "token.revoke",
            Permission::AuditRead => "audit.read",
            Permission::MetricsRead => "metrics.read",
            Permission::ElevationList => "elevation.list",
            Permission::ElevationRequest => "elevation.request",
            Permission::ElevationRevoke => "elevation.revoke",
            Permission::ElevationApprove => "elevation.approve",
            Permission::ElevationDeny => "elevation.deny",
        }
    }

    /// True when the permission is about one tenant (else the platform).
    pub fn is_tenant_scoped(self) -> bool {
        self.as_str().starts_with("tenant.") || self.as_str().starts_with("workload.")
    }

    /// True when the permission is about one elevation (approve, deny).
    pub fn is_elevation_scoped(self) -> bool {
        matches!(
            self,
            Permission::ElevationApprove | Permission::ElevationDeny
        )
    }
}

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The installation itself.
    Platform,
    /// One tenant (and everything of it).
    Tenant(String),
    /// One elevation request.
    Elevation {
        /// Its id.
        id: String,
        /// Who asked (a token subject).
        requester: String,
        /// The tenant it is about.
        tenant: String,
    },
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Platform => f.write_str("platform"),
            Resource::Tenant(name) => write!(f, "tenant/{name}"),
            Resource::Elevation { id, .. } => write!(f, "elevation/{id}"),
        }
    }
}

/// Why the policies could not be loaded (a build defect, caught by a test).
#[derive(Debug, thiserror::Error)]
pub enum LoadPoliciesError {
    /// The schema does not parse.
    #[error("policies/bulkhead.cedarschema: {0}")]
    Schema(String),
    /// The policies do not parse.
    #[error("policies/bulkhead.cedar: {0}")]
    Parse(String),
    /// The policies do not validate against the schema.
    #[error("policies/bulkhead.cedar does not validate against the schema: {0}")]
    Validate(String),
}

/// A decision with the policies that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Allowed?
    pub allowed: bool,
    /// Ids of the policies that determined it (empty for the default deny).
    pub reasons: Vec<String>,
}

/// The compiled policies.
#[derive(Debug)]
pub struct Authorizer {
    policies: PolicySet,
    schema: Schema,
    cedar: CedarAuthorizer,
}

fn type_name(name: &str) -> EntityTypeName {
    // The names are constants of this module, covered by the tests.
    #[allow(clippy::unwrap_used)]
    EntityTypeName::from_str(name).unwrap()
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(kind), EntityId::new(id))
}

impl Authorizer {
    /// Loads and validates the checked-in policies.
    pub fn new() -> Result<Authorizer, LoadPoliciesError> {
        Authorizer::from_text(POLICIES)
    }

    /// Loads `policies` (validated against the checked-in schema).
    pub fn from_text(policies: &str) -> Result<Authorizer, LoadPoliciesError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| LoadPoliciesError::Schema(e.to_string()))?;
        let policies =
            PolicySet::from_str(policies).map_err(|e| LoadPoliciesError::Parse(e.to_string()))?;
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation
                .validation_errors()
                .map(ToString::to_string)
                .collect();
            return Err(LoadPoliciesError::Validate(errors.join("; ")));
        }
        Ok(Authorizer {
            policies,
            schema,
            cedar: CedarAuthorizer::new(),
        })
    }

    /// Is `principal` allowed `permission` on `resource`?
    pub fn decide(
        &self,
        principal: &Principal,
        permission: Permission,
        resource: &Resource,
    ) -> Decided {
        let deny = |why: String| Decided {
            allowed: false,
            reasons: vec![why],
        };
        let user = uid("Bulkhead::User", &principal.token_id);
        let mut attrs = HashMap::new();
        attrs.insert(
            "role".to_owned(),
            RestrictedExpression::new_string(principal.role.as_str().to_owned()),
        );
        attrs.insert(
            "subject".to_owned(),
            RestrictedExpression::new_string(principal.subject.clone()),
        );
        attrs.insert(
            "execGrants".to_owned(),
            RestrictedExpression::new_set(
                principal
                    .exec_grants
                    .iter()
                    .map(|t| RestrictedExpression::new_entity_uid(uid("Bulkhead::Tenant", t))),
            ),
        );
        if let Some(tenant) = &principal.tenant {
            attrs.insert(
                "tenant".to_owned(),
                RestrictedExpression::new_entity_uid(uid("Bulkhead::Tenant", tenant)),
            );
        }
        let (resource_uid, resource_entity) = match resource {
            Resource::Platform => {
                let id = uid("Bulkhead::Platform", "platform");
                (
                    id.clone(),
                    Ok::<_, String>(Entity::new_no_attrs(id, HashSet::new())),
                )
            }
            Resource::Tenant(name) => {
                let id = uid("Bulkhead::Tenant", name);
                (
                    id.clone(),
                    Ok::<_, String>(Entity::new_no_attrs(id, HashSet::new())),
                )
            }
            Resource::Elevation {
                id,
                requester,
                tenant,
            } => {
                let id = uid("Bulkhead::Elevation", id);
                let attrs = HashMap::from([
                    (
                        "requester".to_owned(),
                        RestrictedExpression::new_string(requester.clone()),
                    ),
                    (
                        "tenant".to_owned(),
                        RestrictedExpression::new_entity_uid(uid("Bulkhead::Tenant", tenant)),
                    ),
                ]);
                (
                    id.clone(),
                    Entity::new(id, attrs, HashSet::new()).map_err(|e| e.to_string()),
                )
            }
        };
        let entities = Entity::new(user.clone(), attrs, HashSet::new())
            .map_err(|e| e.to_string())
            .and_then(|entity| resource_entity.map(|resource| (entity, resource)))
            .and_then(|(entity, resource_entity)| {
                Entities::from_entities([entity, resource_entity], Some(&self.schema))
                    .map_err(|e| e.to_string())
            });
        let entities = match entities {
            Ok(entities) => entities,
            Err(e) => return deny(format!("entities: {e}")),
        };
        let action = uid("Bulkhead::Action", permission.as_str());
        let request = match Request::new(
            user,
            action,
            resource_uid,
            Context::empty(),
            Some(&self.schema),
        ) {
            Ok(request) => request,
            // e.g. a platform action on a tenant: the schema rules it out.
            Err(e) => return deny(format!("request: {e}")),
        };
        let response = self
            .cedar
            .is_authorized(&request, &self.policies, &entities);
        // Name policies by their @id annotation, as written in the file.
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| {
                self.policies
                    .policy(id)
                    .and_then(|p| p.annotation("id"))
                    .map_or_else(|| id.to_string(), str::to_owned)
            })
            .collect();
        reasons.extend(
            response
                .diagnostics()
                .errors()
                .map(|e| format!("error: {e}")),
        );
        Decided {
            allowed: response.decision() == Decision::Allow,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            token_id: "0011223344556677".to_owned(),
            subject: "test".to_owned(),
            role,
            tenant: tenant.map(str::to_owned),
            exec_grants: Vec::new(),
        }
    }

    /// The matrix written out by hand, independently of the policy text.
    fn expected(role: Role, permission: Permission, own: bool) -> bool {
        use Permission::*;
        match role {
            // Exec into a tenant needs an approved operator-exec elevation.
            Role::PlatformAdmin => permission != WorkloadExec,
            Role::TenantAdmin => {
                own && matches!(
                    permission,
                    TenantGet | WorkloadList | WorkloadApply | WorkloadLogs | WorkloadExec
                )
            }
            Role::TenantViewer => {
                own && matches!(permission, TenantGet | WorkloadList | WorkloadLogs)
            }
        }
    }

    #[test]
    fn the_checked_in_policies_validate() {
        Authorizer::new().unwrap();
    }

    #[test]
    fn every_role_action_and_tenant_decides_as_documented() {
        let authz = Authorizer::new().unwrap();
        for role in Role::ALL {
            let who = principal(role, role.is_tenant_role().then_some("a"));
            for permission in Permission::ALL {
                let cases: Vec<(Resource, bool)> = if permission.is_tenant_scoped() {
                    vec![
                        (Resource::Tenant("a".to_owned()), true),
                        (Resource::Tenant("b".to_owned()), false),
                    ]
                } else if permission.is_elevation_scoped() {
                    // Someone else's request (the requester's own is tested below).
                    vec![(elevation("someone-else", "a"), false)]
                } else {
                    vec![(Resource::Platform, false)]
                };
                for (resource, own) in cases {
                    let decided = authz.decide(&who, permission, &resource);
                    assert_eq!(
                        decided.allowed,
                        expected(role, permission, own),
                        "{} {} {resource}: {:?}",
                        role.as_str(),
                        permission.as_str(),
                        decided.reasons
                    );
                }
            }
        }
    }

    fn elevation(requester: &str, tenant: &str) -> Resource {
        Resource::Elevation {
            id: "e1".to_owned(),
            requester: requester.to_owned(),
            tenant: tenant.to_owned(),
        }
    }

    #[test]
    fn nobody_decides_their_own_elevation() {
        let authz = Authorizer::new().unwrap();
        let who = principal(Role::PlatformAdmin, None);
        for permission in [Permission::ElevationApprove, Permission::ElevationDeny] {
            let decided = authz.decide(&who, permission, &elevation("test", "a"));
            assert!(!decided.allowed);
            assert_eq!(decided.reasons, vec!["two-person-rule".to_owned()]);
            assert!(
                authz
                    .decide(&who, permission, &elevation("other", "a"))
                    .allowed
            );
        }
    }

    #[test]
    fn operator_exec_opens_exactly_the_granted_tenant() {
        let authz = Authorizer::new().unwrap();
        let mut who = principal(Role::PlatformAdmin, None);
        let exec = |who: &Principal, t: &str| {
            authz
                .decide(
                    who,
                    Permission::WorkloadExec,
                    &Resource::Tenant(t.to_owned()),
                )
                .allowed
        };
        assert!(!exec(&who, "a"));
        who.exec_grants = vec!["a".to_owned()];
        assert!(exec(&who, "a"));
        assert!(!exec(&who, "b"));
        // A tenant role cannot use a grant, even a forged one.
        let mut viewer = principal(Role::TenantViewer, Some("a"));
        viewer.exec_grants = vec!["a".to_owned()];
        assert!(!exec(&viewer, "a"));
    }

    #[test]
    fn a_tenant_role_without_a_tenant_gets_nothing() {
        let authz = Authorizer::new().unwrap();
        let who = principal(Role::TenantAdmin, None);
        for permission in Permission::ALL {
            for resource in [
                Resource::Platform,
                Resource::Tenant("a".to_owned()),
                elevation("x", "a"),
            ] {
                assert!(!authz.decide(&who, permission, &resource).allowed);
            }
        }
    }

    #[test]
    fn the_forbids_hold_even_against_a_permit_all() {
        let text = format!("{POLICIES}\npermit (principal, action, resource);\n");
        let authz = Authorizer::from_text(&text).unwrap();
        let who = principal(Role::TenantAdmin, Some("a"));
        assert!(
            !authz
                .decide(
                    &who,
                    Permission::TenantDelete,
                    &Resource::Tenant("b".to_owned())
                )
                .allowed
        );
        assert!(
            !authz
                .decide(&who, Permission::TokenCreate, &Resource::Platform)
                .allowed
        );
    }
}
