//! In memory: which keys each part holds, and the recency refreshes not
//! yet written.
//!
//! The **key index** (of the store part; the cache keeps its own, see
//! `store/cache.rs`) lets a caller ask "is this block here?" without
//! touching the disk ([`Datastore::holds`]): the node's router answers most
//! lookups (misses) from it and sends only hits to a reader off its task.
//! It is loaded from the file when the datastore opens (and reopens), and
//! every write transaction records the keys it adds and removes
//! ([`Changes`]); they reach the index only once the transaction committed.
//! It costs about 50 bytes per block held (a 256 MiB store: 8192 blocks,
//! under 0.5 MiB).
//!
//! **Recency refreshes** of [`Datastore::get`] hits are kept in memory
//! ([`Touches`], at most [`MAX_TOUCHES`]) and written by the next write
//! transaction, whatever it is for; a get that finds the list full writes
//! them all in one non-durable commit. So a hit costs no write transaction
//! of its own.
//!
//! [`Datastore::holds`]: super::Datastore::holds
//! [`Datastore::get`]: super::Datastore::get

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::tables::{self, Part};
use super::StoreError;
use crate::keys::RoutingKey;

/// Most recency refreshes kept in memory before they are written.
pub const MAX_TOUCHES: usize = 1024;

/// Keys a write transaction added and removed, per part.
#[derive(Default)]
pub(super) struct Changes {
    added: Vec<(Part, [u8; 32])>,
    removed: Vec<(Part, [u8; 32])>,
}

impl Changes {
    pub(super) fn added(&mut self, part: Part, key: &RoutingKey) {
        self.added.push((part, key.0));
    }

    pub(super) fn removed(&mut self, part: Part, key: [u8; 32]) {
        self.removed.push((part, key));
    }

    /// The transaction did not commit: forget what it did.
    pub(super) fn clear(&mut self) {
        self.added.clear();
        self.removed.clear();
    }
}

fn slot(part: Part) -> usize {
    match part {
        Part::Store => 0,
        Part::Cache => 1,
    }
}

/// The keys each part holds.
#[derive(Default)]
pub(super) struct KeyIndex {
    parts: RwLock<[HashSet<[u8; 32]>; 2]>,
}

impl KeyIndex {
    /// Whether `part` holds `key`.
    pub(super) fn holds_in(&self, part: Part, key: &RoutingKey) -> bool {
        let parts = self.parts.read().unwrap_or_else(|e| e.into_inner());
        parts[slot(part)].contains(&key.0)
    }

    /// Apply what a committed transaction did (adds, then removes: a key a
    /// batch stored and then evicted is not held).
    pub(super) fn apply(&self, changes: &mut Changes) {
        let mut parts = self.parts.write().unwrap_or_else(|e| e.into_inner());
        for (part, key) in changes.added.drain(..) {
            parts[slot(part)].insert(key);
        }
        for (part, key) in changes.removed.drain(..) {
            parts[slot(part)].remove(&key);
        }
    }

    /// Replace the index with what `txn` sees on disk.
    pub(super) fn load(&self, txn: &ReadTransaction) -> Result<(), StoreError> {
        let mut loaded: [HashSet<[u8; 32]>; 2] = Default::default();
        // The cache part keeps its own index (`store/cache.rs`).
        for part in [Part::Store] {
            let blocks = txn.open_table(part.blocks())?;
            for entry in blocks.iter()? {
                let (key, _) = entry?;
                loaded[slot(part)].insert(*key.value());
            }
        }
        *self.parts.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// Forget everything (a closed datastore holds nothing).
    pub(super) fn clear(&self) {
        let mut parts = self.parts.write().unwrap_or_else(|e| e.into_inner());
        for p in parts.iter_mut() {
            p.clear();
        }
    }
}

/// Recency refreshes waiting to be written.
#[derive(Default)]
pub(super) struct Touches {
    pending: Mutex<Vec<(Part, RoutingKey)>>,
}

impl Touches {
    /// Remember a hit; true once the list is full and should be written.
    pub(super) fn add(&self, part: Part, key: RoutingKey) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_TOUCHES {
            pending.push((part, key));
        }
        pending.len() >= MAX_TOUCHES
    }

    /// Write every waiting refresh in `txn` (each key still held gets the
    /// next sequence number, in the order the hits came).
    pub(super) fn write(
        &self,
        txn: &WriteTransaction,
        next: &mut impl FnMut() -> u64,
    ) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (part, key) in taken {
            // It may have been evicted since the hit.
            if tables::holds(txn, part, &key)? {
                tables::set_recency(txn, part, &key, next())?;
            }
        }
        Ok(())
    }
}
