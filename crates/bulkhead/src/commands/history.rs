//! `bulkhead history`.

use anyhow::Context as _;
use bulkhead_store::{ObjectChange, RevisionId};

use crate::cli::{Global, HistoryAction};
use crate::context::{self, EXIT_OK, Outcome};
use crate::output;

pub fn history(global: &Global, action: Option<HistoryAction>) -> Outcome {
    let store = context::required_store(global)?;
    match action.unwrap_or(HistoryAction::List) {
        HistoryAction::List => {
            let revisions = store.list_revisions().context("cannot list revisions")?;
            output::emit(global.output, &revisions, || {
                output::table(
                    &["revision", "time", "actor", "objects", "digest", "message"],
                    revisions
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.to_string(),
                                r.created_at.clone(),
                                r.actor.clone(),
                                r.object_count.to_string(),
                                r.digest.chars().take(12).collect(),
                                r.message.clone(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        HistoryAction::Show { revision } => {
            let revision = store
                .revision(RevisionId(revision))
                .with_context(|| format!("cannot read revision {revision}"))?;
            output::emit(global.output, &revision, || {
                let mut text = format!(
                    "# revision {} at {} by {} ({})\n",
                    revision.id, revision.created_at, revision.actor, revision.message
                );
                for object in &revision.objects {
                    text.push_str("---\n");
                    text.push_str(&object.document);
                }
                text
            })?;
        }
        HistoryAction::Diff { from, to } => {
            let diff = store
                .diff_revisions(RevisionId(from), RevisionId(to))
                .context("cannot diff revisions")?;
            output::emit(global.output, &diff, || {
                let mut text = String::new();
                for change in &diff.changes {
                    match change {
                        ObjectChange::Added { key, .. } => text.push_str(&format!("+ {key}\n")),
                        ObjectChange::Removed { key, .. } => text.push_str(&format!("- {key}\n")),
                        ObjectChange::Changed { unified_diff, .. } => text.push_str(unified_diff),
                    }
                }
                if diff.changes.is_empty() {
                    text.push_str(&format!(
                        "revisions {from} and {to} hold the same objects\n"
                    ));
                }
                text
            })?;
        }
    }
    Ok(EXIT_OK)
}
