//! Desired-state revisions: every apply stores the full set of objects it
//! applied, as canonical document text, under a new revision id.

use std::collections::BTreeSet;
use std::fmt;

use rusqlite::{OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;

use crate::Store;
use crate::digest::{Canonical, sha256_hex};
use crate::time::now_rfc3339;

/// Identifies a stored revision; ids increase with every save and are never
/// reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RevisionId(pub i64);

impl fmt::Display for RevisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What names an object within a revision: its kind, its namespace (for
/// tenant-owned objects, the tenant) and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// A cluster-wide (un-namespaced) object key.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// The same key inside `namespace` (typically the owning tenant).
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
}

/// `kind/name`, or `kind/namespace/name` when namespaced.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// An object handed to [`Store::save_revision`]: its key and its canonical
/// document text (the caller canonicalises; the store compares text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    pub key: ObjectKey,
    pub document: String,
}

impl NewObject {
    pub fn new(key: ObjectKey, document: impl Into<String>) -> Self {
        NewObject {
            key,
            document: document.into(),
        }
    }
}

/// An object as stored in a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredObject {
    #[serde(flatten)]
    pub key: ObjectKey,
    /// Lowercase hex SHA-256 of `document`'s UTF-8 bytes.
    pub digest: String,
    pub document: String,
}

/// A revision without its objects, as listed by [`Store::list_revisions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionSummary {
    pub id: RevisionId,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub actor: String,
    pub message: String,
    /// Digest of the object set (see [`Revision::digest`]).
    pub digest: String,
    pub object_count: u64,
}

/// A revision with all its objects, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    pub id: RevisionId,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub actor: String,
    pub message: String,
    /// SHA-256 over the sorted (key, object digest) list. It depends only on
    /// the objects, not on actor, message or time: two revisions with the
    /// same digest hold the same desired state.
    pub digest: String,
    pub objects: Vec<StoredObject>,
}

/// The result of [`Store::save_revision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedRevision {
    pub id: RevisionId,
    pub digest: String,
    /// The previous latest revision, if any.
    pub previous: Option<RevisionId>,
    /// True when the previous latest revision had the same digest: the apply
    /// was recorded but changed no desired state.
    pub unchanged: bool,
}

/// Why [`Store::save_revision`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveRevisionError {
    #[error("object {index} ({key}): {field} is empty (expected a non-empty string)")]
    EmptyField {
        index: usize,
        key: ObjectKey,
        field: &'static str,
    },
    #[error("object {key} appears more than once (expected each kind/namespace/name once)")]
    DuplicateObject { key: ObjectKey },
    #[error("could not write the revision")]
    Database(#[source] rusqlite::Error),
}

/// Why reading a revision failed.
#[derive(Debug, thiserror::Error)]
pub enum GetRevisionError {
    #[error("revision {id} not found")]
    NotFound { id: RevisionId },
    #[error("could not read revision {}", id.map_or_else(|| "latest".to_owned(), |i| i.to_string()))]
    Database {
        id: Option<RevisionId>,
        #[source]
        source: rusqlite::Error,
    },
}

/// Why [`Store::list_revisions`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ListRevisionsError {
    #[error("could not list revisions")]
    Database(#[source] rusqlite::Error),
}

/// The digest of an object set, as stored in [`Revision::digest`]. Objects
/// may come in any order.
pub fn revision_digest<'a>(objects: impl IntoIterator<Item = (&'a ObjectKey, &'a str)>) -> String {
    let mut sorted: Vec<_> = objects.into_iter().collect();
    sorted.sort();
    let mut c = Canonical::new("bulkhead-revision-v1");
    c.int(sorted.len() as i64);
    for (key, digest) in sorted {
        c.str(&key.kind)
            .opt_str(key.namespace.as_deref())
            .str(&key.name)
            .str(digest);
    }
    c.finish()
}

impl Revision {
    /// A revision that is not (yet) in the store, with id 0: what `plan` compares
    /// against the latest stored revision before anything is saved.
    pub fn unsaved(actor: &str, message: &str, objects: &[NewObject]) -> Revision {
        let objects: Vec<StoredObject> = objects
            .iter()
            .map(|o| StoredObject {
                key: o.key.clone(),
                digest: sha256_hex(o.document.as_bytes()),
                document: o.document.clone(),
            })
            .collect();
        let digest = revision_digest(objects.iter().map(|o| (&o.key, o.digest.as_str())));
        Revision {
            id: RevisionId(0),
            created_at: now_rfc3339(),
            actor: actor.to_owned(),
            message: message.to_owned(),
            digest,
            objects,
        }
    }
}

fn check_objects(objects: &[NewObject]) -> Result<(), SaveRevisionError> {
    let mut seen = BTreeSet::new();
    for (index, o) in objects.iter().enumerate() {
        let empty = |field| SaveRevisionError::EmptyField {
            index,
            key: o.key.clone(),
            field,
        };
        if o.key.kind.is_empty() {
            return Err(empty("kind"));
        }
        if o.key.name.is_empty() {
            return Err(empty("name"));
        }
        if o.key.namespace.as_deref() == Some("") {
            return Err(empty("namespace"));
        }
        if !seen.insert(&o.key) {
            return Err(SaveRevisionError::DuplicateObject { key: o.key.clone() });
        }
    }
    Ok(())
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<RevisionSummary> {
    Ok(RevisionSummary {
        id: RevisionId(row.get(0)?),
        created_at: row.get(1)?,
        actor: row.get(2)?,
        message: row.get(3)?,
        digest: row.get(4)?,
        object_count: row.get::<_, i64>(5)?.try_into().unwrap_or(0),
    })
}

const SUMMARY_SELECT: &str = "SELECT r.id, r.created_at, r.actor, r.message, r.digest,
        (SELECT count(*) FROM revision_objects o WHERE o.revision_id = r.id)
     FROM revisions r";

impl Store {
    /// Record an apply: store `objects` as a new revision and return its id.
    ///
    /// Saving the same objects again still creates a revision (every apply
    /// is recorded); [`SavedRevision::unchanged`] tells the caller that the
    /// desired state did not change.
    pub fn save_revision(
        &mut self,
        actor: &str,
        message: &str,
        objects: &[NewObject],
    ) -> Result<SavedRevision, SaveRevisionError> {
        check_objects(objects)?;
        let digests: Vec<String> = objects
            .iter()
            .map(|o| sha256_hex(o.document.as_bytes()))
            .collect();
        let digest = revision_digest(
            objects
                .iter()
                .zip(&digests)
                .map(|(o, d)| (&o.key, d.as_str())),
        );
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(SaveRevisionError::Database)?;
        let previous: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, digest FROM revisions ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(SaveRevisionError::Database)?;
        tx.execute(
            "INSERT INTO revisions (created_at, actor, message, digest) VALUES (?1, ?2, ?3, ?4)",
            (now_rfc3339(), actor, message, &digest),
        )
        .map_err(SaveRevisionError::Database)?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO revision_objects (revision_id, kind, namespace, name, document, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(SaveRevisionError::Database)?;
            for (o, d) in objects.iter().zip(&digests) {
                insert
                    .execute((
                        id,
                        &o.key.kind,
                        &o.key.namespace,
                        &o.key.name,
                        &o.document,
                        d,
                    ))
                    .map_err(SaveRevisionError::Database)?;
            }
        }
        tx.commit().map_err(SaveRevisionError::Database)?;
        Ok(SavedRevision {
            id: RevisionId(id),
            unchanged: previous.as_ref().is_some_and(|(_, d)| *d == digest),
            previous: previous.map(|(id, _)| RevisionId(id)),
            digest,
        })
    }

    /// All revisions, oldest first, without their objects.
    pub fn list_revisions(&self) -> Result<Vec<RevisionSummary>, ListRevisionsError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SUMMARY_SELECT} ORDER BY r.id"))
            .map_err(ListRevisionsError::Database)?;
        let rows = stmt
            .query_map([], summary_from_row)
            .map_err(ListRevisionsError::Database)?;
        rows.collect::<Result<_, _>>()
            .map_err(ListRevisionsError::Database)
    }

    /// One revision with its objects.
    pub fn revision(&self, id: RevisionId) -> Result<Revision, GetRevisionError> {
        let db = |source| GetRevisionError::Database {
            id: Some(id),
            source,
        };
        let summary = self
            .conn
            .query_row(
                &format!("{SUMMARY_SELECT} WHERE r.id = ?1"),
                [id.0],
                summary_from_row,
            )
            .optional()
            .map_err(db)?
            .ok_or(GetRevisionError::NotFound { id })?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, namespace, name, digest, document
                 FROM revision_objects WHERE revision_id = ?1",
            )
            .map_err(db)?;
        let mut objects = stmt
            .query_map([id.0], |row| {
                Ok(StoredObject {
                    key: ObjectKey {
                        kind: row.get(0)?,
                        namespace: row.get(1)?,
                        name: row.get(2)?,
                    },
                    digest: row.get(3)?,
                    document: row.get(4)?,
                })
            })
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Revision {
            id: summary.id,
            created_at: summary.created_at,
            actor: summary.actor,
            message: summary.message,
            digest: summary.digest,
            objects,
        })
    }

    /// The most recent revision, or `None` before the first apply.
    pub fn latest_revision(&self) -> Result<Option<Revision>, GetRevisionError> {
        self.latest_revision_id()?
            .map(|id| self.revision(id))
            .transpose()
    }

    /// The id of the most recent revision (cheap: no objects are read), or `None`
    /// before the first apply. Ids only grow, so a cache of the latest revision is
    /// valid while this id is unchanged.
    pub fn latest_revision_id(&self) -> Result<Option<RevisionId>, GetRevisionError> {
        let latest: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM revisions", [], |row| row.get(0))
            .map_err(|source| GetRevisionError::Database { id: None, source })?;
        Ok(latest.map(RevisionId))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, doc: &str) -> NewObject {
        NewObject::new(ObjectKey::new("Tenant", name), doc)
    }

    #[test]
    fn save_get_list_latest() {
        let mut s = Store::open_in_memory().unwrap();
        assert!(s.latest_revision().unwrap().is_none());
        let wl = NewObject::new(
            ObjectKey::new("Workload", "api").in_namespace("web"),
            "kind: Workload\n",
        );
        let a = s
            .save_revision(
                "alice",
                "first",
                &[tenant("web", "kind: Tenant\n"), wl.clone()],
            )
            .unwrap();
        assert!(!a.unchanged);
        assert_eq!(a.previous, None);
        // Same objects in another order: new revision, same digest.
        let b = s
            .save_revision("bob", "again", &[wl, tenant("web", "kind: Tenant\n")])
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.digest, b.digest);
        assert!(b.unchanged);
        assert_eq!(b.previous, Some(a.id));

        let list = s.list_revisions().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].actor, "alice");
        assert_eq!(list[1].object_count, 2);

        let latest = s.latest_revision().unwrap().unwrap();
        assert_eq!(latest.id, b.id);
        assert_eq!(latest.message, "again");
        assert_eq!(latest.objects[0].key.to_string(), "Tenant/web");
        assert_eq!(latest.objects[1].key.to_string(), "Workload/web/api");
        assert_eq!(latest.objects[0].digest, sha256_hex(b"kind: Tenant\n"));

        let c = s
            .save_revision("alice", "change", &[tenant("web", "kind: Tenant\nx: 1\n")])
            .unwrap();
        assert!(!c.unchanged);
        assert_ne!(c.digest, a.digest);
    }

    #[test]
    fn missing_revision_is_not_found() {
        let s = Store::open_in_memory().unwrap();
        let err = s.revision(RevisionId(7)).unwrap_err();
        assert!(matches!(
            err,
            GetRevisionError::NotFound { id: RevisionId(7) }
        ));
        assert_eq!(err.to_string(), "revision 7 not found");
    }

    #[test]
    fn duplicates_and_empty_fields_are_refused() {
        let mut s = Store::open_in_memory().unwrap();
        let err = s
            .save_revision("a", "m", &[tenant("web", "x"), tenant("web", "y")])
            .unwrap_err();
        assert!(
            matches!(err, SaveRevisionError::DuplicateObject { .. }),
            "{err}"
        );
        let err = s.save_revision("a", "m", &[tenant("", "x")]).unwrap_err();
        assert!(
            matches!(
                err,
                SaveRevisionError::EmptyField {
                    index: 0,
                    field: "name",
                    ..
                }
            ),
            "{err}"
        );
        // Nothing was written.
        assert!(s.list_revisions().unwrap().is_empty());
    }

    #[test]
    fn namespace_is_part_of_the_key() {
        let mut s = Store::open_in_memory().unwrap();
        let a = NewObject::new(ObjectKey::new("Workload", "api").in_namespace("web"), "a");
        let b = NewObject::new(ObjectKey::new("Workload", "api").in_namespace("db"), "b");
        let c = NewObject::new(ObjectKey::new("Workload", "api"), "c");
        let saved = s.save_revision("a", "m", &[a, b, c]).unwrap();
        assert_eq!(s.revision(saved.id).unwrap().objects.len(), 3);
    }
}
