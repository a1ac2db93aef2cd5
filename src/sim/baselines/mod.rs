//! The lecture's systems as baselines for `veil sim --system NAME`: small,
//! honest models of Napster, Gnutella, Kazaa, Chord, Pastry and CAN, each a
//! [`Model`] run on the same keys and lookups as veil's own router.
//!
//! They are models, not implementations: no wire format, no clock, no join
//! or repair protocol. Each one builds its overlay at once from a seed, then
//! counts the hops and messages its textbook lookup takes, the load each
//! node handles, and whether some node other than the requester can name
//! the requester with certainty under the system's own rules.
//! `docs/baselines.md` states each model's rules and what it leaves out.
//!
//! Shared rules: every message costs its sender one unit of load and, when
//! the receiver is alive, the receiver one unit. A failed node drops what it
//! receives; survivors keep their routing state, stale, and fall back as the
//! textbook system does, within a bound.

use std::collections::HashMap;

use rand::RngCore;

use super::model::{Graph, Lookup, Model, NodeIx};

mod can;
mod chord;
mod gnutella;
mod kazaa;
mod napster;
mod pastry;

/// The names `build` accepts, in the lecture's order.
pub const SYSTEMS: &[&str] = &["napster", "gnutella", "kazaa", "chord", "pastry", "can"];

/// Knobs of the baselines. Each system reads only the fields it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Flooding time-to-live: Gnutella's query TTL, Kazaa's among
    /// super-peers. Gnutella's customary default is 7.
    pub ttl: u32,
    /// Kazaa: links each super-peer has to other super-peers (mean).
    pub degree: usize,
    /// CAN: dimensions of the torus.
    pub dims: usize,
    /// Kazaa: ordinary nodes per super-peer (super-peers = N / this, at
    /// least one).
    pub leaves_per_super: usize,
    /// Chord: length of each node's successor list.
    pub successors: usize,
    /// Pastry: leaf-set size L (L/2 on each side).
    pub leaf_set: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ttl: 7,
            degree: 10,
            dims: 2,
            leaves_per_super: 100,
            successors: 16,
            leaf_set: 16,
        }
    }
}

/// Build the model called `name` over `graph` (only Gnutella uses its
/// edges; the others use its node count). `rng` draws the overlay: ids,
/// zones, super-peers, table entries. None for an unknown name.
pub fn build(
    name: &str,
    graph: &Graph,
    params: &Params,
    rng: &mut dyn RngCore,
) -> Option<Box<dyn Model>> {
    let n = graph.nodes();
    Some(match name {
        "napster" => Box::new(napster::Napster::new(n, rng)),
        "gnutella" => Box::new(gnutella::Gnutella::new(graph, params)),
        "kazaa" => Box::new(kazaa::Kazaa::new(n, params, rng)),
        "chord" => Box::new(chord::Chord::new(n, params, rng)),
        "pastry" => Box::new(pastry::Pastry::new(n, params, rng)),
        "can" => Box::new(can::Can::new(n, params, rng)),
        _ => return None,
    })
}

/// Who is alive and how many messages each node handled.
#[derive(Clone, Debug)]
pub(crate) struct Nodes {
    pub alive: Vec<bool>,
    pub load: Vec<u64>,
}

impl Nodes {
    pub fn new(n: usize) -> Nodes {
        Nodes {
            alive: vec![true; n],
            load: vec![0; n],
        }
    }

    pub fn alive(&self, node: NodeIx) -> bool {
        self.alive.get(node as usize).copied().unwrap_or(false)
    }

    /// One message from `from` to `to`; true when `to` is alive to get it.
    pub fn send(&mut self, from: NodeIx, to: NodeIx) -> bool {
        if let Some(l) = self.load.get_mut(from as usize) {
            *l += 1;
        }
        let delivered = self.alive(to);
        if delivered {
            self.load[to as usize] += 1;
        }
        delivered
    }

    /// A lookup that ends before any message: the requester is down (not
    /// found) or holds the key itself (found, no hop, nobody learns).
    pub fn settled(&self, from: NodeIx, key: u64, held: &Holdings) -> Option<Lookup> {
        if !self.alive(from) {
            return Some(Lookup::default());
        }
        held.holds(key, from).then(|| Lookup {
            found: true,
            ..Lookup::default()
        })
    }

    /// `from` asks `to` directly and `to` answers: request and reply, one
    /// hop, and `to` sees the requester's address. False when `to` is down
    /// (the request is lost, no hop).
    pub fn ask(&mut self, from: NodeIx, to: NodeIx, out: &mut Lookup) -> bool {
        out.messages += 1;
        if !self.send(from, to) {
            return false;
        }
        out.messages += 1;
        self.send(to, from);
        out.hops += 1;
        out.requester_exposed = true;
        true
    }

    /// The answer retraces a recursive route's `path` (requester first),
    /// one message a hop.
    pub fn retrace(&mut self, path: &[NodeIx], out: &mut Lookup) {
        for w in path.windows(2).rev() {
            out.messages += 1;
            self.send(w[1], w[0]);
        }
    }

    /// Napster's and Kazaa's last step: download `key` straight from
    /// `holder`. The holder sees the requester's address.
    pub fn fetch(
        &mut self,
        from: NodeIx,
        holder: NodeIx,
        key: u64,
        held: &Holdings,
        out: &mut Lookup,
    ) {
        out.found = self.ask(from, holder, out) && held.holds(key, holder);
    }

    /// Churn: a node leaves (as a failure) or comes back with its routing
    /// state and holdings as they were (no repair, as everywhere here).
    pub fn set_online(&mut self, node: NodeIx, online: bool) {
        if let Some(a) = self.alive.get_mut(node as usize) {
            *a = online;
        }
    }

    pub fn fail(&mut self, nodes: &[NodeIx]) {
        for &n in nodes {
            if let Some(a) = self.alive.get_mut(n as usize) {
                *a = false;
            }
        }
    }
}

/// Which nodes hold (or have registered) which keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct Holdings(HashMap<u64, Vec<NodeIx>>);

impl Holdings {
    pub fn add(&mut self, key: u64, node: NodeIx) {
        let holders = self.0.entry(key).or_default();
        if !holders.contains(&node) {
            holders.push(node);
        }
    }

    pub fn holders(&self, key: u64) -> &[NodeIx] {
        self.0.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn holds(&self, key: u64, node: NodeIx) -> bool {
        self.holders(key).contains(&node)
    }
}

/// What one TTL flood reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FloodOutcome {
    /// Query copies sent, duplicates and copies to failed nodes included.
    pub copies: u64,
    /// The nearest holder reached and its BFS distance.
    pub nearest: Option<(u32, u32)>,
    /// Hit messages: each holder reached answers along the reverse path.
    pub hit_messages: u64,
    /// Some live neighbour of the origin received the query.
    pub neighbour_reached: bool,
    /// The farthest BFS distance the query reached.
    pub depth: u32,
}

/// Adjacency lists packed into one array (compressed sparse rows): what a
/// flood walks, kept contiguous because a flood walks all of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Csr {
    start: Vec<u32>,
    to: Vec<u32>,
}

impl Csr {
    pub fn new(lists: &[Vec<u32>]) -> Csr {
        let mut start = Vec::with_capacity(lists.len() + 1);
        let mut to = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for list in lists {
            start.push(to.len() as u32);
            to.extend_from_slice(list);
        }
        start.push(to.len() as u32);
        Csr { start, to }
    }

    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    pub fn of(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.to[self.start[v] as usize..self.start[v + 1] as usize]
    }
}

/// A node's mark in the current flood.
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    /// The flood (lookup number) that last reached it.
    epoch: u32,
    /// Messages it sent or received in this flood.
    handled: u32,
}

/// A reusable breadth-first flood: marks by epoch so that no lookup clears
/// an array of N entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flood {
    marks: Vec<Mark>,
    /// Distance and first sender of each node reached.
    tree: Vec<(u32, u32)>,
    queue: Vec<u32>,
    now: u32,
}

const NO_PARENT: u32 = u32::MAX;

impl Flood {
    /// Flood from `origin` over `adj` with time-to-live `ttl`, Gnutella's
    /// way: the origin sends to every neighbour; a live node, on the first
    /// copy, answers if `holder` says it holds the key and, while its
    /// distance is below `ttl`, forwards to every neighbour but the one it
    /// got the first copy from; later copies are dropped as duplicates.
    /// First copies are taken to come along shortest paths (breadth-first
    /// order, as with equal link latencies). Afterwards [`Flood::charge`]
    /// reports what each node handled.
    pub fn run(
        &mut self,
        adj: &Csr,
        alive: impl Fn(u32) -> bool,
        origin: u32,
        ttl: u32,
        holder: impl Fn(u32) -> bool,
    ) -> FloodOutcome {
        let n = adj.len();
        if self.marks.len() != n {
            self.marks = vec![Mark::default(); n];
            self.tree = vec![(0, NO_PARENT); n];
            self.now = 0;
        }
        self.now = self.now.wrapping_add(1);
        if self.now == 0 {
            self.marks.iter_mut().for_each(|m| m.epoch = 0);
            self.now = 1;
        }
        self.queue.clear();
        let mut out = FloodOutcome::default();
        if origin as usize >= n {
            return out;
        }
        let now = self.now;
        self.queue.push(origin);
        self.marks[origin as usize] = Mark {
            epoch: now,
            handled: 0,
        };
        self.tree[origin as usize] = (0, NO_PARENT);
        let mut head = 0;
        while head < self.queue.len() {
            let u = self.queue[head];
            head += 1;
            let (du, from) = self.tree[u as usize];
            if du >= ttl {
                continue;
            }
            let mut sent = 0;
            for &w in adj.of(u) {
                if w == from {
                    continue;
                }
                sent += 1;
                if !alive(w) {
                    continue;
                }
                let mark = &mut self.marks[w as usize];
                if mark.epoch == now {
                    mark.handled += 1;
                    continue;
                }
                *mark = Mark {
                    epoch: now,
                    handled: 1,
                };
                self.tree[w as usize] = (du + 1, u);
                self.queue.push(w);
                out.depth = out.depth.max(du + 1);
                if du == 0 {
                    out.neighbour_reached = true;
                }
                if holder(w) {
                    out.hit_messages += u64::from(du + 1);
                    if out.nearest.is_none() {
                        out.nearest = Some((w, du + 1));
                    }
                    // The hit retraces the query's path, one message a hop.
                    let mut at = w;
                    while self.tree[at as usize].1 != NO_PARENT {
                        self.marks[at as usize].handled += 1;
                        at = self.tree[at as usize].1;
                        self.marks[at as usize].handled += 1;
                    }
                }
            }
            self.marks[u as usize].handled += sent;
            out.copies += u64::from(sent);
        }
        out
    }

    /// Report, for every node the last flood reached, the messages it sent
    /// or received.
    pub fn charge(&self, mut f: impl FnMut(u32, u64)) {
        for &v in &self.queue {
            f(v, u64::from(self.marks[v as usize].handled));
        }
    }
}

/// A fixed 64-bit mixer (SplitMix64's finaliser): spreads a key onto a
/// system's own coordinates. Not cryptographic, and it need not be: keys
/// are already uniform; this only decorrelates the coordinates drawn from
/// one key.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` distinct uniform 64-bit ids, in draw order.
pub(crate) fn distinct_ids(count: usize, rng: &mut dyn RngCore) -> Vec<u64> {
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let id = rng.next_u64();
        if seen.insert(id) {
            ids.push(id);
        }
    }
    ids
}

/// Clockwise distance from `a` to `b` on the 64-bit circle.
pub(crate) fn cw(a: u64, b: u64) -> u64 {
    b.wrapping_sub(a)
}

/// Shortest distance between `a` and `b` on the 64-bit circle.
pub(crate) fn circ(a: u64, b: u64) -> u64 {
    cw(a, b).min(cw(b, a))
}
