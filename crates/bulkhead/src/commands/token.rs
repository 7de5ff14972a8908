//! `bulkhead token create | list | revoke`: the control plane's bearer tokens, straight
//! in the store (no daemon needed). Creating and revoking are audited.

use anyhow::Context as _;
use bulkhead_daemon::authz::Role;
use bulkhead_daemon::command::{ApiError, TokenRequest};

use crate::cli::{Global, TokenAction};
use crate::context::{self, EXIT_OK, Failure, Outcome};
use crate::output;

fn api(error: ApiError) -> Failure {
    Failure::Other(anyhow::anyhow!("{error}"))
}

/// `30m`, `12h`, `7d`, `90s` or plain seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 90s, 30m, 12h, 7d)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (expected s, m, h or d)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

pub fn token(global: &Global, action: TokenAction) -> Outcome {
    let instance = context::instance(global, None)?;
    let actor = context::actor(global);
    match action {
        TokenAction::Create {
            role,
            tenant,
            ttl,
            subject,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role {role:?} (expected platform-admin, tenant-admin or tenant-viewer)"
                )
            })?;
            let ttl_seconds = parse_ttl(&ttl).map_err(|e| anyhow::anyhow!(e))?;
            let mut store = context::open_store(&instance)?;
            let request = TokenRequest {
                subject: subject.unwrap_or_else(|| actor.clone()),
                role,
                tenant,
                ttl_seconds,
            };
            let created =
                bulkhead_daemon::daemon::create_token(&mut store, &actor, &request).map_err(api)?;
            output::emit(global.output, &created, || {
                format!(
                    "{}\n# token {} for {} ({}{}), expires at unix {}; shown once, keep it secret\n",
                    created.token,
                    created.info.id,
                    created.info.subject,
                    created.info.role,
                    created
                        .info
                        .tenant
                        .as_ref()
                        .map(|t| format!(" of {t}"))
                        .unwrap_or_default(),
                    created.info.expires_at
                )
            })?;
            Ok(EXIT_OK)
        }
        TokenAction::Revoke { id } => {
            let mut store = context::required_store(global)?;
            let revoked =
                bulkhead_daemon::daemon::revoke_token(&mut store, &actor, &id).map_err(api)?;
            output::emit(global.output, &revoked, || format!("revoked token {id}\n"))?;
            Ok(EXIT_OK)
        }
        TokenAction::List => {
            let store = context::required_store(global)?;
            let tokens = store.tokens().context("cannot read tokens")?;
            output::emit(global.output, &tokens, || {
                output::table(
                    &["id", "subject", "role", "tenant", "expires", "revoked"],
                    tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.subject.clone(),
                                t.role.clone(),
                                t.tenant.clone().unwrap_or_default(),
                                t.expires_at.to_string(),
                                t.revoked_at.map(|r| r.to_string()).unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            })?;
            Ok(EXIT_OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
