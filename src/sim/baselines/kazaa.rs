//! Kazaa (FastTrack): super-peers chosen by capacity index their leaves and
//! flood among themselves.
//!
//! Each node draws a capacity from a Pareto law (shape [`SHAPE`]); the
//! `N / leaves_per_super` most capable become super-peers. Every other
//! node attaches to one super-peer drawn uniformly and registers its keys
//! there (one message); a super-peer indexes its own keys. Super-peers link
//! to about `degree` others at random.
//!
//! A lookup: the leaf asks its super-peer (one hop); the super-peer answers
//! from its own index, or else floods the super-peer overlay with TTL `ttl`
//! exactly as Gnutella floods (duplicates counted, hits back along the
//! reverse path); it replies to the leaf, which then fetches from the
//! holder directly (request and data, one hop). Hops = leaf to super-peer
//! + super-peer distance to the nearest indexing super-peer + the fetch.
//!
//! Exposure: a super-peer knows which of its leaves asked, so a leaf's
//! lookup is exposed once its super-peer receives it; a super-peer's own
//! lookup is exposed under Gnutella's TTL rule; and the holder sees the
//! requester's address on the direct download in either case.
//!
//! Failure: a leaf whose super-peer failed cannot search, and its keys are
//! no longer indexed (no re-attachment); the flood loses failed branches.

use rand::{Rng, RngCore};
use std::borrow::Cow;

use super::{Csr, Flood, Holdings, Nodes, Params};
use crate::sim::model::{Lookup, Model, NodeIx};

/// Pareto shape of the capacity draw: heavy-tailed, as measured peer
/// bandwidths are.
pub const SHAPE: f64 = 1.2;

const NONE: u32 = u32::MAX;

pub(crate) struct Kazaa {
    nodes: Nodes,
    /// Super-peers, most capable first; overlay indices point into this.
    supers: Vec<NodeIx>,
    /// For each node, its overlay index if it is a super-peer.
    local: Vec<u32>,
    /// For each node, the super-peer indexing it (a super-peer: itself).
    sp_of: Vec<NodeIx>,
    /// The super-peer overlay, by overlay index.
    overlay: Csr,
    ttl: u32,
    registered: Holdings,
    held: Holdings,
    flood: Flood,
}

impl Kazaa {
    pub fn new(n: usize, params: &Params, rng: &mut dyn RngCore) -> Kazaa {
        // Pareto(x_m = 1, SHAPE) by inversion: U^(-1/SHAPE), U in (0, 1].
        let capacity: Vec<f64> = (0..n)
            .map(|_| (1.0 - rng.gen::<f64>()).powf(-1.0 / SHAPE))
            .collect();
        let mut order: Vec<NodeIx> = (0..n as NodeIx).collect();
        order.sort_by(|&a, &b| {
            capacity[b as usize]
                .total_cmp(&capacity[a as usize])
                .then(a.cmp(&b))
        });
        let count = (n / params.leaves_per_super.max(1)).clamp(1.min(n), n);
        let supers: Vec<NodeIx> = order[..count].to_vec();
        let mut local = vec![NONE; n];
        for (i, &s) in supers.iter().enumerate() {
            local[s as usize] = i as u32;
        }
        let sp_of: Vec<NodeIx> = (0..n)
            .map(|v| {
                if local[v] != NONE {
                    v as NodeIx
                } else {
                    supers[rng.gen_range(0..count)]
                }
            })
            .collect();
        let mut overlay: Vec<Vec<u32>> = vec![Vec::new(); count];
        if count > 1 {
            let links = params.degree.div_ceil(2).min(count - 1);
            for a in 0..count {
                let mut made = 0;
                let mut tries = 0;
                while made < links && tries < links * 20 {
                    tries += 1;
                    let b = rng.gen_range(0..count);
                    if b == a || overlay[a].contains(&(b as u32)) {
                        continue;
                    }
                    overlay[a].push(b as u32);
                    overlay[b].push(a as u32);
                    made += 1;
                }
            }
            for list in &mut overlay {
                list.sort_unstable();
                list.dedup();
            }
        }
        Kazaa {
            nodes: Nodes::new(n),
            supers,
            local,
            sp_of,
            overlay: Csr::new(&overlay),
            ttl: params.ttl,
            registered: Holdings::default(),
            held: Holdings::default(),
            flood: Flood::default(),
        }
    }

    /// The first registered holder of `key` that super-peer `sp` indexes.
    fn indexed_by(&self, key: u64, sp: NodeIx) -> Option<NodeIx> {
        self.registered
            .holders(key)
            .iter()
            .copied()
            .find(|&h| self.sp_of[h as usize] == sp)
    }

    /// Search the super-peer layer from `sp` on behalf of `from`: the
    /// holder found, after adding the cost to `out`.
    fn search(&mut self, from: NodeIx, sp: NodeIx, key: u64, out: &mut Lookup) -> Option<NodeIx> {
        if let Some(h) = self.indexed_by(key, sp) {
            return Some(h);
        }
        let holders = self.registered.holders(key);
        let sp_of = &self.sp_of;
        let supers = &self.supers;
        let alive = &self.nodes.alive;
        let flood = self.flood.run(
            &self.overlay,
            |s| alive[supers[s as usize] as usize],
            self.local[sp as usize],
            self.ttl,
            |s| {
                holders
                    .iter()
                    .any(|&h| sp_of[h as usize] == supers[s as usize])
            },
        );
        let load = &mut self.nodes.load;
        self.flood
            .charge(|s, count| load[supers[s as usize] as usize] += count);
        out.messages += flood.copies + flood.hit_messages;
        if from == sp {
            out.requester_exposed |= flood.neighbour_reached;
        }
        let (s, dist) = flood.nearest?;
        out.hops += dist;
        self.indexed_by(key, self.supers[s as usize])
    }
}

impl Model for Kazaa {
    fn name(&self) -> &'static str {
        "kazaa"
    }

    fn nodes(&self) -> usize {
        self.sp_of.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if !self.nodes.alive(from) {
            return;
        }
        self.held.add(key, from);
        let sp = self.sp_of[from as usize];
        if sp == from || self.nodes.send(from, sp) {
            self.registered.add(key, from);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        if let Some(done) = self.nodes.settled(from, key, &self.held) {
            return done;
        }
        let mut out = Lookup::default();
        let sp = self.sp_of[from as usize];
        // The super-peer knows which of its leaves asked.
        if sp != from && !self.nodes.ask(from, sp, &mut out) {
            return out;
        }
        let holder = self.search(from, sp, key, &mut out);
        if let Some(holder) = holder {
            self.nodes.fetch(from, holder, key, &self.held, &mut out);
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
