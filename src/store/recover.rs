//! After an I/O error: reopening the database and reloading what the
//! datastore keeps in memory about it (counts, sequence, key index). Also
//! the test hook that damages blocks on disk.

use std::sync::atomic::Ordering;

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::{self, Part, CACHE_BLOCKS, STORE_BLOCKS};
use super::{builder, Commit, Datastore, Db, StoreError, StoreState, Writer};
use crate::keys::RoutingKey;

impl Datastore {
    /// Test hook: damage the copies of `key` held on disk, through redb, so
    /// that they no longer verify. With `truncate` the value is cut short
    /// (wrong length), otherwise one byte is flipped. Returns how many copies
    /// (0, 1 or 2) were damaged.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, key: &RoutingKey, truncate: bool) -> Result<usize, StoreError> {
        self.write(Commit::Durable, |txn, _| {
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
            Ok(damaged)
        })
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
        writer.lazy_blocks = 0;
        writer.changes.clear();
        self.index.clear();
        if let Err(e) = self.reload_counts(writer) {
            tracing::warn!(path, error = %e, "datastore: cannot read counts after reopening");
        }
    }

    /// Read the block counts and the next sequence number from disk.
    pub(super) fn reload_counts(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let (store, cache, next_seq) = self.read(|txn| {
            let next_seq = tables::next_seq(&txn.open_table(Part::Store.lru())?)?
                .max(tables::next_seq(&txn.open_table(Part::Cache.lru())?)?);
            Ok((
                txn.open_table(STORE_BLOCKS)?.len()?,
                txn.open_table(CACHE_BLOCKS)?.len()?,
                next_seq,
            ))
        })?;
        writer.next_seq = writer.next_seq.max(next_seq);
        self.read(|txn| self.index.load(txn))?;
        self.store_blocks.store(store, Ordering::Release);
        self.cache_blocks.store(cache, Ordering::Release);
        Ok(())
    }
}
