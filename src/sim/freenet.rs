//! veil's own router as a [`Model`] (`--system freenet`): the [`Engine`]
//! running every node in one anonymity mode.
//!
//! A model key `k` is the block whose content is `k`'s eight bytes (a short
//! stand-in for a 32 KiB block, `Block::stand_in`); its routing key is the
//! SHA-256 of that content, as for every veil block, so it sits at a
//! uniformly random location (the model's keys are uniform too; SHA-256
//! cannot be steered to `k / 2^64` itself). `insert` is a real insert from
//! `from`, `lookup` a real request; both run to completion.

use std::borrow::Cow;

use rand::RngCore;

use crate::keys::{Block, Location};
use crate::routing::{Anonymity, ClientOutcome, RouterConfig};
use crate::sim::engine::{Engine, Latency};
use crate::sim::model::{Graph, Lookup, Model, NodeIx};

/// veil's router on a graph.
pub struct FreenetModel {
    engine: Engine,
    mode: Anonymity,
}

impl FreenetModel {
    /// Every node of `graph` in `mode`, each router with `config`.
    pub fn new(
        graph: &Graph,
        mode: Anonymity,
        config: RouterConfig,
        latency: Latency,
        seed: u64,
    ) -> Self {
        let locations: Vec<Location> = graph
            .location
            .iter()
            .map(|&x| Location::from_f64(x))
            .collect();
        FreenetModel {
            engine: Engine::new(&graph.adj, &locations, config, mode, latency, seed),
            mode,
        }
    }

    pub fn mode(&self) -> Anonymity {
        self.mode
    }

    /// Bound every node's datastore (see [`Engine::set_store_capacity`]).
    pub fn set_store_capacity(&mut self, blocks: usize) {
        self.engine.set_store_capacity(blocks);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The block model key `key` names.
    pub fn key_block(key: u64) -> Block {
        Block::stand_in(&key.to_be_bytes())
    }
}

impl Model for FreenetModel {
    fn name(&self) -> &'static str {
        "freenet"
    }

    fn nodes(&self) -> usize {
        self.engine.len()
    }

    /// A real insert of the key's block from `from` (the engine draws its
    /// own seeded randomness; `rng` is not used).
    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        self.engine.put(from, Self::key_block(key));
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        let out = self.engine.get(from, Self::key_block(key).routing_key());
        let found = matches!(out.outcome, Some(ClientOutcome::Found(_)));
        Lookup {
            found,
            hops: if found {
                out.tally.found_hops
            } else {
                out.tally.request_hops
            },
            messages: out.tally.messages,
            requester_exposed: out.tally.exposed,
        }
    }

    fn load(&self) -> Cow<'_, [u64]> {
        Cow::Owned(self.engine.load())
    }

    fn fail(&mut self, nodes: &[NodeIx]) {
        self.engine.fail(nodes);
    }

    fn set_online(&mut self, node: NodeIx, online: bool) {
        self.engine.set_online(node, online);
    }
}
