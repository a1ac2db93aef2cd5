//! The client cache of tunnel mode: blocks this node's own client fetched
//! through a tunnel ([`Action::ClientCacheBlock`]), kept in memory and read
//! only by that client ([`BlockSource::client_lookup`]), so fetching again
//! costs no traffic. Never answers a neighbour. Bounded by block count
//! (`runtime.client_cache_blocks`), least recently used dropped first.
//!
//! [`Action::ClientCacheBlock`]: crate::routing::Action::ClientCacheBlock

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use crate::keys::{Block, RoutingKey};
use crate::routing::BlockSource;
use crate::store::Datastore;

/// A bounded LRU map from routing key to block.
pub(super) struct ClientCache {
    capacity: usize,
    blocks: HashMap<RoutingKey, (Block, u64)>,
    /// Last use stamp -> key; the first entry is the least recently used.
    by_use: BTreeMap<u64, RoutingKey>,
    clock: u64,
}

impl ClientCache {
    pub(super) fn new(capacity: usize) -> ClientCache {
        ClientCache {
            capacity,
            blocks: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
        }
    }

    fn stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The block under `key`, now the most recently used.
    pub(super) fn get(&mut self, key: &RoutingKey) -> Option<Block> {
        let now = self.stamp();
        let (block, used) = self.blocks.get_mut(key)?;
        self.by_use.remove(used);
        *used = now;
        self.by_use.insert(now, *key);
        Some(block.clone())
    }

    /// Keep `block`, dropping the least recently used beyond capacity.
    pub(super) fn insert(&mut self, block: Block) {
        if self.capacity == 0 {
            return;
        }
        let key = block.routing_key();
        let now = self.stamp();
        if let Some((_, used)) = self.blocks.insert(key, (block, now)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(now, key);
        while self.blocks.len() > self.capacity {
            let Some((_, old)) = self.by_use.pop_first() else {
                break;
            };
            self.blocks.remove(&old);
        }
    }
}

/// What the core reads blocks from in the node: the datastore for
/// neighbours and the client alike, the client cache for the client only.
/// A block the router task read off its task is in `prefetched`; a key the
/// store's in-memory index does not hold is a miss with no disk access;
/// anything else is read inline and counted in `inline_reads`.
pub(super) struct NodeBlocks<'a> {
    pub(super) store: &'a Datastore,
    pub(super) client: &'a RefCell<ClientCache>,
    pub(super) prefetched: &'a HashMap<RoutingKey, Block>,
    pub(super) inline_reads: &'a Cell<u64>,
}

impl BlockSource for NodeBlocks<'_> {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        if let Some(block) = self.prefetched.get(key) {
            return Some(block.clone());
        }
        if !self.store.holds(key) {
            return None;
        }
        self.inline_reads
            .set(self.inline_reads.get().saturating_add(1));
        self.store.lookup(key)
    }

    fn client_lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.client.borrow_mut().get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Chk;

    fn block(i: usize) -> Block {
        Chk::encode(format!("client cache {i}").as_bytes())
            .unwrap()
            .1
    }

    #[test]
    fn keeps_at_most_capacity_and_drops_the_least_recently_used() {
        let mut cache = ClientCache::new(2);
        let (a, b, c) = (block(0), block(1), block(2));
        cache.insert(a.clone());
        cache.insert(b.clone());
        // Reading `a` makes `b` the least recently used.
        assert_eq!(cache.get(&a.routing_key()), Some(a.clone()));
        cache.insert(c.clone());
        assert_eq!(cache.blocks.len(), 2);
        assert_eq!(cache.get(&b.routing_key()), None);
        assert_eq!(cache.get(&a.routing_key()), Some(a.clone()));
        assert_eq!(cache.get(&c.routing_key()), Some(c.clone()));
        // Inserting again refreshes, never duplicates.
        cache.insert(c.clone());
        cache.insert(c);
        assert_eq!(cache.blocks.len(), 2);
        assert_eq!(cache.by_use.len(), 2);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = ClientCache::new(0);
        let a = block(0);
        cache.insert(a.clone());
        assert_eq!(cache.get(&a.routing_key()), None);
    }
}
