//! Gnutella (0.4): flooding with a time-to-live over the friend graph.
//!
//! A key stays with the node that inserted it (no messages). A lookup
//! floods a query with TTL `ttl` (see [`Flood::run`]); every holder the
//! flood reaches answers with a hit along the query's reverse path.
//! Messages = every query copy sent, duplicates included (the receiver's
//! duplicate suppression drops them, but they were sent) + the hits' reply
//! paths. Hops = the BFS distance of the nearest holder reached (for a
//! miss, the depth the flood reached). The
//! out-of-band download that follows a hit is not modelled: the hit counts
//! as the answer.
//!
//! Exposure: every node starts its queries with the same TTL, so a
//! neighbour that receives a query with TTL = `ttl` knows its sender
//! originated it. The requester is exposed whenever a live neighbour
//! receives its query. A failed node drops what it receives; the flood
//! loses that branch.

use rand::RngCore;
use std::borrow::Cow;

use super::{Csr, Flood, Holdings, Nodes, Params};
use crate::sim::model::{Graph, Lookup, Model, NodeIx};

pub(crate) struct Gnutella {
    adj: Csr,
    ttl: u32,
    nodes: Nodes,
    held: Holdings,
    flood: Flood,
}

impl Gnutella {
    pub fn new(graph: &Graph, params: &Params) -> Gnutella {
        Gnutella {
            adj: Csr::new(&graph.adj),
            ttl: params.ttl,
            nodes: Nodes::new(graph.nodes()),
            held: Holdings::default(),
            flood: Flood::default(),
        }
    }
}

impl Model for Gnutella {
    fn name(&self) -> &'static str {
        "gnutella"
    }

    fn nodes(&self) -> usize {
        self.adj.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if self.nodes.alive(from) {
            self.held.add(key, from);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        if let Some(done) = self.nodes.settled(from, key, &self.held) {
            return done;
        }
        let mut out = Lookup::default();
        let holders = self.held.holders(key);
        let alive = &self.nodes.alive;
        let flood = self.flood.run(
            &self.adj,
            |w| alive[w as usize],
            from,
            self.ttl,
            |w| holders.contains(&w),
        );
        let load = &mut self.nodes.load;
        self.flood.charge(|w, count| load[w as usize] += count);
        out.messages = flood.copies + flood.hit_messages;
        out.requester_exposed = flood.neighbour_reached;
        match flood.nearest {
            Some((_, dist)) => {
                out.found = true;
                out.hops = dist;
            }
            None => out.hops = flood.depth,
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
