//! The full reachability matrix: for every source endpoint and port class, the set of
//! destinations it may connect to.
//!
//! How it is computed without evaluating every pair:
//!
//! 1. The port space is cut into classes at every port spec's ends and every referenced
//!    named port's number ([`crate::ports`]); one bit per class, not per port.
//! 2. Every rule's peers become one bitset over endpoints, computed once (selectors are
//!    evaluated per namespace, then per pod of the matching namespaces only).
//! 3. Endpoints selected by the same rules (and, for ingress, resolving named ports to
//!    the same classes) share a *signature*; a direction's allowed set is built once
//!    per signature and class as the union of its rules' peer bitsets.
//! 4. Per class, the ingress sets (rows by destination) are transposed 64×64 bits at a
//!    time into rows by source and ANDed with the egress rows. Classes run in parallel.
//!
//! Rows are stored empty, full, as a sorted list or as a bitset, whichever is smallest.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::bitset::{self, Bitset, words_for};
use crate::engine::{
    CompiledPeer, CompiledPort, CompiledRule, EndpointId, EndpointKey, Engine, NamespaceScope,
    block_contains,
};
use crate::model::{PolicyType, Protocol};
use crate::ports::{PortClasses, PortRange, PortSet};
use crate::selector::LabelSelector;

/// A group of endpoints the namespace-level matrix aggregates to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum GroupKey {
    /// Every pod of a namespace.
    Namespace {
        /// The namespace name.
        name: String,
    },
    /// One external endpoint.
    External {
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Namespace { name } => f.write_str(name),
            Self::External { name } => write!(f, "external:{name}"),
        }
    }
}

/// The destinations of one (source, port class): whichever form is smallest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
    Empty,
    Full,
    Sparse(Box<[u32]>),
    Dense(Box<[u64]>),
}

impl Row {
    fn from_words(words: &[u64], len: usize) -> Self {
        let count: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        if count == 0 {
            Self::Empty
        } else if count == len {
            Self::Full
        } else if count < 2 * words.len() {
            Self::Sparse(
                bitset::ones(words)
                    .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
                    .collect(),
            )
        } else {
            Self::Dense(words.into())
        }
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        match self {
            Self::Empty => false,
            Self::Full => true,
            Self::Sparse(list) => u32::try_from(i).is_ok_and(|i| list.binary_search(&i).is_ok()),
            Self::Dense(words) => words
                .get(i / 64)
                .is_some_and(|w| w & (1u64 << (i % 64)) != 0),
        }
    }

    pub(crate) fn count(&self, len: usize) -> usize {
        match self {
            Self::Empty => 0,
            Self::Full => len,
            Self::Sparse(list) => list.len(),
            Self::Dense(words) => words.iter().map(|w| w.count_ones() as usize).sum(),
        }
    }

    /// Calls `f` for each member, ascending.
    pub(crate) fn for_each(&self, len: usize, mut f: impl FnMut(usize)) {
        match self {
            Self::Empty => {}
            Self::Full => (0..len).for_each(f),
            Self::Sparse(list) => list.iter().for_each(|&i| f(i as usize)),
            Self::Dense(words) => bitset::ones(words).for_each(f),
        }
    }

    /// The members as a bitset over `0..len`.
    pub(crate) fn to_bitset(&self, len: usize) -> Bitset {
        match self {
            Self::Full => Bitset::full(len),
            Self::Dense(words) => Bitset::from_words(words.to_vec()),
            _ => {
                let mut set = Bitset::empty(len);
                self.for_each(len, |i| set.insert(i));
                set
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Empty | Self::Full => 0,
            Self::Sparse(list) => list.len() * 4,
            Self::Dense(words) => words.len() * 8,
        }
    }
}

/// Who may connect to whom on which ports, for every pair of endpoints of an [`Engine`].
///
/// Built by [`Engine::matrix`]; agrees with [`Engine::allowed`] on every query.
#[derive(Debug, Clone)]
pub struct ReachabilityMatrix {
    pub(crate) endpoints: Vec<EndpointKey>,
    pub(crate) groups: Vec<GroupKey>,
    /// Per endpoint, its group.
    pub(crate) group_of: Vec<usize>,
    pub(crate) classes: PortClasses,
    /// `rows[src * classes + class]`.
    pub(crate) rows: Vec<Row>,
}

impl ReachabilityMatrix {
    /// The endpoints, indexed by [`EndpointId::index`].
    pub fn endpoints(&self) -> &[EndpointKey] {
        &self.endpoints
    }

    /// The port classes: ranges of ports every rule treats alike, across protocols.
    pub fn port_classes(&self) -> &[PortRange] {
        self.classes.ranges()
    }

    fn row(&self, src: usize, class: usize) -> Option<&Row> {
        self.rows.get(src * self.classes.len() + class)
    }

    /// Whether `src` may connect to `dst` on `port` of `protocol`.
    pub fn allowed(&self, src: EndpointId, dst: EndpointId, protocol: Protocol, port: u16) -> bool {
        dst.index() < self.endpoints.len()
            && self
                .classes
                .class_of(protocol, port)
                .and_then(|class| self.row(src.index(), class))
                .is_some_and(|row| row.contains(dst.index()))
    }

    /// Every port `src` may reach `dst` on.
    pub fn ports(&self, src: EndpointId, dst: EndpointId) -> PortSet {
        if dst.index() >= self.endpoints.len() {
            return PortSet::default();
        }
        self.classes
            .to_port_set((0..self.classes.len()).filter(|&class| {
                self.row(src.index(), class)
                    .is_some_and(|row| row.contains(dst.index()))
            }))
    }

    /// Every destination `src` may reach on `port` of `protocol`, ascending.
    pub fn destinations(&self, src: EndpointId, protocol: Protocol, port: u16) -> Vec<EndpointId> {
        let mut out = Vec::new();
        if let Some(row) = self
            .classes
            .class_of(protocol, port)
            .and_then(|class| self.row(src.index(), class))
        {
            row.for_each(self.endpoints.len(), |d| {
                out.push(EndpointId::from_index(d))
            });
        }
        out
    }

    /// Every *other* endpoint `src` may reach, with the ports, ascending by destination:
    /// one pass over the source's rows, never a per-pair query.
    pub fn connections_from(&self, src: EndpointId) -> Vec<(EndpointId, PortSet)> {
        let n = self.endpoints.len();
        let k = self.classes.len();
        let mut classes_by_dst: std::collections::BTreeMap<usize, Vec<usize>> =
            std::collections::BTreeMap::new();
        for class in 0..k {
            if let Some(row) = self.row(src.index(), class) {
                row.for_each(n, |d| {
                    if d != src.index() {
                        classes_by_dst.entry(d).or_default().push(class);
                    }
                });
            }
        }
        classes_by_dst
            .into_iter()
            .map(|(d, classes)| (EndpointId::from_index(d), self.classes.to_port_set(classes)))
            .collect()
    }

    /// The number of allowed (source, destination, port class) triples.
    pub fn allowed_count(&self) -> u64 {
        let n = self.endpoints.len();
        self.rows.iter().map(|row| row.count(n) as u64).sum()
    }

    /// Approximate heap memory held by the matrix rows, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.rows.iter().map(Row::heap_bytes).sum::<usize>()
            + self.rows.len() * std::mem::size_of::<Row>()
    }

    /// Aggregates to groups (namespaces, and each external endpoint alone): a group may
    /// reach another on a port if some endpoint of the first may reach some *other*
    /// endpoint of the second (a pod reaching itself does not count).
    pub fn namespace_matrix(&self) -> NamespaceMatrix {
        let n = self.endpoints.len();
        let k = self.classes.len();
        let g = self.groups.len();
        // Groups are contiguous endpoint ranges (pods are numbered by namespace).
        let mut bounds = vec![(usize::MAX, 0); g];
        for (e, &group) in self.group_of.iter().enumerate() {
            let (start, end) = &mut bounds[group];
            *start = (*start).min(e);
            *end = (*end).max(e + 1);
        }
        let ranges: Vec<std::ops::Range<usize>> =
            bounds.into_iter().map(|(start, end)| start..end).collect();
        let mut rows = vec![Bitset::empty(g); g * k];
        for src in 0..n {
            let own = self.group_of[src];
            for class in 0..k {
                let Some(row) = self.row(src, class) else {
                    continue;
                };
                let out = &mut rows[own * k + class];
                match row {
                    Row::Empty => {}
                    Row::Sparse(list) => {
                        for &d in list.iter() {
                            if d as usize != src {
                                out.insert(self.group_of[d as usize]);
                            }
                        }
                    }
                    Row::Full | Row::Dense(_) => {
                        for (group, range) in ranges.iter().enumerate() {
                            if range.start >= range.end {
                                continue;
                            }
                            let hit = match row {
                                Row::Dense(words) if range.contains(&src) => {
                                    bitset::any_in(words, range.start, src)
                                        || bitset::any_in(words, src + 1, range.end)
                                }
                                Row::Dense(words) => bitset::any_in(words, range.start, range.end),
                                _ => !(range.contains(&src) && range.len() == 1),
                            };
                            if hit {
                                out.insert(group);
                            }
                        }
                    }
                }
            }
        }
        NamespaceMatrix {
            groups: self.groups.clone(),
            classes: self.classes.clone(),
            rows,
        }
    }
}

/// Reachability between namespaces (and external endpoints), aggregated from a
/// [`ReachabilityMatrix`] by [`ReachabilityMatrix::namespace_matrix`].
#[derive(Debug, Clone)]
pub struct NamespaceMatrix {
    groups: Vec<GroupKey>,
    classes: PortClasses,
    /// `rows[src_group * classes + class]`, a set of destination groups.
    rows: Vec<Bitset>,
}

impl NamespaceMatrix {
    /// The groups: namespaces in declaration order, then external endpoints.
    pub fn groups(&self) -> &[GroupKey] {
        &self.groups
    }

    /// The index of a group.
    pub fn group(&self, key: &GroupKey) -> Option<usize> {
        self.groups.iter().position(|g| g == key)
    }

    /// Whether some endpoint of group `src` may reach some other endpoint of group `dst`.
    pub fn allowed(&self, src: usize, dst: usize, protocol: Protocol, port: u16) -> bool {
        self.classes
            .class_of(protocol, port)
            .and_then(|class| self.rows.get(src * self.classes.len() + class))
            .is_some_and(|row| row.contains(dst))
    }

    /// The ports on which group `src` reaches group `dst`.
    pub fn ports(&self, src: usize, dst: usize) -> PortSet {
        let k = self.classes.len();
        self.classes.to_port_set((0..k).filter(|&class| {
            self.rows
                .get(src * k + class)
                .is_some_and(|r| r.contains(dst))
        }))
    }

    /// Every (source group, destination group, ports) with at least one port, sorted.
    pub fn connections(&self) -> Vec<(GroupKey, GroupKey, PortSet)> {
        let k = self.classes.len();
        let g = self.groups.len();
        let mut out = Vec::new();
        for src in 0..g {
            let mut classes_by_dst: Vec<Vec<usize>> = vec![Vec::new(); g];
            for class in 0..k {
                if let Some(row) = self.rows.get(src * k + class) {
                    for dst in row.ones() {
                        classes_by_dst[dst].push(class);
                    }
                }
            }
            for (dst, classes) in classes_by_dst.into_iter().enumerate() {
                if !classes.is_empty() {
                    out.push((
                        self.groups[src].clone(),
                        self.groups[dst].clone(),
                        self.classes.to_port_set(classes),
                    ));
                }
            }
        }
        out
    }
}

/// One rule, ready for the matrix.
struct RuleData {
    /// The endpoints the rule's peers match.
    peers: Bitset,
    /// Classes allowed whatever the destination.
    fixed: Vec<usize>,
    /// Named ports, as indices into the named-port table.
    named: Vec<usize>,
}

/// The rules applying to an endpoint and, for ingress, the classes its named ports
/// resolve to (per rule): endpoints with equal keys have equal allowed sets.
type SignatureKey = (Vec<usize>, Vec<(usize, usize)>);

/// One signature: the endpoints sharing it and, per class, the contributions.
struct Signature {
    members: Vec<usize>,
    /// Per class, the rules whose peer set is allowed outright.
    rules: Vec<Vec<usize>>,
    /// Per class, (rule, named-port index) pairs: the rule's peers that resolve the named
    /// port into this class (egress only; ingress resolves on the owner, folded in `rules`).
    named: Vec<Vec<(usize, usize)>>,
}

struct Prepared {
    n: usize,
    classes: PortClasses,
    rules: Vec<RuleData>,
    /// Per named port index, per class, destinations resolving it into that class.
    named_dsts: Vec<HashMap<usize, Bitset>>,
    ingress: Vec<Signature>,
    ingress_sig: Vec<Option<usize>>,
    egress: Vec<Signature>,
    egress_sig: Vec<Option<usize>>,
}

impl Engine {
    /// The full reachability matrix over every endpoint pair and port class.
    ///
    /// Uses up to [`std::thread::available_parallelism`] threads.
    pub fn matrix(&self) -> ReachabilityMatrix {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.matrix_with_threads(threads)
    }

    /// [`Engine::matrix`] on at most `threads` threads (at least one).
    pub fn matrix_with_threads(&self, threads: usize) -> ReachabilityMatrix {
        let prepared = self.prepare();
        let n = prepared.n;
        let k = prepared.classes.len();
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<(usize, Vec<Row>)>> = Mutex::new(Vec::with_capacity(k));
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, k.max(1)) {
                scope.spawn(|| {
                    let mut work = ClassWork::new(n);
                    loop {
                        let class = next.fetch_add(1, Ordering::Relaxed);
                        if class >= k {
                            break;
                        }
                        let rows = work.run(&prepared, class);
                        if let Ok(mut done) = done.lock() {
                            done.push((class, rows));
                        }
                    }
                });
            }
        });
        let mut by_class = done.into_inner().unwrap_or_else(|e| e.into_inner());
        by_class.sort_by_key(|(class, _)| *class);
        let mut rows = vec![Row::Empty; n * k];
        for (class, class_rows) in by_class {
            for (src, row) in class_rows.into_iter().enumerate() {
                rows[src * k + class] = row;
            }
        }

        let mut groups: Vec<GroupKey> = self
            .namespaces
            .iter()
            .map(|ns| GroupKey::Namespace {
                name: ns.name.clone(),
            })
            .collect();
        let mut group_of = Vec::with_capacity(n);
        for e in &self.endpoints {
            match (e.namespace, &e.key) {
                (Some(ns), _) => group_of.push(ns),
                (None, key) => {
                    group_of.push(groups.len());
                    groups.push(GroupKey::External {
                        name: match key {
                            EndpointKey::External { name } | EndpointKey::Pod { name, .. } => {
                                name.clone()
                            }
                        },
                    });
                }
            }
        }
        ReachabilityMatrix {
            endpoints: self.endpoints.iter().map(|e| e.key.clone()).collect(),
            groups,
            group_of,
            classes: prepared.classes,
            rows,
        }
    }

    fn prepare(&self) -> Prepared {
        let n = self.endpoints.len();

        // Port classes: cut at every range end and every referenced named port.
        let mut cuts: [BTreeSet<u32>; 3] = Default::default();
        let mut named_index: HashMap<(Protocol, &str), usize> = HashMap::new();
        for rule in self.all_rules() {
            for port in &rule.ports {
                match port {
                    CompiledPort::Range {
                        protocol,
                        start,
                        end,
                    } => {
                        cuts[protocol.index()].insert(u32::from(*start));
                        cuts[protocol.index()].insert(u32::from(*end) + 1);
                    }
                    CompiledPort::Named { protocol, name } => {
                        let next = named_index.len();
                        named_index
                            .entry((*protocol, name.as_str()))
                            .or_insert(next);
                    }
                }
            }
        }
        for e in &self.endpoints {
            for port in &e.ports {
                if named_index.contains_key(&(port.protocol, port.name.as_str())) {
                    cuts[port.protocol.index()].insert(u32::from(port.port));
                    cuts[port.protocol.index()].insert(u32::from(port.port) + 1);
                }
            }
        }
        let classes = PortClasses::new(&cuts);
        let k = classes.len();

        // Named ports: per endpoint, per named index, the class it resolves to.
        let mut resolved: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut named_dsts: Vec<HashMap<usize, Bitset>> = vec![HashMap::new(); named_index.len()];
        for (d, e) in self.endpoints.iter().enumerate() {
            for port in &e.ports {
                if let (Some(&index), Some(class)) = (
                    named_index.get(&(port.protocol, port.name.as_str())),
                    classes.class_of(port.protocol, port.port),
                ) {
                    resolved[d].push((index, class));
                    named_dsts[index]
                        .entry(class)
                        .or_insert_with(|| Bitset::empty(n))
                        .insert(d);
                }
            }
            resolved[d].sort_unstable();
        }

        // Rules: peer bitsets (cached per distinct peer) and port classes.
        let mut peer_cache: HashMap<&CompiledPeer, Bitset> = HashMap::new();
        let mut namespace_cache: HashMap<&LabelSelector, Vec<usize>> = HashMap::new();
        let mut rules = Vec::new();
        let mut rule_ids: Vec<[Vec<usize>; 2]> = Vec::with_capacity(self.policies.len());
        for policy in &self.policies {
            let mut ids: [Vec<usize>; 2] = Default::default();
            for (slot, list) in [(0, &policy.ingress), (1, &policy.egress)] {
                for rule in list.as_deref().unwrap_or_default() {
                    ids[slot].push(rules.len());
                    let peers = if rule.peers.is_empty() {
                        Bitset::full(n)
                    } else {
                        let mut set = Bitset::empty(n);
                        for peer in &rule.peers {
                            let one = peer_cache
                                .entry(peer)
                                .or_insert_with(|| self.peer_set(peer, &mut namespace_cache));
                            set.union_with(one);
                        }
                        set
                    };
                    let mut fixed = Vec::new();
                    let mut named = Vec::new();
                    if rule.ports.is_empty() {
                        fixed.extend(0..k);
                    }
                    for port in &rule.ports {
                        match port {
                            CompiledPort::Range {
                                protocol,
                                start,
                                end,
                            } => fixed.extend(classes.classes_in(*protocol, *start, *end)),
                            CompiledPort::Named { protocol, name } => {
                                if let Some(&index) = named_index.get(&(*protocol, name.as_str())) {
                                    named.push(index);
                                }
                            }
                        }
                    }
                    fixed.sort_unstable();
                    fixed.dedup();
                    named.sort_unstable();
                    named.dedup();
                    rules.push(RuleData {
                        peers,
                        fixed,
                        named,
                    });
                }
            }
            rule_ids.push(ids);
        }

        let (ingress, ingress_sig) =
            self.signatures(PolicyType::Ingress, &rules, &rule_ids, &resolved, k);
        let (egress, egress_sig) =
            self.signatures(PolicyType::Egress, &rules, &rule_ids, &resolved, k);
        Prepared {
            n,
            classes,
            rules,
            named_dsts,
            ingress,
            ingress_sig,
            egress,
            egress_sig,
        }
    }

    fn all_rules(&self) -> impl Iterator<Item = &CompiledRule> {
        self.policies.iter().flat_map(|p| {
            p.ingress
                .iter()
                .chain(p.egress.iter())
                .flat_map(|rules| rules.iter())
        })
    }

    /// The endpoints a peer matches.
    fn peer_set<'a>(
        &'a self,
        peer: &'a CompiledPeer,
        namespace_cache: &mut HashMap<&'a LabelSelector, Vec<usize>>,
    ) -> Bitset {
        let n = self.endpoints.len();
        let mut set = Bitset::empty(n);
        match peer {
            CompiledPeer::Select { namespaces, pods } => {
                let in_scope: &[usize] = match namespaces {
                    NamespaceScope::Own(None) => &[],
                    NamespaceScope::Own(Some(ns)) => std::slice::from_ref(ns),
                    NamespaceScope::Matching(selector) => {
                        namespace_cache.entry(selector).or_insert_with(|| {
                            (0..self.namespaces.len())
                                .filter(|&ns| selector.matches(&self.namespaces[ns].labels))
                                .collect()
                        })
                    }
                };
                for &ns in in_scope {
                    for pod in self.namespaces[ns].pods.clone() {
                        if pods
                            .as_ref()
                            .is_none_or(|s| s.matches(&self.endpoints[pod].labels))
                        {
                            set.insert(pod);
                        }
                    }
                }
            }
            CompiledPeer::Block { cidr, except } => {
                let candidates = if self.options.ip_block_matches_pods {
                    0..n
                } else {
                    self.pod_count..n
                };
                for e in candidates {
                    if self.endpoints[e]
                        .ips
                        .iter()
                        .any(|ip| block_contains(cidr, except, *ip))
                    {
                        set.insert(e);
                    }
                }
            }
        }
        set
    }

    /// Groups the endpoints isolated in `direction` by the rules that apply to them.
    fn signatures(
        &self,
        direction: PolicyType,
        rules: &[RuleData],
        rule_ids: &[[Vec<usize>; 2]],
        resolved: &[Vec<(usize, usize)>],
        k: usize,
    ) -> (Vec<Signature>, Vec<Option<usize>>) {
        let (slot, selecting) = match direction {
            PolicyType::Ingress => (0, &self.ingress_of),
            PolicyType::Egress => (1, &self.egress_of),
        };
        let mut index: HashMap<SignatureKey, usize> = HashMap::new();
        let mut signatures: Vec<Signature> = Vec::new();
        let mut of = vec![None; self.endpoints.len()];
        for (e, policies) in selecting.iter().enumerate() {
            if policies.is_empty() {
                continue;
            }
            let ids: Vec<usize> = policies
                .iter()
                .flat_map(|&p| rule_ids[p][slot].iter().copied())
                .collect();
            // Ingress resolves named ports on the owner (the destination): part of the key.
            let own_named: Vec<(usize, usize)> = match direction {
                PolicyType::Ingress => ids
                    .iter()
                    .flat_map(|&r| {
                        rules[r].named.iter().filter_map(move |named| {
                            resolved[e]
                                .iter()
                                .find(|(index, _)| index == named)
                                .map(|&(_, class)| (r, class))
                        })
                    })
                    .collect(),
                PolicyType::Egress => Vec::new(),
            };
            let key = (ids, own_named);
            let sig = match index.get(&key) {
                Some(&sig) => sig,
                None => {
                    let mut by_class = vec![Vec::new(); k];
                    let mut named = vec![Vec::new(); k];
                    for &r in &key.0 {
                        for &class in &rules[r].fixed {
                            by_class[class].push(r);
                        }
                        if direction == PolicyType::Egress {
                            for &n in &rules[r].named {
                                for slot in &mut named {
                                    slot.push((r, n));
                                }
                            }
                        }
                    }
                    for &(r, class) in &key.1 {
                        by_class[class].push(r);
                    }
                    let sig = signatures.len();
                    signatures.push(Signature {
                        members: Vec::new(),
                        rules: by_class,
                        named,
                    });
                    index.insert(key, sig);
                    sig
                }
            };
            signatures[sig].members.push(e);
            of[e] = Some(sig);
        }
        (signatures, of)
    }
}

/// Scratch space for one class: the ingress matrix by destination, its transpose.
struct ClassWork {
    n: usize,
    w: usize,
    by_dst: Vec<u64>,
    by_src: Vec<u64>,
    full: Bitset,
}

impl ClassWork {
    fn new(n: usize) -> Self {
        let w = words_for(n);
        Self {
            n,
            w,
            by_dst: vec![0; w * 64 * w],
            by_src: vec![0; w * 64 * w],
            full: Bitset::full(n),
        }
    }

    /// The union of the peer sets of `rules` (plus named-port contributions) or `None`.
    fn union(
        prepared: &Prepared,
        n: usize,
        rules: &[usize],
        named: &[(usize, usize)],
        class: usize,
    ) -> Option<Bitset> {
        let mut set: Option<Bitset> = None;
        for &r in rules {
            set.get_or_insert_with(|| Bitset::empty(n))
                .union_with(&prepared.rules[r].peers);
        }
        for &(r, index) in named {
            if let Some(dsts) = prepared.named_dsts[index].get(&class) {
                let mut part = dsts.clone();
                part.intersect_with(&prepared.rules[r].peers);
                set.get_or_insert_with(|| Bitset::empty(n))
                    .union_with(&part);
            }
        }
        set
    }

    fn run(&mut self, prepared: &Prepared, class: usize) -> Vec<Row> {
        let (n, w) = (self.n, self.w);

        // Ingress, by destination: which sources each destination accepts.
        let ingress: Vec<Option<Bitset>> = prepared
            .ingress
            .iter()
            .map(|sig| Self::union(prepared, n, &sig.rules[class], &[], class))
            .collect();
        self.by_dst.fill(0);
        for d in 0..n {
            let words = match prepared.ingress_sig[d] {
                None => Some(self.full.words()),
                Some(sig) => ingress[sig].as_ref().map(Bitset::words),
            };
            if let Some(words) = words {
                self.by_dst[d * w..(d + 1) * w].copy_from_slice(words);
            }
        }

        // Transpose: by source, which destinations accept it.
        let mut block = [0u64; 64];
        for bi in 0..w {
            for bj in 0..w {
                for (k, slot) in block.iter_mut().enumerate() {
                    *slot = self.by_dst[(bi * 64 + k) * w + bj];
                }
                bitset::transpose64(&mut block);
                for (i, word) in block.iter().enumerate() {
                    self.by_src[(bj * 64 + i) * w + bi] = *word;
                }
            }
        }

        // Egress, by source; AND with what destinations accept; a pod reaches itself.
        let egress: Vec<Option<Bitset>> = prepared
            .egress
            .iter()
            .map(|sig| Self::union(prepared, n, &sig.rules[class], &sig.named[class], class))
            .collect();
        let mut row = vec![0u64; w];
        let mut rows = Vec::with_capacity(n);
        for s in 0..n {
            let accepted = &self.by_src[s * w..(s + 1) * w];
            match prepared.egress_sig[s] {
                None => row.copy_from_slice(accepted),
                Some(sig) => match &egress[sig] {
                    None => row.fill(0),
                    Some(allowed) => {
                        for ((out, a), b) in row.iter_mut().zip(allowed.words()).zip(accepted) {
                            *out = a & b;
                        }
                    }
                },
            }
            row[s / 64] |= 1u64 << (s % 64);
            rows.push(Row::from_words(&row, n));
        }
        rows
    }
}
