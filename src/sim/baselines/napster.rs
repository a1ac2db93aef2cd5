//! Napster: one central index, downloads peer to peer.
//!
//! A node publishes by registering `(key, itself)` with the index (one
//! message). A lookup asks the index (request and reply), then fetches from
//! the first holder the index names (request and data): two hops, four
//! messages. The index sees every requester's address, so the requester is
//! always exposed once the index answers; the holder sees it too. With the
//! index gone nothing can be found: the index is the single point of
//! failure the lecture describes.

use rand::{Rng, RngCore};
use std::borrow::Cow;

use super::{Holdings, Nodes};
use crate::sim::model::{Lookup, Model, NodeIx};

pub(crate) struct Napster {
    nodes: Nodes,
    /// The node that runs the index (a seeded draw).
    index: NodeIx,
    /// What the index knows: key -> registered holders.
    registered: Holdings,
    /// What each node holds itself, registered or not.
    held: Holdings,
}

impl Napster {
    pub fn new(n: usize, rng: &mut dyn RngCore) -> Napster {
        let index = if n == 0 {
            0
        } else {
            rng.gen_range(0..n) as NodeIx
        };
        Napster {
            nodes: Nodes::new(n),
            index,
            registered: Holdings::default(),
            held: Holdings::default(),
        }
    }

    /// Ask the index for `key` from `from`: the holder it names, if it
    /// answered.
    fn ask_index(&mut self, from: NodeIx, key: u64, out: &mut Lookup) -> Option<Option<NodeIx>> {
        if from != self.index {
            if !self.nodes.ask(from, self.index, out) {
                return None;
            }
        } else if !self.nodes.alive(self.index) {
            return None;
        }
        Some(self.registered.holders(key).first().copied())
    }
}

impl Model for Napster {
    fn name(&self) -> &'static str {
        "napster"
    }

    fn nodes(&self) -> usize {
        self.nodes.alive.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if !self.nodes.alive(from) {
            return;
        }
        self.held.add(key, from);
        if from == self.index || self.nodes.send(from, self.index) {
            self.registered.add(key, from);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        if let Some(done) = self.nodes.settled(from, key, &self.held) {
            return done;
        }
        let mut out = Lookup::default();
        let Some(Some(holder)) = self.ask_index(from, key, &mut out) else {
            return out;
        };
        // The download goes straight to the holder, which sees the
        // requester's address as the index did.
        self.nodes.fetch(from, holder, key, &self.held, &mut out);
        out
    }

    fn load(&self) -> Cow<'_, [u64]> {
        Cow::Borrowed(&self.nodes.load)
    }

    fn fail(&mut self, nodes: &[NodeIx]) {
        // A failed node answers nothing, so what it held is gone; the
        // index keeps naming it (stale).
        self.nodes.fail(nodes);
    }

    fn set_online(&mut self, node: NodeIx, online: bool) {
        self.nodes.set_online(node, online);
    }
}
