//! After an I/O error: reopening the database and reloading what the
//! datastore keeps in memory about it (counts, sequence, key index). Also
//! moving an older build's cache tables into the slot file, and the test
//! hooks that damage blocks on disk and break cache writes.

use std::sync::atomic::Ordering;

use redb::{ReadableTable, ReadableTableMetadata};

use super::open::builder;
use super::tables::{self, Part, STORE_BLOCKS};
use super::{Commit, Datastore, Db, StoreError, StoreState, Torn, Writer};
use crate::keys::{Block, RoutingKey};

impl Datastore {
    /// Test hook: damage the copies of `key` held on disk (the store's
    /// through redb, the cache's in its slot file), so that they no longer
    /// verify. With `truncate` the stored value is cut short (wrong length;
    /// in the cache, the second half of the slot is zeroed), otherwise one
    /// byte is flipped. Returns how many copies (0, 1 or 2) were damaged.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, key: &RoutingKey, truncate: bool) -> Result<usize, StoreError> {
        let stored = self.write(Commit::Durable, |txn, _| {
            let mut blocks = txn.open_table(Part::Store.blocks())?;
            let bytes = blocks.get(&key.0)?.map(|v| v.value().to_vec());
            let Some(mut bytes) = bytes else {
                return Ok(0);
            };
            if truncate {
                bytes.truncate(bytes.len() / 2);
            } else if let Some(b) = bytes.get_mut(0) {
                *b ^= 0x01;
            }
            blocks.insert(&key.0, bytes.as_slice())?;
            Ok(1)
        })?;
        let cached = self
            .cache
            .corrupt(key, truncate)
            .map_err(StoreError::CacheWrite)?;
        Ok(stored + usize::from(cached))
    }

    /// Test hook: make every later write to the cache's slot file fail
    /// (`ENOSPC`, as on a full disk), or work again.
    #[doc(hidden)]
    pub fn fail_cache_writes_for_test(&self, fail: bool) {
        self.cache.fail_writes(fail);
    }

    /// Test hook: begin caching `block` as a put does, but stop half way
    /// as `torn` says, as a crash would (the in-memory index is not told;
    /// the slot taken stays unused until the datastore is reopened).
    #[doc(hidden)]
    pub fn put_cache_torn_for_test(&self, block: &Block, torn: Torn) -> Result<(), StoreError> {
        self.cache
            .put_torn(block, torn)
            .map_err(StoreError::CacheWrite)
    }

    /// Move the blocks of the cache tables an older build kept in the
    /// database into the slot file (least recently used first, so the
    /// newest survive a smaller cache) and delete the tables.
    pub(super) fn move_old_cache(&self) -> Result<(), StoreError> {
        if !self.read(tables::has_old_cache)? {
            return Ok(());
        }
        let cache = &self.cache;
        let moved = self.write(Commit::Durable, |txn, _| {
            tables::take_old_cache(txn, |block| {
                // A block that cannot be written is simply not cached.
                let _ = cache.put(&block);
            })
        })?;
        tracing::info!(moved, slots = %cache.name(),
            "datastore: moved the cache out of the database into its slot file");
        Ok(())
    }

    /// Close the database after an I/O error and open it again; failing
    /// that, read-only; failing that, closed.
    pub(super) fn recover(&self, writer: &mut Writer, error: &StoreError) {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(*db, Db::Writable(_)) {
            return;
        }
        // Dropping the database closes the file (and releases its lock)
        // before it is opened again.
        *db = Db::Closed;
        let path = self.source.path().display().to_string();
        let builder = builder(self.db_cache);
        let (reopened, state, why) = match self.source.open(&builder) {
            Ok(d) => {
                tracing::warn!(path, %error, "datastore: I/O error; reopened the database");
                (Db::Writable(d), StoreState::Ok, None)
            }
            Err(e) => match self.source.open_read_only(&builder) {
                Ok(r) => {
                    tracing::error!(path, %error, reopen = %e,
                        "datastore: I/O error and cannot reopen for writing; now read-only");
                    let why = format!("{error}; reopening: {e}");
                    (Db::ReadOnly(r), StoreState::ReadOnly, Some(why))
                }
                Err(e2) => {
                    tracing::error!(path, %error, reopen = %e, read_only = %e2,
                        "datastore: I/O error and cannot reopen; every lookup will miss");
                    let why = format!("{error}; reopening: {e}; read-only: {e2}");
                    (Db::Closed, StoreState::Closed, Some(why))
                }
            },
        };
        *db = reopened;
        drop(db);
        {
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            health.state = state;
            if let Some(why) = why {
                health.last_error = Some(why);
            }
            if state == StoreState::Ok {
                health.reopens = health.reopens.saturating_add(1);
            }
        }
        writer.lazy_commits = 0;
        writer.changes.clear();
        self.index.clear();
        if let Err(e) = self.reload_counts(writer) {
            tracing::warn!(path, error = %e, "datastore: cannot read counts after reopening");
        }
    }

    /// Read the block counts and the next sequence number from disk.
    pub(super) fn reload_counts(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let (store, next_seq) = self.read(|txn| {
            let next_seq = tables::next_seq(&txn.open_table(Part::Store.lru())?)?;
            Ok((txn.open_table(STORE_BLOCKS)?.len()?, next_seq))
        })?;
        writer.next_seq = writer.next_seq.max(next_seq);
        self.read(|txn| self.index.load(txn))?;
        self.store_blocks.store(store, Ordering::Release);
        Ok(())
    }
}
