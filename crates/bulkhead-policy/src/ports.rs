//! Port sets and the partition of the port space into classes.
//!
//! Every port spec and every referenced named port cuts the space `(protocol, 1..=65535)`
//! at its ends; the pieces between cuts are *port classes*. Two ports of one class are
//! treated identically by every rule, so a matrix needs one bit per class, not per port.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::Protocol;

/// The inclusive range `start..=end` of `protocol` ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// The protocol.
    pub protocol: Protocol,
    /// The first port.
    pub start: u16,
    /// The last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Whether `port` of `protocol` is inside.
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && self.start <= port && port <= self.end
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == 1 && self.end == u16::MAX {
            write!(f, "{} any", self.protocol)
        } else if self.start == self.end {
            write!(f, "{} {}", self.protocol, self.start)
        } else {
            write!(f, "{} {}-{}", self.protocol, self.start, self.end)
        }
    }
}

/// A set of `(protocol, port)` pairs as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    /// The set of the given ranges (in any order, overlapping or not).
    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> Self {
        let mut sorted: Vec<PortRange> = ranges.into_iter().collect();
        sorted.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(sorted.len());
        for range in sorted {
            match merged.last_mut() {
                Some(last)
                    if last.protocol == range.protocol
                        && u32::from(range.start) <= u32::from(last.end) + 1 =>
                {
                    last.end = last.end.max(range.end);
                }
                _ => merged.push(range),
            }
        }
        Self { ranges: merged }
    }

    /// Every port of every protocol.
    pub fn everything() -> Self {
        Self::from_ranges(Protocol::ALL.map(|protocol| PortRange {
            protocol,
            start: 1,
            end: u16::MAX,
        }))
    }

    /// The ranges, sorted by protocol then port.
    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    /// True if no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `port` of `protocol` is in the set.
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(protocol, port))
    }
}

impl std::fmt::Display for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("none");
        }
        for (i, range) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

/// The partition of `(protocol, 1..=65535)` into classes, numbered across protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortClasses {
    /// Per protocol, the first port of each class, ascending, starting with 1.
    starts: [Vec<u32>; 3],
    /// Per protocol, the number of the protocol's first class.
    offsets: [usize; 3],
    classes: Vec<PortRange>,
}

impl PortClasses {
    /// Classes cut at `cuts`: per protocol, ports where a new class starts.
    pub(crate) fn new(cuts: &[BTreeSet<u32>; 3]) -> Self {
        let mut starts: [Vec<u32>; 3] = Default::default();
        let mut offsets = [0; 3];
        let mut classes = Vec::new();
        for protocol in Protocol::ALL {
            let p = protocol.index();
            offsets[p] = classes.len();
            let mut list: Vec<u32> = std::iter::once(1)
                .chain(cuts[p].iter().copied().filter(|c| (2..=65535).contains(c)))
                .collect();
            list.dedup();
            for (i, &start) in list.iter().enumerate() {
                let end = list.get(i + 1).map_or(65535, |next| next - 1);
                classes.push(PortRange {
                    protocol,
                    start: u16::try_from(start).unwrap_or(u16::MAX),
                    end: u16::try_from(end).unwrap_or(u16::MAX),
                });
            }
            starts[p] = list;
        }
        Self {
            starts,
            offsets,
            classes,
        }
    }

    /// The common refinement of two partitions.
    pub(crate) fn refine(a: &Self, b: &Self) -> Self {
        let mut cuts: [BTreeSet<u32>; 3] = Default::default();
        for (p, set) in cuts.iter_mut().enumerate() {
            set.extend(a.starts[p].iter().chain(&b.starts[p]).copied());
        }
        Self::new(&cuts)
    }

    pub(crate) fn len(&self) -> usize {
        self.classes.len()
    }

    pub(crate) fn ranges(&self) -> &[PortRange] {
        &self.classes
    }

    pub(crate) fn range(&self, class: usize) -> Option<PortRange> {
        self.classes.get(class).copied()
    }

    /// The class holding `port` of `protocol`; `None` for port 0.
    pub(crate) fn class_of(&self, protocol: Protocol, port: u16) -> Option<usize> {
        if port == 0 {
            return None;
        }
        let p = protocol.index();
        let starts = &self.starts[p];
        let i = starts.partition_point(|&s| s <= u32::from(port));
        Some(self.offsets[p] + i.checked_sub(1)?)
    }

    /// The classes covering `start..=end` of `protocol` (the range must be on cuts).
    pub(crate) fn classes_in(
        &self,
        protocol: Protocol,
        start: u16,
        end: u16,
    ) -> std::ops::Range<usize> {
        match (self.class_of(protocol, start), self.class_of(protocol, end)) {
            (Some(first), Some(last)) => first..last + 1,
            _ => 0..0,
        }
    }

    /// The port set made of `classes`.
    pub(crate) fn to_port_set(&self, classes: impl IntoIterator<Item = usize>) -> PortSet {
        PortSet::from_ranges(classes.into_iter().filter_map(|c| self.range(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_split_at_cuts_and_cover_every_port() {
        let mut cuts: [BTreeSet<u32>; 3] = Default::default();
        cuts[0].extend([80, 81, 8000, 8101]);
        let classes = PortClasses::new(&cuts);
        assert_eq!(classes.len(), 5 + 1 + 1);
        assert_eq!(classes.class_of(Protocol::Tcp, 80), Some(1));
        assert_eq!(classes.class_of(Protocol::Tcp, 79), Some(0));
        assert_eq!(classes.class_of(Protocol::Tcp, 65535), Some(4));
        assert_eq!(classes.class_of(Protocol::Udp, 80), Some(5));
        assert_eq!(classes.class_of(Protocol::Tcp, 0), None);
        assert_eq!(classes.classes_in(Protocol::Tcp, 8000, 8100), 3..4);
        assert_eq!(
            classes.to_port_set(0..5).to_string(),
            "TCP any",
            "adjacent classes merge"
        );
    }
}
