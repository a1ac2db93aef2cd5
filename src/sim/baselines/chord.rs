//! Chord: a ring of 64-bit ids with finger tables and iterative lookup.
//!
//! Node ids are uniform 64-bit draws (standing in for a hash of each
//! node's address); keys are already uniform 64-bit ids. Key `k` lives at
//! successor(k), the first node whose id is at or after `k` clockwise.
//! Finger `i` of node `n` is successor(n + 2^i), i in 0..64; each node also
//! keeps a list of its `successors` next nodes.
//!
//! Lookup is iterative: the requester asks each node on the way for its
//! closest finger (or successor) preceding the key, request and reply, and
//! finally asks successor(k) for the value. Hops = remote nodes that
//! answered. Every node asked talks to the requester directly, so the
//! requester is exposed as soon as one remote node answers.
//!
//! Failure: a failed node does not answer (one message, a timeout); the
//! requester falls back to the next-closest preceding finger or successor
//! the last node named (its reply lists them all), and when the key's
//! successor is down, to the next entry of the successor list, which never
//! held the key. No stabilisation, no replicas.

use rand::RngCore;
use std::borrow::Cow;

use super::{cw, distinct_ids, Holdings, Nodes, Params};
use crate::sim::model::{Lookup, Model, NodeIx};

const BITS: usize = 64;
/// A bound on lookup steps; each step strictly nears the key, so it is
/// never reached on a consistent ring.
const MAX_STEPS: usize = 4 * BITS;

pub(crate) struct Chord {
    nodes: Nodes,
    id: Vec<u64>,
    /// Node indices sorted by id.
    ring: Vec<NodeIx>,
    /// `BITS` fingers per node, node-major.
    fingers: Vec<NodeIx>,
    /// `r` successors per node, node-major.
    succ: Vec<NodeIx>,
    r: usize,
    stored: Holdings,
}

impl Chord {
    pub fn new(n: usize, params: &Params, rng: &mut dyn RngCore) -> Chord {
        let id = distinct_ids(n, rng);
        let mut ring: Vec<NodeIx> = (0..n as NodeIx).collect();
        ring.sort_by_key(|&v| id[v as usize]);
        let r = params.successors.clamp(1, n.saturating_sub(1).max(1));
        let mut chord = Chord {
            nodes: Nodes::new(n),
            id,
            ring,
            fingers: Vec::with_capacity(n * BITS),
            succ: Vec::with_capacity(n * r),
            r,
            stored: Holdings::default(),
        };
        let mut pos = vec![0usize; n];
        for (p, &v) in chord.ring.iter().enumerate() {
            pos[v as usize] = p;
        }
        for (v, &p) in pos.iter().enumerate() {
            let me = chord.id[v];
            for i in 0..BITS {
                let f = chord.successor_of(me.wrapping_add(1u64 << i));
                chord.fingers.push(f);
            }
            for k in 1..=r {
                chord.succ.push(chord.ring[(p + k) % n]);
            }
        }
        chord
    }

    /// The first node at or after `point` clockwise (global knowledge, for
    /// building tables).
    fn successor_of(&self, point: u64) -> NodeIx {
        let at = self.ring.partition_point(|&v| self.id[v as usize] < point);
        self.ring[at % self.ring.len()]
    }

    /// The requester `from` asks `to`; true when `to` answered.
    fn contact(&mut self, from: NodeIx, to: NodeIx, out: &mut Lookup) -> bool {
        to == from || self.nodes.ask(from, to, out)
    }

    /// Iterative lookup of the node responsible for `key`, from `from`:
    /// the live node that ends it, if any.
    fn route(&mut self, from: NodeIx, key: u64, out: &mut Lookup) -> Option<NodeIx> {
        let mut cur = from;
        let mut cands: Vec<NodeIx> = Vec::with_capacity(BITS + self.r);
        for _ in 0..MAX_STEPS {
            let here = self.id[cur as usize];
            if key == here {
                return Some(cur);
            }
            let base = cur as usize;
            let succs = &self.succ[base * self.r..(base + 1) * self.r];
            if succs[0] == cur {
                // A ring of one: it holds everything.
                return Some(cur);
            }
            if cw(here, key) <= cw(here, self.id[succs[0] as usize]) {
                // The key is in (cur, successor]: ask the successor, or
                // the next one on the list if it is down.
                let succs = succs.to_vec();
                return succs.into_iter().find(|&s| self.contact(from, s, out));
            }
            // Preceding nodes strictly between cur and the key, the one
            // nearest the key first.
            cands.clear();
            let fingers = &self.fingers[base * BITS..(base + 1) * BITS];
            for &c in fingers.iter().chain(succs) {
                let d = cw(here, self.id[c as usize]);
                if d > 0 && d < cw(here, key) {
                    cands.push(c);
                }
            }
            cands.sort_by_key(|&c| std::cmp::Reverse(cw(here, self.id[c as usize])));
            cands.dedup();
            let mut next = None;
            for &c in &cands {
                if self.contact(from, c, out) {
                    next = Some(c);
                    break;
                }
            }
            cur = next?;
        }
        None
    }
}

impl Model for Chord {
    fn name(&self) -> &'static str {
        "chord"
    }

    fn nodes(&self) -> usize {
        self.id.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if !self.nodes.alive(from) {
            return;
        }
        let mut cost = Lookup::default();
        if let Some(owner) = self.route(from, key, &mut cost) {
            self.stored.add(key, owner);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        let mut out = Lookup::default();
        if !self.nodes.alive(from) {
            return out;
        }
        if let Some(owner) = self.route(from, key, &mut out) {
            out.found = self.stored.holds(key, owner);
        }
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
