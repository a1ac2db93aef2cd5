//! The node's datastore: where blocks live between requests.
//!
//! As in Freenet it has two parts, each bounded by a byte budget:
//!
//! - the **store** holds blocks this node is a sink for (inserts that ended
//!   here, [`crate::routing::Action::StoreBlock`]);
//! - the **cache** holds blocks that merely passed through
//!   ([`crate::routing::Action::CacheBlock`]).
//!
//! Both parts evict their least-recently-used block when a new one would
//! exceed the budget; a hit in [`Datastore::get`] refreshes a block's recency.
//! The store evicts too: a sink that is full keeps its newest and most
//! requested blocks rather than refusing inserts. A block held by both parts
//! is kept (and counted) once per part. Putting a key a part already holds is
//! idempotent: it only refreshes the block's recency (and rewrites the bytes
//! if the stored copy had been damaged).
//!
//! # Accounting
//!
//! Every block is exactly [`BLOCK_LEN`] bytes, so a part with a budget of
//! `b` bytes holds at most `b / BLOCK_LEN` blocks. A cache budget below one
//! block disables the cache (puts are accepted and dropped); a store with no
//! room for one block refuses every put with [`StoreError::NotStored`] (the
//! node's configuration refuses such a `store_size`). The budgets count
//! block bytes only, not the database's own overhead (B-tree pages, keys,
//! recency index, free space), which adds a few percent on disk, nor the
//! cache's slot records (64 bytes a slot).
//!
//! # The cache
//!
//! The cache part lives outside the database, in a flat file of fixed
//! slots beside it (`store/cache.rs`, `store/slots.rs`): no B-tree, no
//! transaction, no fsync; its index is in memory and rebuilt from the
//! slots' records on open. Everything below about redb, commits and
//! recovery concerns the store part; a cache write that fails leaves the
//! block uncached and never touches the store's health. A database that
//! still holds the cache tables of an older build has their blocks moved
//! into the slot file when it opens (`store/recover.rs`).
//!
//! # Storage and crash safety of the store
//!
//! The store lives in one [redb](https://docs.rs/redb) file: a pure-Rust,
//! ACID, copy-on-write B-tree store. A commit never overwrites live pages; it
//! writes new ones and then flips a checksummed commit slot, so after a crash
//! (power loss, `SIGKILL`) opening the file simply finds the last complete
//! commit. There is no write-ahead log to replay and no repair step for the
//! node to run. Durable commits here also use redb's *quick-repair* mode,
//! which records the allocator state in each commit (with a two-phase
//! commit), so even redb's internal bookkeeping is loaded rather than rebuilt
//! by walking the file when it is reopened after a crash.
//!
//! Durability differs per part:
//!
//! - [`Datastore::put_store_batch`] (and [`Datastore::put_store`], a batch of
//!   one) commits durably (fsync) before returning, in **one** transaction
//!   and one fsync for the whole batch: this is the group commit the node's
//!   [`GroupWriter`] drives. It reports, per block, whether the block is in
//!   the store after the commit; only those may be acknowledged.
//! - the recency updates of [`Datastore::get`] hits in the store use
//!   non-durable commits (no fsync): they may be lost in a crash. They
//!   become durable with the next durable commit; at most
//!   [`LAZY_COMMITS_PER_FSYNC`] non-durable commits are made in a row (redb
//!   cannot reuse pages freed by non-durable commits until a durable one),
//!   and [`Datastore::flush`] (also run on drop) makes everything durable.
//! - [`Datastore::put_cache`] writes into the cache's slot file, never
//!   synced: visible at once, possibly lost in a crash.
//!
//! # I/O errors
//!
//! After one I/O error (a full disk, a failing device) redb refuses every
//! later write until the database is closed and opened again. A write that
//! fails with an I/O error therefore makes the datastore close the database
//! and reopen it from its [`StoreSource`]; what was committed before is
//! served again at once. If reopening for writing fails, it opens the file
//! read-only and keeps serving what it holds; if even that fails every
//! lookup misses. [`Datastore::health`] says which ([`StoreHealth`], shown by
//! `veil status`). A read-only datastore stays read-only until the node
//! restarts.
//!
//! # Recency bookkeeping of the store
//!
//! The store has four tables: `key -> block bytes` (the first 32,728; the
//! last 60 in a `key -> tail` table, so that a block fills a 32 KiB page of
//! the file instead of half a 64 KiB one: see `store/tables.rs`), `key ->
//! sequence number` and `sequence number -> key`. A put or a hit gives the
//! key the next number of a counter, in the same transaction as the data it
//! describes, so the index is always consistent with the blocks and
//! survives reopening. Eviction pops the smallest sequence number. (The
//! cache's recency is in memory: `store/cache.rs`.)
//!
//! # Integrity
//!
//! Every block read from disk is checked: its length must be [`BLOCK_LEN`]
//! and it must hash to its routing key ([`Block::verify`]). A block that
//! fails is treated as missing, removed from its part and logged (the key
//! only, never the bytes); the cache counts it too ([`CacheStats`]).
//!
//! # Sizes
//!
//! [`parse_size`] reads the byte budgets as `node.toml` writes them
//! (`256MiB`, `10MB`, `1.5GiB`); it lives in `store/size.rs`.
//!
//! # Threads
//!
//! [`Datastore`] is `Send + Sync`; share it with an `Arc`. Reads run
//! concurrently; writes are serialised. All calls block on disk I/O (a store
//! put waits for fsync), so async callers should use a [`GroupWriter`] or
//! `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
    WriteTransaction,
};

use crate::keys::{Block, RoutingKey, BLOCK_LEN};
use crate::routing::BlockSource;

mod backend;
mod cache;
mod error;
mod health;
mod index;
mod open;
mod recover;
mod size;
mod slots;
mod tables;
mod writer;

pub use backend::{no_space, BackendFactory, StoreSource};
pub use cache::{CacheStats, Torn, CACHE_INDEX_BYTES_PER_BLOCK};
pub use error::StoreError;
pub use health::{StoreHealth, StoreState};
pub use index::MAX_TOUCHES;
pub use size::{parse_size, SizeError};
pub use writer::{CacheWriter, GroupWriter, Written, CACHE_BATCH_MAX, CACHE_LINGER};

use cache::SlotCache;
use index::{Changes, KeyIndex, Touches};
use tables::{Part, STORE_BLOCKS};

/// Most non-durable commits made in a row before one is made durable.
pub const LAZY_COMMITS_PER_FSYNC: u32 = 256;

/// Layout version written in the `meta` table. Version 2 keeps each block
/// in two pieces (`store/tables.rs`); a version 1 file (whole blocks) is
/// read as it is and marked version 2 when opened, so that older builds,
/// which would take the pieces for damaged blocks, refuse it.
const SCHEMA_VERSION: u64 = 2;
/// The older layout this build still reads.
const SCHEMA_WHOLE_BLOCKS: u64 = 1;
/// Memory redb may use to cache pages of the file, unless the caller says
/// otherwise ([`Datastore::open_sized`]; the node sizes it from `memory`).
pub const DB_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How full the two parts are. Bytes count block bytes only.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Usage {
    pub store_blocks: u64,
    pub store_bytes: u64,
    pub store_limit: u64,
    pub cache_blocks: u64,
    pub cache_bytes: u64,
    pub cache_limit: u64,
}

/// Whether a write must be on disk when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Commit {
    Durable,
    Lazy,
}

/// State only writers touch; the mutex also serialises writers so that the
/// counts published after a commit are never overtaken by an older commit's.
struct Writer {
    /// Next recency sequence number (shared by both parts).
    next_seq: u64,
    /// Non-durable commits since the last durable one.
    lazy_commits: u32,
    /// What the open transaction did to the key index.
    changes: Changes,
}

impl Writer {
    fn next(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.saturating_add(1);
        seq
    }
}

/// What reading one part gave.
enum Read {
    Miss,
    Hit(Block),
    /// Present but the wrong length or not matching its key.
    Corrupt,
}

/// The open database, as far as the datastore could keep it.
enum Db {
    Writable(Database),
    /// Over an overlay that keeps redb's own writes in memory.
    ReadOnly(Database),
    Closed,
}

/// The node's datastore. See the module documentation.
pub struct Datastore {
    db: RwLock<Db>,
    source: StoreSource,
    store_limit: u64,
    cache_limit: u64,
    store_capacity: u64,
    store_blocks: AtomicU64,
    /// The cache part, outside redb (`store/cache.rs`).
    cache: SlotCache,
    writer: Mutex<Writer>,
    health: Mutex<StoreHealth>,
    /// Which keys each part holds, in memory.
    index: KeyIndex,
    /// Recency refreshes not yet written.
    touches: Touches,
    /// Bytes redb may use to cache pages.
    db_cache: usize,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datastore")
            .field("source", &self.source)
            .field("usage", &self.usage())
            .finish()
    }
}

impl Datastore {
    /// Whether either part holds `key`, from the in-memory index: no disk
    /// access. A block that is held but damaged on disk still counts until
    /// a [`Datastore::get`] finds it so.
    pub fn holds(&self, key: &RoutingKey) -> bool {
        self.index.holds_in(Part::Store, key) || self.cache.holds(key)
    }

    /// Whether the store part (not the cache) holds `key`, from the
    /// in-memory index, as [`Datastore::holds`].
    pub fn holds_stored(&self, key: &RoutingKey) -> bool {
        self.index.holds_in(Part::Store, key)
    }

    /// Look `key` up: the store first, then the cache. A hit refreshes the
    /// block's recency in that part (in memory; the store's is written with
    /// its next write, see `store/index.rs`; the cache's never). A block
    /// that fails verification is removed and treated as missing. A closed
    /// store part misses, and the cache is still asked.
    pub fn get(&self, key: &RoutingKey) -> Result<Option<Block>, StoreError> {
        if self.index.holds_in(Part::Store, key) {
            if let Some(block) = self.get_stored(key)? {
                return Ok(Some(block));
            }
        }
        Ok(self.cache.get(key))
    }

    fn get_stored(&self, key: &RoutingKey) -> Result<Option<Block>, StoreError> {
        let part = Part::Store;
        let writable = self.health().state == StoreState::Ok;
        let found = match self.read_part(part, key) {
            Err(StoreError::Closed) => return Ok(None),
            found => found?,
        };
        match found {
            Read::Hit(block) => {
                if writable && self.touches.add(part, *key) {
                    if let Err(e) = self.write(Commit::Lazy, |_, _| Ok(())) {
                        tracing::warn!(%key, part = part.name(), error = %e,
                            "datastore: could not refresh block recency");
                    }
                }
                return Ok(Some(block));
            }
            Read::Corrupt if writable => self.remove_corrupt(part, key)?,
            Read::Corrupt | Read::Miss => {}
        }
        Ok(None)
    }

    /// Keep a block this node is a sink for. Durable when it returns;
    /// [`StoreError::NotStored`] if the store has no room for it.
    pub fn put_store(&self, block: &Block) -> Result<(), StoreError> {
        match self.put_store_batch(std::slice::from_ref(block))?.first() {
            Some(true) => Ok(()),
            _ => Err(StoreError::NotStored),
        }
    }

    /// Keep every block of `blocks` in the store, in one transaction made
    /// durable by one fsync (group commit). Returns, per block, whether it
    /// is in the store after the commit (a batch larger than the store's
    /// budget evicts its own oldest blocks). On an error nothing was stored.
    pub fn put_store_batch(&self, blocks: &[Block]) -> Result<Vec<bool>, StoreError> {
        let capacity = self.store_capacity;
        if capacity == 0 {
            return Ok(vec![false; blocks.len()]);
        }
        self.write(Commit::Durable, |txn, writer| {
            let keys: Vec<RoutingKey> = blocks.iter().map(Block::routing_key).collect();
            for (key, block) in keys.iter().zip(blocks) {
                tables::insert_block(txn, Part::Store, key, block, &mut writer.changes)?;
                tables::set_recency(txn, Part::Store, key, writer.next())?;
            }
            tables::evict_over(txn, Part::Store, capacity, &mut writer.changes)?;
            keys.iter()
                .map(|key| tables::holds(txn, Part::Store, key))
                .collect()
        })
    }

    /// Keep a block that passed through, in the cache's slot file. Visible
    /// at once, never fsynced: a crash may lose it.
    pub fn put_cache(&self, block: &Block) -> Result<(), StoreError> {
        self.put_cache_batch(std::slice::from_ref(block))
    }

    /// Keep every block of `blocks` in the cache ([`CacheWriter`] gathers
    /// them). A block whose write fails is not cached and is counted
    /// ([`Datastore::cache_stats`]); the rest still are, and the first
    /// error is returned ([`StoreError::CacheWrite`]). The store part is
    /// not affected.
    pub fn put_cache_batch(&self, blocks: &[Block]) -> Result<(), StoreError> {
        if self.cache.capacity() == 0 {
            tracing::debug!("datastore: the cache has no room; block dropped");
            return Ok(());
        }
        let mut first = None;
        for block in blocks {
            if let Err(e) = self.cache.put(block) {
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err(StoreError::CacheWrite(e)),
        }
    }

    /// The cache's error counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Whether the store holds `key`. Checks presence only; a damaged block
    /// is detected (and removed) by the next [`Datastore::get`].
    pub fn contains_store(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        self.contains(Part::Store, key)
    }

    /// Whether the cache holds `key`. Checks presence only, as
    /// [`Datastore::contains_store`].
    pub fn contains_cache(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        Ok(self.cache.holds(key))
    }

    /// Current fill of both parts and their budgets.
    pub fn usage(&self) -> Usage {
        let block_len = BLOCK_LEN as u64;
        let store_blocks = self.store_blocks.load(Ordering::Acquire);
        let cache_blocks = self.cache.len();
        Usage {
            store_blocks,
            store_bytes: store_blocks.saturating_mul(block_len),
            store_limit: self.store_limit,
            cache_blocks,
            cache_bytes: cache_blocks.saturating_mul(block_len),
            cache_limit: self.cache_limit,
        }
    }

    /// Whether the disk is fine, was reopened after errors, or is read-only.
    pub fn health(&self) -> StoreHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make every earlier write durable (cache entries and recency updates
    /// included). Called on drop as well; call it explicitly at shutdown to
    /// see errors. A read-only datastore has nothing to flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.health().state != StoreState::Ok {
            return Ok(());
        }
        self.write(Commit::Durable, |_, _| Ok(()))
    }

    /// The file this datastore lives in (for other sources, their name).
    pub fn path(&self) -> &Path {
        self.source.path()
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // The guarded state is two counters that stay valid whatever a
        // panicking writer was doing, so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_db(&self) -> RwLockReadGuard<'_, Db> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` in a write transaction and commit it. An I/O error makes the
    /// datastore reopen its database (see the module documentation).
    fn write<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&WriteTransaction, &mut Writer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut writer = self.lock_writer();
        let result = self.write_locked(&mut writer, commit, f);
        if let Err(e) = &result {
            writer.changes.clear();
            if e.is_io() || matches!(e, StoreError::ReadOnly | StoreError::Closed) {
                let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                health.failed_writes = health.failed_writes.saturating_add(1);
                health.last_error = Some(e.to_string());
            }
            if e.is_io() {
                self.recover(&mut writer, e);
            }
        }
        result
    }

    fn write_locked<T>(
        &self,
        writer: &mut Writer,
        commit: Commit,
        f: impl FnOnce(&WriteTransaction, &mut Writer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.read_db();
        let txn = match &*db {
            Db::Writable(d) => d.begin_write()?,
            Db::ReadOnly(_) => return Err(StoreError::ReadOnly),
            Db::Closed => return Err(StoreError::Closed),
        };
        self.touches.write(&txn, &mut || writer.next())?;
        let out = f(&txn, writer)?;
        self.commit(txn, commit, writer)?;
        Ok(out)
    }

    /// Run `f` in a read transaction, whatever the database's state.
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.read_db();
        let txn = match &*db {
            Db::Writable(d) => d.begin_read()?,
            Db::ReadOnly(d) => d.begin_read()?,
            Db::Closed => return Err(StoreError::Closed),
        };
        f(&txn)
    }

    /// Commit `txn`, durably if asked or if too many lazy commits are
    /// pending, and publish the block counts it leaves.
    fn commit(
        &self,
        mut txn: WriteTransaction,
        commit: Commit,
        writer: &mut Writer,
    ) -> Result<(), StoreError> {
        let durable = commit == Commit::Durable || writer.lazy_commits >= LAZY_COMMITS_PER_FSYNC;
        if durable {
            txn.set_durability(Durability::Immediate)?;
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)?;
        }
        let store_blocks = txn.open_table(STORE_BLOCKS)?.len()?;
        txn.commit()?;
        self.index.apply(&mut writer.changes);
        if durable {
            writer.lazy_commits = 0;
        } else {
            writer.lazy_commits = writer.lazy_commits.saturating_add(1);
        }
        self.store_blocks.store(store_blocks, Ordering::Release);
        Ok(())
    }

    fn read_part(&self, part: Part, key: &RoutingKey) -> Result<Read, StoreError> {
        self.read(|txn| {
            let blocks = txn.open_table(part.blocks())?;
            let Some(head) = blocks.get(&key.0)? else {
                return Ok(Read::Miss);
            };
            let tail = || {
                let tails = txn.open_table(part.tails())?;
                let tail = tails.get(&key.0)?.map(|v| v.value().to_vec());
                Ok(tail)
            };
            let bytes = tables::join(head.value(), tail)?;
            Ok(match tables::check_block(key, bytes) {
                Some(block) => Read::Hit(block),
                None => Read::Corrupt,
            })
        })
    }

    fn contains(&self, part: Part, key: &RoutingKey) -> Result<bool, StoreError> {
        self.read(|txn| Ok(txn.open_table(part.blocks())?.get(&key.0)?.is_some()))
    }

    /// Remove a block that failed verification, if it still does.
    fn remove_corrupt(&self, part: Part, key: &RoutingKey) -> Result<(), StoreError> {
        self.write(Commit::Durable, |txn, writer| {
            let still_bad = tables::held_bytes(txn, part, key)?
                .is_some_and(|held| tables::check_block(key, held).is_none());
            if still_bad {
                tracing::warn!(%key, part = part.name(),
                    "datastore: block on disk does not match its key; removed");
                tables::remove_entry(txn, part, key, &mut writer.changes)?;
            }
            Ok(())
        })
    }
}

impl Drop for Datastore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(path = %self.path().display(), error = %e,
                "datastore: final flush failed; recent cache entries may be lost");
        }
    }
}

impl BlockSource for Datastore {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        match self.get(key) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%key, error = %e, "datastore lookup failed; treated as a miss");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
