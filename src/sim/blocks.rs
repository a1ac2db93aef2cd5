//! The simulator's datastores, compact enough for 100,000 nodes and
//! millions of cached copies (`sim::engine`).
//!
//! Every distinct block is kept once, in [`Blocks`], under a small number,
//! with the sorted list of the nodes that store or cache it; each node
//! keeps only the numbers of what it fetched for its own client
//! ([`NodeBlocks`], a sorted vector of `u32`). A node's view ([`NodeView`])
//! answers the router's [`BlockSource`] queries as the harness's `MemStore`
//! does: a block in the store or the cache, and the client cache on its
//! own. Unbounded, as the `MemStore` is: the real node's cache is bounded
//! by bytes, the simulator's keeps every copy (4 bytes each).
//!
//! Holders are listed per block, not per node, for the cache: every node
//! on a request's path asks for the same key, so one block's short list
//! stays in the CPU cache for the whole request, where each node's own set
//! (hundreds of numbers, at a random one of 100,000 nodes) cost several
//! cache misses per hop.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::keys::{Block, RoutingKey};
use crate::routing::BlockSource;

/// Hashes a routing key by its first eight bytes. Routing keys are SHA-256
/// outputs, uniform already, so this spreads them as well as any hasher
/// would; the map still compares whole keys.
#[derive(Default)]
struct KeyPrefixHasher(u64);

impl Hasher for KeyPrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<RoutingKey, V, BuildHasherDefault<KeyPrefixHasher>>;

/// Every distinct block the run has seen, each once, numbered in order of
/// first sight.
#[derive(Default)]
pub struct Blocks {
    ids: KeyMap<u32>,
    blocks: Vec<Block>,
    /// The nodes that store or cache each block (by number).
    holders: Vec<IdSet>,
    /// The last block interned and its number: a request's block is cached
    /// at every hop, so this spares hashing it again at each.
    last: Option<(Block, u32)>,
    /// The last key looked up and its number (or none): a request asks
    /// every node on its path for the same key, and the map of a million
    /// keys costs a cache miss per look-up.
    last_key: Cell<Option<(RoutingKey, Option<u32>)>>,
    /// At most this many blocks per node, the oldest dropped first (`None`:
    /// unbounded, the default), and each node's blocks in arrival order.
    capacity: Option<usize>,
    arrivals: Vec<VecDeque<u32>>,
}

impl Blocks {
    /// The number of `block`, interning it if new.
    pub fn intern(&mut self, block: Block) -> u32 {
        if let Some((last, id)) = &self.last {
            if *last == block {
                return *id;
            }
        }
        let key = block.routing_key();
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.blocks.len() as u32;
                self.ids.insert(key, id);
                // A key remembered as absent is absent no more.
                self.last_key.set(None);
                self.blocks.push(block.clone());
                self.holders.push(IdSet::default());
                id
            }
        };
        self.last = Some((block, id));
        id
    }

    /// The number of the block under `key`, if any node ever held it.
    pub fn id(&self, key: &RoutingKey) -> Option<u32> {
        if let Some((last, id)) = self.last_key.get() {
            if last == *key {
                return id;
            }
        }
        let id = self.ids.get(key).copied();
        self.last_key.set(Some((*key, id)));
        id
    }

    pub fn get(&self, id: u32) -> Option<&Block> {
        self.blocks.get(id as usize)
    }

    /// Hold at most `blocks` per node from now on, dropping the oldest
    /// (a bounded datastore, as a real node's).
    pub fn set_capacity(&mut self, blocks: usize) {
        self.capacity = Some(blocks.max(1));
    }

    /// `node` stores or caches block `id` (an interned number); with a
    /// capacity, its oldest block goes if it holds too many.
    pub fn hold(&mut self, id: u32, node: u32) {
        let Some(h) = self.holders.get_mut(id as usize) else {
            return;
        };
        let fresh = !h.contains(node);
        h.insert(node);
        let Some(cap) = self.capacity else { return };
        if !fresh {
            return;
        }
        let n = node as usize;
        if self.arrivals.len() <= n {
            self.arrivals.resize_with(n + 1, VecDeque::new);
        }
        self.arrivals[n].push_back(id);
        if self.arrivals[n].len() > cap {
            if let Some(old) = self.arrivals[n].pop_front() {
                if let Some(h) = self.holders.get_mut(old as usize) {
                    h.remove(node);
                }
            }
        }
    }

    /// Does `node` store or cache block `id`?
    pub fn holds(&self, id: u32, node: u32) -> bool {
        self.holders
            .get(id as usize)
            .is_some_and(|h| h.contains(node))
    }

    /// The nodes `gone` (indexed by node) forget every block they hold.
    pub fn forget(&mut self, gone: &[bool]) {
        for h in &mut self.holders {
            h.0.retain(|&n| !gone.get(n as usize).copied().unwrap_or(false));
        }
    }

    /// Distinct blocks seen.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// A sorted set of block numbers.
#[derive(Clone, Debug, Default)]
pub struct IdSet(Vec<u32>);

impl IdSet {
    pub fn insert(&mut self, id: u32) {
        if let Err(at) = self.0.binary_search(&id) {
            self.0.insert(at, id);
        }
    }

    pub fn remove(&mut self, id: u32) {
        if let Ok(at) = self.0.binary_search(&id) {
            self.0.remove(at);
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one node keeps apart from its store and cache (which the block
/// table lists by block, [`Blocks::holds`]; the router reads them as one,
/// store first, then cache, the same block either way): its client cache
/// (what its own client fetched through a tunnel).
#[derive(Clone, Debug, Default)]
pub struct NodeBlocks {
    pub client: IdSet,
}

/// One node's holdings seen through the run's [`Blocks`]: what the router
/// consults.
pub struct NodeView<'a> {
    pub blocks: &'a Blocks,
    /// The node's number.
    pub index: u32,
    pub node: &'a NodeBlocks,
}

impl BlockSource for NodeView<'_> {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        let id = self.blocks.id(key)?;
        if self.blocks.holds(id, self.index) {
            self.blocks.get(id).cloned()
        } else {
            None
        }
    }

    fn client_lookup(&self, key: &RoutingKey) -> Option<Block> {
        let id = self.blocks.id(key)?;
        if self.node.client.contains(id) {
            self.blocks.get(id).cloned()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sees_what_it_holds_and_nothing_else() {
        let mut blocks = Blocks::default();
        let (a, b) = (Block::stand_in(b"a"), Block::stand_in(b"b"));
        let mut node = NodeBlocks::default();
        let ia = blocks.intern(a.clone());
        blocks.hold(ia, 7);
        let ib = blocks.intern(b.clone());
        node.client.insert(ib);
        assert_eq!(blocks.intern(a.clone()), ia);
        assert_eq!(blocks.len(), 2);
        let view = NodeView {
            blocks: &blocks,
            index: 7,
            node: &node,
        };
        assert_eq!(view.lookup(&a.routing_key()), Some(a.clone()));
        assert_eq!(view.lookup(&b.routing_key()), None);
        assert_eq!(view.client_lookup(&b.routing_key()), Some(b));
        assert_eq!(view.client_lookup(&a.routing_key()), None);
        let other = Block::stand_in(b"c").routing_key();
        assert_eq!(view.lookup(&other), None);
        let elsewhere = NodeView {
            blocks: &blocks,
            index: 8,
            node: &node,
        };
        assert_eq!(elsewhere.lookup(&a.routing_key()), None);
    }

    #[test]
    fn forgotten_holders_hold_nothing() {
        let mut blocks = Blocks::default();
        let a = blocks.intern(Block::stand_in(b"a"));
        let b = blocks.intern(Block::stand_in(b"b"));
        for node in [3, 1, 2] {
            blocks.hold(a, node);
        }
        blocks.hold(b, 2);
        blocks.forget(&[false, false, true]);
        assert!(blocks.holds(a, 1) && blocks.holds(a, 3));
        assert!(!blocks.holds(a, 2) && !blocks.holds(b, 2));
        blocks.hold(b, 2);
        assert!(blocks.holds(b, 2), "a node that forgot may hold again");
    }
}
