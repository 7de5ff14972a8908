//! Differences between two reachability matrices: connections added and removed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::bitset::Bitset;
use crate::engine::EndpointKey;
use crate::matrix::{ReachabilityMatrix, Row};
use crate::model::Protocol;
use crate::ports::{PortClasses, PortSet};

/// A source may reach a destination on some ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// The source endpoint.
    pub src: EndpointKey,
    /// The destination endpoint.
    pub dst: EndpointKey,
    /// The ports concerned.
    pub ports: PortSet,
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}: {}", self.src, self.dst, self.ports)
    }
}

/// What changed from one matrix to another, endpoints matched by [`EndpointKey`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixDiff {
    /// Allowed in the second matrix, not in the first.
    pub added: Vec<Connection>,
    /// Allowed in the first matrix, not in the second.
    pub removed: Vec<Connection>,
}

impl MatrixDiff {
    /// True when the two matrices allow exactly the same connections.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Whether the diff adds `src -> dst` on `port` of `protocol`.
    pub fn adds(
        &self,
        src: &EndpointKey,
        dst: &EndpointKey,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        find(&self.added, src, dst, protocol, port)
    }

    /// Whether the diff removes `src -> dst` on `port` of `protocol`.
    pub fn removes(
        &self,
        src: &EndpointKey,
        dst: &EndpointKey,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        find(&self.removed, src, dst, protocol, port)
    }
}

fn find(
    list: &[Connection],
    src: &EndpointKey,
    dst: &EndpointKey,
    protocol: Protocol,
    port: u16,
) -> bool {
    list.iter()
        .any(|c| c.src == *src && c.dst == *dst && c.ports.contains(protocol, port))
}

impl std::fmt::Display for MatrixDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.added {
            writeln!(f, "+ {c}")?;
        }
        for c in &self.removed {
            writeln!(f, "- {c}")?;
        }
        Ok(())
    }
}

/// The connections `after` allows and `before` does not (`added`), and the reverse
/// (`removed`). Endpoints present in one matrix only count as having no connections in
/// the other; port classes are refined so that both matrices' cuts are respected.
/// Sorted by source, then destination (in the order endpoints first appear).
pub fn diff(before: &ReachabilityMatrix, after: &ReachabilityMatrix) -> MatrixDiff {
    // Union of endpoints: `before`'s in order, then those only in `after`.
    let mut union: Vec<EndpointKey> = before.endpoints.clone();
    let mut position: HashMap<&EndpointKey, usize> = before
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let mut after_to_union = Vec::with_capacity(after.endpoints.len());
    for key in &after.endpoints {
        let next = union.len();
        let u = *position.entry(key).or_insert(next);
        if u == next {
            union.push(key.clone());
        }
        after_to_union.push(u);
    }
    let union_of_after: HashMap<usize, usize> = after_to_union
        .iter()
        .enumerate()
        .map(|(a, &u)| (u, a))
        .collect();
    let same_order = before.endpoints == after.endpoints;
    let n = union.len();

    let refined = PortClasses::refine(&before.classes, &after.classes);
    let class_map: Vec<(Option<usize>, Option<usize>)> = refined
        .ranges()
        .iter()
        .map(|r| {
            (
                before.classes.class_of(r.protocol, r.start),
                after.classes.class_of(r.protocol, r.start),
            )
        })
        .collect();

    fn row_of(m: &ReachabilityMatrix, src: usize, class: Option<usize>) -> Option<&Row> {
        class.and_then(|c| m.rows.get(src * m.classes.len() + c))
    }
    let mut diff = MatrixDiff::default();
    for (u, src_key) in union.iter().enumerate() {
        let in_before = (u < before.endpoints.len()).then_some(u);
        let in_after = if same_order {
            in_before
        } else {
            union_of_after.get(&u).copied()
        };
        // Per destination, the refined classes added and removed.
        let mut added: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut removed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (r, &(cb, ca)) in class_map.iter().enumerate() {
            let old = match in_before.and_then(|s| row_of(before, s, cb)) {
                Some(row) => {
                    let mut set = row.to_bitset(before.endpoints.len());
                    set.resize(n);
                    set
                }
                None => Bitset::empty(n),
            };
            let new = match in_after.and_then(|s| row_of(after, s, ca)) {
                Some(row) if same_order => {
                    let mut set = row.to_bitset(after.endpoints.len());
                    set.resize(n);
                    set
                }
                Some(row) => {
                    let mut set = Bitset::empty(n);
                    row.for_each(after.endpoints.len(), |d| set.insert(after_to_union[d]));
                    set
                }
                None => Bitset::empty(n),
            };
            for d in new.difference(&old).ones() {
                added.entry(d).or_default().push(r);
            }
            for d in old.difference(&new).ones() {
                removed.entry(d).or_default().push(r);
            }
        }
        for (list, out) in [(added, &mut diff.added), (removed, &mut diff.removed)] {
            for (d, classes) in list {
                out.push(Connection {
                    src: src_key.clone(),
                    dst: union[d].clone(),
                    ports: refined.to_port_set(classes),
                });
            }
        }
    }
    diff
}
