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
//! `b` bytes holds at most `b / BLOCK_LEN` blocks (a budget below one block
//! disables the part: puts into it are accepted and dropped). The budgets
//! count block bytes only, not the database's own overhead (B-tree pages,
//! keys, recency index, free space), which adds a few percent on disk.
//!
//! # Storage and crash safety
//!
//! Everything lives in one [redb](https://docs.rs/redb) file: a pure-Rust,
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
//! - [`Datastore::put_store`] commits durably (fsync) before returning: an
//!   acknowledged insert survives a crash.
//! - [`Datastore::put_cache`] and the recency updates of [`Datastore::get`]
//!   use non-durable commits (no fsync): they are visible at once but may be
//!   lost in a crash, which for a cache is fine. They become durable with the
//!   next durable commit; at most [`LAZY_COMMITS_PER_FSYNC`] non-durable
//!   commits are made in a row (redb cannot reuse pages freed by non-durable
//!   commits until a durable one), and [`Datastore::flush`] (also run on drop)
//!   makes everything durable.
//!
//! # Recency bookkeeping
//!
//! Each part has three tables: `key -> block bytes`, `key -> sequence number`
//! and `sequence number -> key`. A put or a hit gives the key the next number
//! of a counter shared by both parts, in the same transaction as the data it
//! describes, so the index is always consistent with the blocks and survives
//! reopening. Eviction pops the smallest sequence number.
//!
//! # Integrity
//!
//! Every block read from disk is checked: its length must be [`BLOCK_LEN`]
//! and it must hash to its routing key ([`Block::verify`]). A block that
//! fails is treated as missing, removed from its part and logged (the key
//! only, never the bytes).
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
//! put waits for fsync), so async callers should use
//! `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::keys::{Block, RoutingKey, BLOCK_LEN};
use crate::routing::BlockSource;

mod size;

pub use size::{parse_size, SizeError};

/// Most non-durable commits made in a row before one is made durable.
pub const LAZY_COMMITS_PER_FSYNC: u32 = 256;

/// Layout version written in the `meta` table.
const SCHEMA_VERSION: u64 = 1;
/// Memory redb may use to cache pages of the file.
const DB_CACHE_BYTES: usize = 64 * 1024 * 1024;

type BlocksTable = TableDefinition<'static, &'static [u8; 32], &'static [u8]>;
type RecencyTable = TableDefinition<'static, &'static [u8; 32], u64>;
type LruTable = TableDefinition<'static, u64, &'static [u8; 32]>;

const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
const STORE_BLOCKS: BlocksTable = TableDefinition::new("store_blocks");
const STORE_RECENCY: RecencyTable = TableDefinition::new("store_recency");
const STORE_LRU: LruTable = TableDefinition::new("store_lru");
const CACHE_BLOCKS: BlocksTable = TableDefinition::new("cache_blocks");
const CACHE_RECENCY: RecencyTable = TableDefinition::new("cache_recency");
const CACHE_LRU: LruTable = TableDefinition::new("cache_lru");

/// Errors from the datastore.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create datastore directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open datastore {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error(
        "datastore {path} has layout version {found}; this build reads version {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("datastore database error: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! via_redb_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
via_redb_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// How full the two parts are. Bytes count block bytes only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub store_blocks: u64,
    pub store_bytes: u64,
    pub store_limit: u64,
    pub cache_blocks: u64,
    pub cache_bytes: u64,
    pub cache_limit: u64,
}

/// Which part of the datastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Store,
    Cache,
}

impl Part {
    fn blocks(self) -> BlocksTable {
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

    fn lru(self) -> LruTable {
        match self {
            Part::Store => STORE_LRU,
            Part::Cache => CACHE_LRU,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Part::Store => "store",
            Part::Cache => "cache",
        }
    }
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
}

/// What reading one part gave.
enum Read {
    Miss,
    Hit(Block),
    /// Present but the wrong length or not matching its key.
    Corrupt,
}

/// The node's datastore. See the module documentation.
pub struct Datastore {
    db: Database,
    path: PathBuf,
    store_limit: u64,
    cache_limit: u64,
    store_capacity: u64,
    cache_capacity: u64,
    store_blocks: AtomicU64,
    cache_blocks: AtomicU64,
    writer: Mutex<Writer>,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datastore")
            .field("path", &self.path)
            .field("usage", &self.usage())
            .finish()
    }
}

impl Datastore {
    /// Open (or create) the datastore file at `path` with the given budgets
    /// in bytes. The parent directory is created if missing. If the file
    /// holds more than the budgets allow (they were lowered), the
    /// least-recently-used blocks are evicted now.
    pub fn open(path: &Path, store_bytes: u64, cache_bytes: u64) -> Result<Datastore, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        let db = Database::builder()
            .set_cache_size(DB_CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let block_len = BLOCK_LEN as u64;
        let store = Datastore {
            db,
            path: path.to_path_buf(),
            store_limit: store_bytes,
            cache_limit: cache_bytes,
            store_capacity: store_bytes / block_len,
            cache_capacity: cache_bytes / block_len,
            store_blocks: AtomicU64::new(0),
            cache_blocks: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                next_seq: 0,
                lazy_commits: 0,
            }),
        };
        store.initialise()?;
        Ok(store)
    }

    /// Create the tables, check the layout version, restore the sequence
    /// counter, repair an inconsistent recency index and apply the budgets.
    fn initialise(&self) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("version")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("version", SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::Schema {
                        path: self.path.clone(),
                        found,
                    })
                }
            }
        }
        let mut next_seq = 0u64;
        for part in [Part::Store, Part::Cache] {
            let last = {
                let lru = txn.open_table(part.lru())?;
                let last = lru.last()?.map(|(seq, _)| seq.value());
                last
            };
            if let Some(last) = last {
                next_seq = next_seq.max(last.saturating_add(1));
            }
        }
        writer.next_seq = next_seq;
        for part in [Part::Store, Part::Cache] {
            rebuild_index_if_inconsistent(&txn, part, &mut writer)?;
            evict_over(&txn, part, self.capacity(part))?;
        }
        self.commit(txn, Commit::Durable, &mut writer)?;
        Ok(())
    }

    /// Look `key` up: the store first, then the cache. A hit refreshes the
    /// block's recency in that part. A block that fails verification is
    /// removed and treated as missing.
    pub fn get(&self, key: &RoutingKey) -> Result<Option<Block>, StoreError> {
        for part in [Part::Store, Part::Cache] {
            match self.read(part, key)? {
                Read::Hit(block) => {
                    if let Err(e) = self.touch(part, key) {
                        tracing::warn!(%key, part = part.name(), error = %e,
                            "datastore: could not refresh block recency");
                    }
                    return Ok(Some(block));
                }
                Read::Corrupt => self.remove_corrupt(part, key)?,
                Read::Miss => {}
            }
        }
        Ok(None)
    }

    /// Keep a block this node is a sink for. Durable when it returns.
    pub fn put_store(&self, block: &Block) -> Result<(), StoreError> {
        self.put(Part::Store, block, Commit::Durable)
    }

    /// Keep a block that passed through. Visible at once, but a crash may
    /// lose it (non-durable commit).
    pub fn put_cache(&self, block: &Block) -> Result<(), StoreError> {
        self.put(Part::Cache, block, Commit::Lazy)
    }

    /// Whether the store holds `key`. Checks presence only; a damaged block
    /// is detected (and removed) by the next [`Datastore::get`].
    pub fn contains_store(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        self.contains(Part::Store, key)
    }

    /// Whether the cache holds `key`. Checks presence only, as
    /// [`Datastore::contains_store`].
    pub fn contains_cache(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        self.contains(Part::Cache, key)
    }

    /// Current fill of both parts and their budgets.
    pub fn usage(&self) -> Usage {
        let block_len = BLOCK_LEN as u64;
        let store_blocks = self.store_blocks.load(Ordering::Acquire);
        let cache_blocks = self.cache_blocks.load(Ordering::Acquire);
        Usage {
            store_blocks,
            store_bytes: store_blocks.saturating_mul(block_len),
            store_limit: self.store_limit,
            cache_blocks,
            cache_bytes: cache_blocks.saturating_mul(block_len),
            cache_limit: self.cache_limit,
        }
    }

    /// Make every earlier write durable (cache entries and recency updates
    /// included). Called on drop as well; call it explicitly at shutdown to
    /// see errors.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        self.commit(txn, Commit::Durable, &mut writer)
    }

    /// The file this datastore lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Test hook: damage the copies of `key` held on disk, through redb, so
    /// that they no longer verify. With `truncate` the value is cut short
    /// (wrong length), otherwise one byte is flipped. Returns how many copies
    /// (0, 1 or 2) were damaged.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, key: &RoutingKey, truncate: bool) -> Result<usize, StoreError> {
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        let mut damaged = 0;
        for part in [Part::Store, Part::Cache] {
            let mut blocks = txn.open_table(part.blocks())?;
            let bytes = blocks.get(&key.0)?.map(|v| v.value().to_vec());
            if let Some(mut bytes) = bytes {
                if truncate {
                    bytes.truncate(bytes.len() / 2);
                } else if let Some(b) = bytes.get_mut(0) {
                    *b ^= 0x01;
                }
                blocks.insert(&key.0, bytes.as_slice())?;
                damaged += 1;
            }
        }
        self.commit(txn, Commit::Durable, &mut writer)?;
        Ok(damaged)
    }

    fn capacity(&self, part: Part) -> u64 {
        match part {
            Part::Store => self.store_capacity,
            Part::Cache => self.cache_capacity,
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // The guarded state is two counters that stay valid whatever a
        // panicking writer was doing, so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
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
        let cache_blocks = txn.open_table(CACHE_BLOCKS)?.len()?;
        txn.commit()?;
        if durable {
            writer.lazy_commits = 0;
        } else {
            writer.lazy_commits = writer.lazy_commits.saturating_add(1);
        }
        self.store_blocks.store(store_blocks, Ordering::Release);
        self.cache_blocks.store(cache_blocks, Ordering::Release);
        Ok(())
    }

    fn read(&self, part: Part, key: &RoutingKey) -> Result<Read, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(part.blocks())?;
        let Some(value) = blocks.get(&key.0)? else {
            return Ok(Read::Miss);
        };
        Ok(match check_block(key, value.value()) {
            Some(block) => Read::Hit(block),
            None => Read::Corrupt,
        })
    }

    fn contains(&self, part: Part, key: &RoutingKey) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(part.blocks())?;
        Ok(blocks.get(&key.0)?.is_some())
    }

    fn put(&self, part: Part, block: &Block, commit: Commit) -> Result<(), StoreError> {
        let capacity = self.capacity(part);
        if capacity == 0 {
            tracing::debug!(
                part = part.name(),
                "datastore: part has no room; block dropped"
            );
            return Ok(());
        }
        let key = block.routing_key();
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        {
            let mut blocks = txn.open_table(part.blocks())?;
            // Keep what is held when it is this block, or (the collision
            // rule for signed keys) a different block that still verifies.
            let keep = blocks.get(&key.0)?.is_some_and(|v| {
                v.value() == block.as_bytes() || check_block(&key, v.value()).is_some()
            });
            if !keep {
                blocks.insert(&key.0, block.as_bytes())?;
            }
        }
        set_recency(&txn, part, &key, &mut writer)?;
        evict_over(&txn, part, capacity)?;
        self.commit(txn, commit, &mut writer)
    }

    /// Give `key` the newest recency in `part`, if it is still there.
    fn touch(&self, part: Part, key: &RoutingKey) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        let present = txn.open_table(part.blocks())?.get(&key.0)?.is_some();
        if !present {
            // Evicted between the read and now; nothing to refresh.
            return Ok(());
        }
        set_recency(&txn, part, key, &mut writer)?;
        self.commit(txn, Commit::Lazy, &mut writer)
    }

    /// Remove a block that failed verification, if it still does.
    fn remove_corrupt(&self, part: Part, key: &RoutingKey) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        let txn = self.db.begin_write()?;
        let still_bad = {
            let blocks = txn.open_table(part.blocks())?;
            let value = blocks.get(&key.0)?;
            value.is_some_and(|v| check_block(key, v.value()).is_none())
        };
        if !still_bad {
            return Ok(());
        }
        tracing::warn!(%key, part = part.name(),
            "datastore: block on disk does not match its key; removed");
        remove_entry(&txn, part, key)?;
        self.commit(txn, Commit::Durable, &mut writer)
    }
}

impl Drop for Datastore {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(path = %self.path.display(), error = %e,
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

/// The block stored under `key`, if the bytes are one and hash to the key.
fn check_block(key: &RoutingKey, bytes: &[u8]) -> Option<Block> {
    let block = Block::from_bytes(bytes.to_vec()).ok()?;
    block.verify(key).ok()?;
    Some(block)
}

fn set_recency(
    txn: &WriteTransaction,
    part: Part,
    key: &RoutingKey,
    writer: &mut Writer,
) -> Result<(), StoreError> {
    let seq = writer.next_seq;
    writer.next_seq = seq.saturating_add(1);
    let mut recency = txn.open_table(part.recency())?;
    let mut lru = txn.open_table(part.lru())?;
    let old = recency.insert(&key.0, seq)?.map(|v| v.value());
    if let Some(old) = old {
        lru.remove(old)?;
    }
    lru.insert(seq, &key.0)?;
    Ok(())
}

fn remove_entry(txn: &WriteTransaction, part: Part, key: &RoutingKey) -> Result<(), StoreError> {
    let mut blocks = txn.open_table(part.blocks())?;
    let mut recency = txn.open_table(part.recency())?;
    let mut lru = txn.open_table(part.lru())?;
    blocks.remove(&key.0)?;
    let old = recency.remove(&key.0)?.map(|v| v.value());
    if let Some(old) = old {
        lru.remove(old)?;
    }
    Ok(())
}

/// Evict least-recently-used blocks of `part` until it holds at most
/// `capacity`.
fn evict_over(txn: &WriteTransaction, part: Part, capacity: u64) -> Result<(), StoreError> {
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
        tracing::trace!(key = %RoutingKey(oldest), part = part.name(), "datastore: evicted");
    }
    Ok(())
}

/// Every commit keeps the three tables of a part in step, so this only acts
/// on a file damaged some other way: if the sizes disagree, the recency index
/// is rebuilt from the blocks (in key order, i.e. arbitrary recency).
fn rebuild_index_if_inconsistent(
    txn: &WriteTransaction,
    part: Part,
    writer: &mut Writer,
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
        set_recency(txn, part, &RoutingKey(key), writer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Datastore>();
    }
}
