//! `bulkhead audit log` and `bulkhead audit verify`.

use anyhow::Context as _;
use bulkhead_store::AnchorCheck;

use crate::cli::{AuditAction, Global};
use crate::context::{self, EXIT_OK, EXIT_TAMPERED, Outcome};
use crate::output;

pub fn audit(global: &Global, action: AuditAction) -> Outcome {
    let store = context::required_store(global)?;
    match action {
        AuditAction::Log { after, limit } => {
            let records = store
                .audit_records(after, limit)
                .context("cannot read the audit log")?;
            output::emit(global.output, &records, || {
                output::table(
                    &[
                        "seq", "time", "actor", "action", "object", "result", "detail",
                    ],
                    records
                        .iter()
                        .map(|r| {
                            vec![
                                r.seq.to_string(),
                                r.time.clone(),
                                r.actor.clone(),
                                r.action.clone(),
                                r.object.clone(),
                                match r.refers_to {
                                    Some(intent) => format!("{} (of {intent})", r.result),
                                    None => r.result.clone(),
                                },
                                r.detail.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            })?;
            Ok(EXIT_OK)
        }
        AuditAction::Verify => {
            let verification = store
                .verify_audit()
                .context("cannot verify the audit log")?;
            let intact = verification.is_intact();
            output::emit(global.output, &verification, || {
                let mut text = String::new();
                if let Some(bad) = &verification.first_bad {
                    text.push_str(&format!(
                        "TAMPERED: first bad record is seq {} ({:?}): {}\n",
                        bad.seq, bad.kind, bad.reason
                    ));
                }
                if !verification.guards_present {
                    text.push_str("TAMPERED: the database triggers that refuse UPDATE and DELETE are missing\n");
                }
                match &verification.anchor {
                    AnchorCheck::Matches | AnchorCheck::NotKept | AnchorCheck::NotChecked => {}
                    AnchorCheck::DbAhead { anchor_seq, last_seq } => text.push_str(&format!(
                        "note: the head file names seq {anchor_seq}, the log ends at {last_seq} (a crash between commit and anchor update)\n"
                    )),
                    other => text.push_str(&format!("anchor: {other:?}\n")),
                }
                if intact {
                    text.push_str(&format!(
                        "audit log intact: {} records verified, chain and head anchor match\n",
                        verification.verified
                    ));
                }
                text
            })?;
            Ok(if intact { EXIT_OK } else { EXIT_TAMPERED })
        }
    }
}
