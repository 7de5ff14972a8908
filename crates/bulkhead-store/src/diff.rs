//! Comparing two revisions object by object.

use std::collections::BTreeMap;

use serde::Serialize;
use similar::TextDiff;

use crate::Store;
use crate::revision::{GetRevisionError, ObjectKey, Revision, RevisionId, StoredObject};

/// Lines of unchanged context around each hunk of a unified diff.
pub const DIFF_CONTEXT_LINES: usize = 3;

/// How one object differs between two revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ObjectChange {
    /// Present only in the newer revision.
    Added { key: ObjectKey, digest: String },
    /// Present only in the older revision.
    Removed { key: ObjectKey, digest: String },
    /// Present in both with different documents.
    Changed {
        key: ObjectKey,
        before_digest: String,
        after_digest: String,
        /// A unified diff of the two documents, headed
        /// `a/<key>@<from>` and `b/<key>@<to>`.
        unified_diff: String,
    },
}

impl ObjectChange {
    pub fn key(&self) -> &ObjectKey {
        match self {
            ObjectChange::Added { key, .. }
            | ObjectChange::Removed { key, .. }
            | ObjectChange::Changed { key, .. } => key,
        }
    }
}

/// The differences from revision `from` to revision `to`, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionDiff {
    pub from: RevisionId,
    pub to: RevisionId,
    pub changes: Vec<ObjectChange>,
    /// Objects present in both with identical documents.
    pub unchanged: u64,
}

impl RevisionDiff {
    /// True when both revisions hold the same desired state.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why [`Store::diff_revisions`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffRevisionsError {
    #[error("could not diff revision {from} against {to}")]
    Read {
        from: RevisionId,
        to: RevisionId,
        #[source]
        source: GetRevisionError,
    },
}

/// Diff two revisions already in memory.
pub fn diff_revisions(from: &Revision, to: &Revision) -> RevisionDiff {
    let before: BTreeMap<&ObjectKey, &StoredObject> =
        from.objects.iter().map(|o| (&o.key, o)).collect();
    let after: BTreeMap<&ObjectKey, &StoredObject> =
        to.objects.iter().map(|o| (&o.key, o)).collect();
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (key, old) in &before {
        match after.get(key) {
            None => changes.push(ObjectChange::Removed {
                key: (*key).clone(),
                digest: old.digest.clone(),
            }),
            Some(new) if new.document == old.document => unchanged += 1,
            Some(new) => {
                let unified_diff = TextDiff::from_lines(&old.document, &new.document)
                    .unified_diff()
                    .context_radius(DIFF_CONTEXT_LINES)
                    .header(
                        &format!("a/{key}@{}", from.id),
                        &format!("b/{key}@{}", to.id),
                    )
                    .to_string();
                changes.push(ObjectChange::Changed {
                    key: (*key).clone(),
                    before_digest: old.digest.clone(),
                    after_digest: new.digest.clone(),
                    unified_diff,
                });
            }
        }
    }
    for (key, new) in &after {
        if !before.contains_key(key) {
            changes.push(ObjectChange::Added {
                key: (*key).clone(),
                digest: new.digest.clone(),
            });
        }
    }
    changes.sort_by(|a, b| a.key().cmp(b.key()));
    RevisionDiff {
        from: from.id,
        to: to.id,
        changes,
        unchanged,
    }
}

impl Store {
    /// What changed from revision `from` to revision `to`.
    pub fn diff_revisions(
        &self,
        from: RevisionId,
        to: RevisionId,
    ) -> Result<RevisionDiff, DiffRevisionsError> {
        let read = |source| DiffRevisionsError::Read { from, to, source };
        let old = self.revision(from).map_err(read)?;
        let new = self.revision(to).map_err(read)?;
        Ok(diff_revisions(&old, &new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::NewObject;

    #[test]
    fn added_removed_changed_with_unified_diff() {
        let mut s = Store::open_in_memory().unwrap();
        let t = |name: &str, doc: &str| NewObject::new(ObjectKey::new("Tenant", name), doc);
        let r1 = s
            .save_revision(
                "a",
                "one",
                &[
                    t("web", "name: web\ncpu: 1\nmemory: 1Gi\n"),
                    t("db", "name: db\n"),
                    t("same", "x\n"),
                ],
            )
            .unwrap();
        let r2 = s
            .save_revision(
                "a",
                "two",
                &[
                    t("web", "name: web\ncpu: 2\nmemory: 1Gi\n"),
                    t("cache", "name: cache\n"),
                    t("same", "x\n"),
                ],
            )
            .unwrap();
        let d = s.diff_revisions(r1.id, r2.id).unwrap();
        assert_eq!(d.unchanged, 1);
        let keys: Vec<String> = d.changes.iter().map(|c| format!("{}", c.key())).collect();
        assert_eq!(keys, ["Tenant/cache", "Tenant/db", "Tenant/web"]);
        assert!(matches!(d.changes[0], ObjectChange::Added { .. }));
        assert!(matches!(d.changes[1], ObjectChange::Removed { .. }));
        let ObjectChange::Changed { unified_diff, .. } = &d.changes[2] else {
            panic!("expected a change: {:?}", d.changes[2]);
        };
        assert_eq!(
            unified_diff,
            "--- a/Tenant/web@1\n+++ b/Tenant/web@2\n@@ -1,3 +1,3 @@\n name: web\n-cpu: 1\n+cpu: 2\n memory: 1Gi\n"
        );
        assert!(s.diff_revisions(r2.id, r2.id).unwrap().is_empty());

        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["changes"][0]["change"], "added");
        assert_eq!(json["changes"][0]["key"]["name"], "cache");
    }

    #[test]
    fn diff_against_missing_revision_names_it() {
        let s = Store::open_in_memory().unwrap();
        let err = s.diff_revisions(RevisionId(1), RevisionId(2)).unwrap_err();
        let DiffRevisionsError::Read { source, .. } = &err;
        assert!(matches!(
            source,
            GetRevisionError::NotFound { id: RevisionId(1) }
        ));
    }
}
