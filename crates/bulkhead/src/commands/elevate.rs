//! `bulkhead elevate request | approve | deny | list | revoke`: elevated access through
//! the running daemon (its unix socket), with the caller's own bearer token
//! (`--token` or `BULKHEAD_TOKEN`). Unlike `token`, this never writes the store
//! directly: the two-person rule needs to know who is asking, and only a token says
//! that; a root shell's `--actor` would not.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bulkhead_daemon::elevate::{ElevationChange, ElevationKind, ElevationRequest, ElevationView};
use serde_json::Value;

use crate::cli::{ElevateAction, Global};
use crate::commands::token::parse_ttl;
use crate::context::{self, EXIT_OK, Failure, Outcome};
use crate::output;

/// Exit code when the daemon refuses (401, 403, 404, 409, 422).
const EXIT_REFUSED: u8 = 3;

/// One request over the daemon's socket: status and JSON body.
fn call(
    socket: &PathBuf,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Failure> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (expected `bulkhead serve` to be running)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .context("cannot set a timeout")?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bulkhead\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .context("cannot send the request")?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .context("cannot read the response")?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the daemon answered something that is not HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    Ok((status, value))
}

fn row(e: &ElevationView) -> Vec<String> {
    vec![
        e.id.clone(),
        e.kind.clone(),
        e.tenant.clone(),
        e.status.clone(),
        e.requester.clone(),
        e.decided_by.clone().unwrap_or_default(),
        e.expires_at.map(|t| t.to_string()).unwrap_or_default(),
        e.reason.clone(),
    ]
}

const HEADER: [&str; 8] = [
    "id",
    "kind",
    "tenant",
    "status",
    "requester",
    "decided by",
    "expires (unix)",
    "reason",
];

pub fn elevate(global: &Global, token: Option<String>, action: ElevateAction) -> Outcome {
    let instance = context::instance(global, None)?;
    let socket = instance.state_dir().join("api.sock");
    let token = token
        .or_else(|| std::env::var("BULKHEAD_TOKEN").ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no token (expected --token or BULKHEAD_TOKEN: elevations are decided by who holds a token, see `bulkhead token create`)"
            )
        })?;
    let (method, path, body) = match &action {
        ElevateAction::List => ("GET", "/elevations".to_owned(), None),
        ElevateAction::Request {
            kind,
            tenant,
            parameters,
            reason,
            ttl,
        } => {
            let kind = ElevationKind::parse(kind).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown kind {kind:?} (expected quota-raise, operator-exec or egress-exception)"
                )
            })?;
            let parameters: Value = match parameters {
                Some(text) => serde_json::from_str(text).with_context(|| {
                    format!("--parameters {text:?} is not JSON (expected e.g. '{{\"memory\": \"2Gi\"}}')")
                })?,
                None => Value::Object(serde_json::Map::new()),
            };
            let request = ElevationRequest {
                kind,
                tenant: tenant.clone(),
                parameters,
                reason: reason.clone(),
                ttl_seconds: parse_ttl(ttl).map_err(|e| anyhow::anyhow!(e))?,
            };
            let body = serde_json::to_value(&request).context("cannot encode the request")?;
            ("POST", "/elevations".to_owned(), Some(body))
        }
        ElevateAction::Approve { id, note } | ElevateAction::Deny { id, note } => {
            let verb = if matches!(action, ElevateAction::Approve { .. }) {
                "approve"
            } else {
                "deny"
            };
            (
                "POST",
                format!("/elevations/{id}/{verb}"),
                Some(serde_json::json!({ "note": note })),
            )
        }
        ElevateAction::Revoke { id } => ("POST", format!("/elevations/{id}/revoke"), None),
    };
    let (status, reply) = call(&socket, &token, method, &path, body.as_ref())?;
    if !(200..300).contains(&status) {
        let message = reply["message"]
            .as_str()
            .map_or_else(|| reply.to_string(), str::to_owned);
        let problems: Vec<&str> = reply["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        eprintln!("error: {message}");
        for p in problems {
            eprintln!("  {p}");
        }
        return Ok(if status >= 500 { 1 } else { EXIT_REFUSED });
    }
    match action {
        ElevateAction::List => {
            let all: Vec<ElevationView> =
                serde_json::from_value(reply).context("unexpected answer")?;
            output::emit(global.output, &all, || {
                output::table(&HEADER, all.iter().map(row).collect())
            })?;
        }
        ElevateAction::Request { .. } => {
            let e: ElevationView = serde_json::from_value(reply).context("unexpected answer")?;
            output::emit(global.output, &e, || {
                format!(
                    "{}\nelevation {} is pending: another platform admin approves it with `bulkhead elevate approve {}`\n",
                    e.id, e.id, e.id
                )
            })?;
        }
        _ => {
            let c: ElevationChange = serde_json::from_value(reply).context("unexpected answer")?;
            output::emit(global.output, &c, || {
                let mut text = output::table(&HEADER, vec![row(&c.elevation)]);
                for action in &c.host_actions {
                    text.push_str(&format!("host: {action}\n"));
                }
                text
            })?;
        }
    }
    Ok(EXIT_OK)
}
