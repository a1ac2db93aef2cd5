//! Opening a datastore: the file (or an overlay), the cache's slot file,
//! the layout version, the recency index checked, the budgets applied.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use redb::{Builder, Database, ReadableTable};

use super::index::{Changes, KeyIndex, Touches};
use super::tables::{self, Part, META};
use super::{
    Commit, Datastore, Db, StoreError, StoreHealth, StoreSource, Writer, DB_CACHE_BYTES,
    SCHEMA_VERSION, SCHEMA_WHOLE_BLOCKS,
};
use crate::keys::BLOCK_LEN;

pub(super) fn builder(db_cache: usize) -> Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(db_cache);
    builder
}

impl Datastore {
    /// Open (or create) the datastore file at `path` with the given budgets
    /// in bytes. The parent directory is created if missing. If the file
    /// holds more than the budgets allow (they were lowered), the
    /// least-recently-used blocks are evicted now.
    pub fn open(path: &Path, store_bytes: u64, cache_bytes: u64) -> Result<Datastore, StoreError> {
        let source = StoreSource::File {
            path: path.to_path_buf(),
            disk_limit: None,
        };
        Datastore::open_source(source, store_bytes, cache_bytes)
    }

    /// Open (or create) a datastore on `source`, as [`Datastore::open`].
    pub fn open_source(
        source: StoreSource,
        store_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Datastore, StoreError> {
        Datastore::open_sized(source, store_bytes, cache_bytes, DB_CACHE_BYTES)
    }

    /// Open (or create) a datastore on `source` whose redb page cache may
    /// use `db_cache` bytes of memory.
    pub fn open_sized(
        source: StoreSource,
        store_bytes: u64,
        cache_bytes: u64,
        db_cache: usize,
    ) -> Result<Datastore, StoreError> {
        if let StoreSource::File { path, .. } = &source {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        let db = source.open(&builder(db_cache))?;
        let block_len = BLOCK_LEN as u64;
        let cache = source.open_cache(cache_bytes / block_len)?;
        let store = Datastore {
            db: RwLock::new(Db::Writable(db)),
            source,
            store_limit: store_bytes,
            cache_limit: cache_bytes,
            store_capacity: store_bytes / block_len,
            store_blocks: AtomicU64::new(0),
            cache,
            writer: Mutex::new(Writer {
                next_seq: 0,
                lazy_commits: 0,
                changes: Changes::default(),
            }),
            health: Mutex::new(StoreHealth::default()),
            index: KeyIndex::default(),
            touches: Touches::default(),
            db_cache,
        };
        store.initialise()?;
        store.move_old_cache()?;
        store.read(|txn| store.index.load(txn))?;
        Ok(store)
    }

    /// Create the tables, check the layout version, restore the sequence
    /// counter, repair an inconsistent recency index and apply the budget.
    fn initialise(&self) -> Result<(), StoreError> {
        let path = self.source.path().to_path_buf();
        let capacity = self.store_capacity;
        self.write(Commit::Durable, |txn, writer| {
            {
                let mut meta = txn.open_table(META)?;
                let found = meta.get("version")?.map(|v| v.value());
                match found {
                    None | Some(SCHEMA_WHOLE_BLOCKS) => {
                        meta.insert("version", SCHEMA_VERSION)?;
                    }
                    Some(SCHEMA_VERSION) => {}
                    Some(found) => return Err(StoreError::Schema { path, found }),
                }
            }
            let part = Part::Store;
            let mut next_seq = tables::next_seq(&txn.open_table(part.lru())?)?;
            txn.open_table(part.tails())?;
            tables::rebuild_index_if_inconsistent(txn, part, &mut next_seq)?;
            tables::evict_over(txn, part, capacity, &mut writer.changes)?;
            writer.next_seq = next_seq;
            Ok(())
        })
    }
}
