//! Pastry: prefix routing in base 2^b (b = 4) with leaf sets, recursive.
//!
//! Node ids are uniform 64-bit draws, read as 16 hex digits; keys are
//! already uniform 64-bit ids. Key `k` lives at the node whose id is
//! numerically closest to `k` on the circle. Each node keeps a routing
//! table (row `l`, column `c`: some node, drawn at random, sharing the
//! first `l` digits with it and having digit `c` next; proximity is not
//! modelled) and a leaf set of the `leaf_set / 2` nodes on either side.
//!
//! Routing, recursive as in the Pastry paper: if the key lies within the
//! leaf set's range, forward to the leaf numerically closest to it (or
//! deliver here); otherwise forward to the routing-table entry sharing one
//! more digit with the key; failing that (an empty entry, or a dead one),
//! to any known node sharing at least as long a prefix and numerically
//! closer. The value returns along the reverse path. Hops = forwards;
//! messages = forwards + the reply hops + forwards lost to failed nodes.
//!
//! Exposure: a message carries no source address and the reply retraces
//! the path, so a hop cannot in general tell a forwarder from the
//! originator. One case it can: routing only ever forwards to a node that
//! shares a longer prefix with the key, or lies within the key's leaf-set
//! neighbourhood. So when the sender shares no digit with the key and the
//! key is outside the sender's leaf-set range (the hop was a routing-table
//! hop), no node could have forwarded to the sender: it originated the
//! request. This holds when every node's row 0 is full (every leading digit
//! exists, true above ~100 nodes) and without failures; with failures a
//! fallback forward may also land on such a node, so the figure then
//! slightly overstates what a first hop can be sure of.
//!
//! Failure: the forwarding node times out on a dead next hop (one message)
//! and tries the next candidate; when none is left it delivers to itself,
//! which does not hold the key. No table repair, no replicas.

use rand::{Rng, RngCore};
use std::borrow::Cow;

use super::{circ, cw, distinct_ids, Holdings, Nodes, Params};
use crate::sim::model::{Lookup, Model, NodeIx};

const NONE: NodeIx = NodeIx::MAX;
const DIGITS: usize = 16;
/// A bound on forwards per message.
const MAX_HOPS: u32 = 128;

fn digit(x: u64, row: usize) -> usize {
    ((x >> (60 - 4 * row)) & 0xF) as usize
}

fn shared(a: u64, b: u64) -> usize {
    ((a ^ b).leading_zeros() / 4) as usize
}

pub(crate) struct Pastry {
    nodes: Nodes,
    id: Vec<u64>,
    ring: Vec<NodeIx>,
    pos: Vec<u32>,
    half: usize,
    /// Routing-table rows: node `v` owns `table[start[v]..start[v + 1]]`.
    table: Vec<[NodeIx; 16]>,
    start: Vec<u32>,
    row0_full: bool,
    stored: Holdings,
    path: Vec<NodeIx>,
}

struct Route {
    end: Option<NodeIx>,
    /// The first forward left the requester by a routing-table entry.
    first_by_table: bool,
}

impl Pastry {
    pub fn new(n: usize, params: &Params, rng: &mut dyn RngCore) -> Pastry {
        let id = distinct_ids(n, rng);
        let mut ring: Vec<NodeIx> = (0..n as NodeIx).collect();
        ring.sort_by_key(|&v| id[v as usize]);
        let mut pos = vec![0u32; n];
        for (p, &v) in ring.iter().enumerate() {
            pos[v as usize] = p as u32;
        }
        // Ring positions of the ids in [lo, lo + 2^span_bits).
        let block = |lo: u64, span_bits: u32| {
            let a = ring.partition_point(|&v| id[v as usize] < lo);
            let hi = u128::from(lo) + (1u128 << span_bits);
            let b = match u64::try_from(hi) {
                Ok(hi) => ring.partition_point(|&v| id[v as usize] < hi),
                Err(_) => ring.len(),
            };
            (a, b.max(a))
        };
        let mut table = Vec::new();
        let mut start = Vec::with_capacity(n + 1);
        for &x in &id {
            start.push(table.len() as u32);
            for row in 0..DIGITS {
                let prefix_bits = 4 * row as u32;
                let base = if row == 0 {
                    0
                } else {
                    x >> (64 - prefix_bits) << (64 - prefix_bits)
                };
                let (a, b) = block(base, 64 - prefix_bits);
                if b - a <= 1 {
                    break;
                }
                let mut entries = [NONE; 16];
                for (c, entry) in entries.iter_mut().enumerate() {
                    if c == digit(x, row) {
                        continue;
                    }
                    let lo = base | ((c as u64) << (60 - prefix_bits));
                    let (a, b) = block(lo, 60 - prefix_bits);
                    if b > a {
                        *entry = ring[rng.gen_range(a..b)];
                    }
                }
                table.push(entries);
            }
        }
        start.push(table.len() as u32);
        let mut first = [false; 16];
        for &x in &id {
            first[digit(x, 0)] = true;
        }
        Pastry {
            nodes: Nodes::new(n),
            id,
            ring,
            pos,
            half: (params.leaf_set / 2).max(1),
            table,
            start,
            row0_full: first.iter().all(|&f| f),
            stored: Holdings::default(),
            path: Vec::new(),
        }
    }

    /// Node `v`'s leaf set: the `half` nodes on either side on the ring
    /// (everyone else when there are no more than `2 * half` others).
    fn leaves(&self, v: NodeIx) -> Vec<NodeIx> {
        let n = self.ring.len();
        let p = self.pos[v as usize] as usize;
        if n <= 2 * self.half + 1 {
            return (1..n).map(|k| self.ring[(p + k) % n]).collect();
        }
        (1..=self.half)
            .flat_map(|k| [self.ring[(p + k) % n], self.ring[(p + n - k) % n]])
            .collect()
    }

    /// The key is within node `v`'s leaf-set range.
    fn in_leaf_range(&self, v: NodeIx, key: u64) -> bool {
        let n = self.ring.len();
        if n <= 2 * self.half + 1 {
            return true;
        }
        let p = self.pos[v as usize] as usize;
        let lo = self.id[self.ring[(p + n - self.half) % n] as usize];
        let hi = self.id[self.ring[(p + self.half) % n] as usize];
        cw(lo, key) <= cw(lo, hi)
    }

    /// Where node `v` may forward `key`, best first; true when the first
    /// is a routing-table entry.
    fn next_hops(&self, v: NodeIx, key: u64, out: &mut Vec<NodeIx>) -> bool {
        out.clear();
        let me = self.id[v as usize];
        let mine = circ(me, key);
        let closer = |c: &NodeIx| circ(self.id[*c as usize], key) < mine;
        let by_distance = |a: &NodeIx, b: &NodeIx| {
            circ(self.id[*a as usize], key)
                .cmp(&circ(self.id[*b as usize], key))
                .then(a.cmp(b))
        };
        if self.in_leaf_range(v, key) {
            out.extend(self.leaves(v).into_iter().filter(closer));
            out.sort_by(by_distance);
            return false;
        }
        let l = shared(me, key);
        let rows =
            &self.table[self.start[v as usize] as usize..self.start[v as usize + 1] as usize];
        let primary = rows.get(l).map(|r| r[digit(key, l)]).filter(|&e| e != NONE);
        let longer = |c: &NodeIx| shared(self.id[*c as usize], key) >= l;
        let mut rest: Vec<NodeIx> = self
            .leaves(v)
            .into_iter()
            .chain(
                rows.iter()
                    .flat_map(|r| r.iter().copied())
                    .filter(|&e| e != NONE),
            )
            .filter(|c| closer(c) && longer(c) && Some(*c) != primary)
            .collect();
        rest.sort_by(by_distance);
        rest.dedup();
        out.extend(primary);
        out.extend(rest);
        primary.is_some()
    }

    /// Route a message for `key` from `from`, recursively; the path taken
    /// is left in `self.path` (requester first).
    fn route(&mut self, from: NodeIx, key: u64, out: &mut Lookup) -> Route {
        self.path.clear();
        self.path.push(from);
        let mut route = Route {
            end: None,
            first_by_table: false,
        };
        let mut hops = Vec::with_capacity(DIGITS * 4);
        let mut at = from;
        while out.hops < MAX_HOPS {
            let by_table = self.next_hops(at, key, &mut hops);
            let mut moved = false;
            for (i, &next) in hops.iter().enumerate() {
                out.messages += 1;
                if self.nodes.send(at, next) {
                    if out.hops == 0 {
                        route.first_by_table = by_table && i == 0;
                    }
                    out.hops += 1;
                    self.path.push(next);
                    at = next;
                    moved = true;
                    break;
                }
            }
            if !moved {
                route.end = Some(at);
                return route;
            }
        }
        route
    }
}

impl Model for Pastry {
    fn name(&self) -> &'static str {
        "pastry"
    }

    fn nodes(&self) -> usize {
        self.id.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if !self.nodes.alive(from) {
            return;
        }
        let mut cost = Lookup::default();
        if let Some(owner) = self.route(from, key, &mut cost).end {
            self.stored.add(key, owner);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        let mut out = Lookup::default();
        if !self.nodes.alive(from) {
            return out;
        }
        let route = self.route(from, key, &mut out);
        let Some(end) = route.end else {
            return out;
        };
        out.found = self.stored.holds(key, end);
        // The answer (value or miss) retraces the path.
        self.nodes.retrace(&self.path, &mut out);
        out.requester_exposed =
            route.first_by_table && self.row0_full && shared(self.id[from as usize], key) == 0;
        out
    }

    fn load(&self) -> Cow<'_, [u64]> {
        Cow::Borrowed(&self.nodes.load)
    }

    fn fail(&mut self, nodes: &[NodeIx]) {
        self.nodes.fail(nodes);
    }

    fn set_online(&mut self, node: NodeIx, online: bool) {
        self.nodes.set_online(node, online);
    }
}
