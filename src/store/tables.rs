//! The datastore's tables and the transaction-level helpers that keep a
//! part's three tables (blocks, recency, LRU order) in step.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::index::Changes;
use super::StoreError;
use crate::keys::{Block, RoutingKey};

pub(super) type BlocksTable = TableDefinition<'static, &'static [u8; 32], &'static [u8]>;
type RecencyTable = TableDefinition<'static, &'static [u8; 32], u64>;
type LruTable = TableDefinition<'static, u64, &'static [u8; 32]>;

pub(super) const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
pub(super) const STORE_BLOCKS: BlocksTable = TableDefinition::new("store_blocks");
const STORE_RECENCY: RecencyTable = TableDefinition::new("store_recency");
const STORE_LRU: LruTable = TableDefinition::new("store_lru");
pub(super) const CACHE_BLOCKS: BlocksTable = TableDefinition::new("cache_blocks");
const CACHE_RECENCY: RecencyTable = TableDefinition::new("cache_recency");
const CACHE_LRU: LruTable = TableDefinition::new("cache_lru");

/// Which part of the datastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Store,
    Cache,
}

impl Part {
    pub(super) fn blocks(self) -> BlocksTable {
        match self {
            Part::Store => STORE_BLOCKS,
            Part::Cache => CACHE_BLOCKS,
        }
    }

    fn recency(self) -> RecencyTable {
        match self {
            Part::Store => STORE_RECENCY,
            Part::Cache => CACHE_RECENCY,
        }
    }

    pub(super) fn lru(self) -> LruTable {
        match self {
            Part::Store => STORE_LRU,
            Part::Cache => CACHE_LRU,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Part::Store => "store",
            Part::Cache => "cache",
        }
    }
}

/// The sequence number after the newest in an LRU table.
pub(super) fn next_seq(
    lru: &impl ReadableTable<u64, &'static [u8; 32]>,
) -> Result<u64, StoreError> {
    let last = lru.last()?.map(|(seq, _)| seq.value());
    Ok(last.map_or(0, |l| l.saturating_add(1)))
}

/// The block stored under `key`, if the bytes are one and hash to the key.
pub(super) fn check_block(key: &RoutingKey, bytes: &[u8]) -> Option<Block> {
    let block = Block::from_bytes(bytes.to_vec()).ok()?;
    block.verify(key).ok()?;
    Some(block)
}

/// Write `block` into `part` unless what is held there is kept: the same
/// bytes, or (the collision rule for signed keys) a different block that
/// still verifies under the key. A valid block is never overwritten.
pub(super) fn insert_block(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
    block: &Block,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    changes.added(part, key);
    let mut blocks = txn.open_table(part.blocks())?;
    let keep = blocks
        .get(&key.0)?
        .is_some_and(|v| v.value() == block.as_bytes() || check_block(key, v.value()).is_some());
    if !keep {
        blocks.insert(&key.0, block.as_bytes())?;
    }
    Ok(())
}

/// Whether `part` holds `key` (as seen inside `txn`).
pub(super) fn holds(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
) -> Result<bool, StoreError> {
    Ok(txn.open_table(part.blocks())?.get(&key.0)?.is_some())
}

/// Give `key` sequence number `seq` (the newest) in `part`.
pub(super) fn set_recency(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
    seq: u64,
) -> Result<(), StoreError> {
    let mut recency = txn.open_table(part.recency())?;
    let mut lru = txn.open_table(part.lru())?;
    let old = recency.insert(&key.0, seq)?.map(|v| v.value());
    if let Some(old) = old {
        lru.remove(old)?;
    }
    lru.insert(seq, &key.0)?;
    Ok(())
}

pub(super) fn remove_entry(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    let mut blocks = txn.open_table(part.blocks())?;
    let mut recency = txn.open_table(part.recency())?;
    let mut lru = txn.open_table(part.lru())?;
    blocks.remove(&key.0)?;
    changes.removed(part, key.0);
    let old = recency.remove(&key.0)?.map(|v| v.value());
    if let Some(old) = old {
        lru.remove(old)?;
    }
    Ok(())
}

/// Evict least-recently-used blocks of `part` until it holds at most
/// `capacity`.
pub(super) fn evict_over(
    txn: &WriteTransaction,
    part: Part,
    capacity: u64,
    changes: &mut Changes,
) -> Result<(), StoreError> {
    let mut blocks = txn.open_table(part.blocks())?;
    let mut recency = txn.open_table(part.recency())?;
    let mut lru = txn.open_table(part.lru())?;
    while blocks.len()? > capacity {
        let oldest = lru.pop_first()?.map(|(_, key)| *key.value());
        let Some(oldest) = oldest else {
            // Cannot happen while the index is consistent, which open
            // ensures; never loop on it.
            tracing::warn!(
                part = part.name(),
                "datastore: recency index empty while over budget"
            );
            break;
        };
        recency.remove(&oldest)?;
        blocks.remove(&oldest)?;
        changes.removed(part, oldest);
        tracing::trace!(key = %RoutingKey(oldest), part = part.name(), "datastore: evicted");
    }
    Ok(())
}

/// Every commit keeps the three tables of a part in step, so this only acts
/// on a file damaged some other way: if the sizes disagree, the recency index
/// is rebuilt from the blocks (in key order, i.e. arbitrary recency).
/// `next_seq` hands out the sequence numbers.
pub(super) fn rebuild_index_if_inconsistent(
    txn: &WriteTransaction,
    part: Part,
    next_seq: &mut u64,
) -> Result<(), StoreError> {
    let (n_blocks, n_recency, n_lru) = (
        txn.open_table(part.blocks())?.len()?,
        txn.open_table(part.recency())?.len()?,
        txn.open_table(part.lru())?.len()?,
    );
    if n_blocks == n_recency && n_recency == n_lru {
        return Ok(());
    }
    tracing::warn!(
        part = part.name(),
        n_blocks,
        n_recency,
        n_lru,
        "datastore: recency index inconsistent; rebuilding"
    );
    txn.delete_table(part.recency())?;
    txn.delete_table(part.lru())?;
    let keys: Vec<[u8; 32]> = {
        let blocks = txn.open_table(part.blocks())?;
        let mut keys = Vec::new();
        for entry in blocks.iter()? {
            let (key, _) = entry?;
            keys.push(*key.value());
        }
        keys
    };
    for key in keys {
        let seq = *next_seq;
        *next_seq = seq.saturating_add(1);
        set_recency(txn, part, &RoutingKey(key), seq)?;
    }
    Ok(())
}
