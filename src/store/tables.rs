//! The datastore's tables and the transaction-level helpers that keep a
//! part's four tables (blocks, tails, recency, LRU order) in step.
//!
//! # Why a block is kept in two pieces
//!
//! redb keeps a value in the leaf page of its key, and a page is 4 KiB
//! times a power of two. A whole block ([`BLOCK_LEN`], 32,788 bytes) with
//! its key and the leaf's header needs 32,828 bytes: a 64 KiB page, half of
//! it empty, written whole on every put, and read whole (inserting a key
//! reads the leaf next to it; evicting one reads its own). So the blocks
//! table holds the first [`HEAD_LEN`] bytes, which with key and header fill
//! a 32 KiB page exactly, and the tails table the last 60 under the same
//! key (many to a 4 KiB leaf). Caching a block writes and reads about half
//! the bytes it did (`tests/store_cost.rs`). Files written before this
//! (layout version 1) hold whole blocks in the blocks table and no tails;
//! they are read as they are.

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::index::Changes;
use super::StoreError;
use crate::keys::{Block, RoutingKey, BLOCK_LEN};

/// Bytes of a block kept in its part's blocks table: what fills a 32 KiB
/// leaf page with a 32-byte key and the leaf's 8 bytes of header and
/// length. The rest of the block is its tail.
pub(super) const HEAD_LEN: usize = 32 * 1024 - 32 - 8;

pub(super) type BlocksTable = TableDefinition<'static, &'static [u8; 32], &'static [u8]>;
type RecencyTable = TableDefinition<'static, &'static [u8; 32], u64>;
type LruTable = TableDefinition<'static, u64, &'static [u8; 32]>;

pub(super) const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
pub(super) const STORE_BLOCKS: BlocksTable = TableDefinition::new("store_blocks");
const STORE_RECENCY: RecencyTable = TableDefinition::new("store_recency");
const STORE_LRU: LruTable = TableDefinition::new("store_lru");
const CACHE_BLOCKS: BlocksTable = TableDefinition::new("cache_blocks");
const STORE_TAILS: BlocksTable = TableDefinition::new("store_tails");
const CACHE_TAILS: BlocksTable = TableDefinition::new("cache_tails");
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

    /// The last bytes of each block (past [`HEAD_LEN`]).
    pub(super) fn tails(self) -> BlocksTable {
        match self {
            Part::Store => STORE_TAILS,
            Part::Cache => CACHE_TAILS,
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
pub(super) fn check_block(key: &RoutingKey, bytes: Vec<u8>) -> Option<Block> {
    let block = Block::from_bytes(bytes).ok()?;
    block.verify(key).ok()?;
    Some(block)
}

/// A block's bytes from its head (as the blocks table holds it) and its
/// tail: `tail` is asked for only if the head is not a whole block (one a
/// version 1 file holds). A missing tail leaves the bytes short, which
/// [`check_block`] then refuses.
pub(super) fn join(
    head: &[u8],
    tail: impl FnOnce() -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Vec<u8>, StoreError> {
    if head.len() >= BLOCK_LEN {
        return Ok(head.to_vec());
    }
    let tail = tail()?.unwrap_or_default();
    let mut bytes = Vec::with_capacity(head.len() + tail.len());
    bytes.extend_from_slice(head);
    bytes.extend_from_slice(&tail);
    Ok(bytes)
}

/// The bytes `part` holds under `key` inside `txn`, head and tail joined.
pub(super) fn held_bytes(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
) -> Result<Option<Vec<u8>>, StoreError> {
    let head = txn
        .open_table(part.blocks())?
        .get(&key.0)?
        .map(|v| v.value().to_vec());
    let Some(head) = head else {
        return Ok(None);
    };
    let tail = || {
        let tails = txn.open_table(part.tails())?;
        let tail = tails.get(&key.0)?.map(|v| v.value().to_vec());
        Ok(tail)
    };
    join(&head, tail).map(Some)
}

/// Write `bytes` under `key` in `part`: the head in the blocks table, the
/// rest in the tails table.
pub(super) fn write_bytes(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let (head, tail) = bytes.split_at(bytes.len().min(HEAD_LEN));
    txn.open_table(part.blocks())?.insert(&key.0, head)?;
    let mut tails = txn.open_table(part.tails())?;
    if tail.is_empty() {
        tails.remove(&key.0)?;
    } else {
        tails.insert(&key.0, tail)?;
    }
    Ok(())
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
    let keep = held_bytes(txn, part, key)?
        .is_some_and(|held| held == block.as_bytes() || check_block(key, held).is_some());
    if !keep {
        write_bytes(txn, part, key, block.as_bytes())?;
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
    txn.open_table(part.tails())?.remove(&key.0)?;
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
    let mut tails = txn.open_table(part.tails())?;
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
        tails.remove(&oldest)?;
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

/// Whether `txn` sees any of the cache's tables, which layouts 1 and 2
/// kept in the database (the cache now lives in its slot file).
pub(super) fn has_old_cache(txn: &ReadTransaction) -> Result<bool, StoreError> {
    let names = [
        CACHE_BLOCKS.name(),
        CACHE_TAILS.name(),
        CACHE_RECENCY.name(),
    ];
    let found = txn
        .list_tables()
        .map_err(redb::Error::from)?
        .any(|t| names.contains(&t.name()) || t.name() == CACHE_LRU.name());
    Ok(found)
}

/// Hand every block the old cache tables hold to `put`, least recently
/// used first, and delete the tables. Blocks that do not verify are
/// skipped. Returns how many were handed over.
pub(super) fn take_old_cache(
    txn: &WriteTransaction,
    mut put: impl FnMut(Block),
) -> Result<u64, StoreError> {
    let part = Part::Cache;
    let mut moved = 0;
    {
        let lru = txn.open_table(part.lru())?;
        let blocks = txn.open_table(part.blocks())?;
        let tails = txn.open_table(part.tails())?;
        for entry in lru.iter()? {
            let (_, key) = entry?;
            let key = RoutingKey(*key.value());
            let Some(head) = blocks.get(&key.0)?.map(|v| v.value().to_vec()) else {
                continue;
            };
            let tail = || Ok(tails.get(&key.0)?.map(|v| v.value().to_vec()));
            if let Some(block) = check_block(&key, join(&head, tail)?) {
                put(block);
                moved += 1;
            }
        }
    }
    txn.delete_table(part.blocks())?;
    txn.delete_table(part.tails())?;
    txn.delete_table(part.recency())?;
    txn.delete_table(part.lru())?;
    Ok(moved)
}
