//! Group commit: one thread writes the store's blocks in batches, one fsync
//! per batch, and reports which blocks are durable.
//!
//! The node's router must not wait for the disk, and a sink must not
//! acknowledge a block before its fsync. The router hands each block to
//! [`GroupWriter::try_write`] (a bounded queue; a full queue hands the block
//! back at once) and goes on; the writer thread takes every block waiting at
//! that moment (up to a batch bound), stores them with
//! [`Datastore::put_store_batch`] (one transaction, one durable commit) and
//! passes the results to its `done` callback, which the node turns into
//! events for the router: the acknowledgement (or `InsertFailed`) goes out
//! only then. While one batch is being made durable the next one gathers in
//! the queue, so the more inserts arrive at once, the fewer fsyncs each
//! costs.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use super::Datastore;
use crate::keys::{Block, RoutingKey};

/// What became of one block handed to the writer.
#[derive(Debug)]
pub struct Written<T> {
    /// What the caller attached to the block.
    pub tag: T,
    pub key: RoutingKey,
    /// The block is durably in the store.
    pub stored: bool,
}

/// The sending end of the writer thread's queue. Dropping every clone
/// lets the thread finish the queued blocks and exit.
pub struct GroupWriter<T> {
    tx: SyncSender<(Block, T)>,
}

impl<T> Clone for GroupWriter<T> {
    fn clone(&self) -> Self {
        GroupWriter {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> GroupWriter<T> {
    /// Start the writer thread for `store`: at most `queue` blocks wait,
    /// at most `max_batch` go into one commit; `done` receives each batch's
    /// results (on the writer thread).
    pub fn spawn(
        store: Arc<Datastore>,
        queue: usize,
        max_batch: usize,
        done: impl FnMut(Vec<Written<T>>) + Send + 'static,
    ) -> std::io::Result<GroupWriter<T>> {
        let (tx, rx) = sync_channel(queue.max(1));
        std::thread::Builder::new()
            .name("veil-store-writer".into())
            .spawn(move || run(&store, &rx, max_batch.max(1), done))?;
        Ok(GroupWriter { tx })
    }

    /// Queue `block`; hands it back if the queue is full or the writer is
    /// gone.
    pub fn try_write(&self, block: Block, tag: T) -> Result<(), (Block, T)> {
        self.tx.try_send((block, tag)).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

/// `first` and whatever else waits in `rx` now, up to `max_batch` in all.
fn gather<J>(rx: &Receiver<J>, first: J, max_batch: usize) -> Vec<J> {
    let mut jobs = vec![first];
    while jobs.len() < max_batch {
        let Ok(job) = rx.try_recv() else {
            break;
        };
        jobs.push(job);
    }
    jobs
}

fn run<T>(
    store: &Datastore,
    rx: &Receiver<(Block, T)>,
    max_batch: usize,
    mut done: impl FnMut(Vec<Written<T>>),
) {
    while let Ok(first) = rx.recv() {
        let (blocks, tags): (Vec<Block>, Vec<T>) = gather(rx, first, max_batch).into_iter().unzip();
        let stored = match store.put_store_batch(&blocks) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(blocks = blocks.len(), error = %e,
                    "datastore: durable write failed; none of these blocks is stored");
                vec![false; blocks.len()]
            }
        };
        let results = tags
            .into_iter()
            .zip(&blocks)
            .zip(stored)
            .map(|((tag, block), stored)| Written {
                tag,
                key: block.routing_key(),
                stored,
            })
            .collect();
        done(results);
    }
}

/// Nice value of the cache's writer thread.
const CACHE_WRITER_NICE: libc::c_int = 10;

/// Lower the calling thread's scheduling priority (Linux: the nice value is
/// per thread): when the CPU is short, caching yields to forwarding, so its
/// queue fills and blocks go uncached instead of slowing the data path.
fn yield_to_forwarding() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only changes the nice value of the thread
        // named by its own id; no memory is touched.
        let done = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CACHE_WRITER_NICE)
        };
        if done != 0 {
            tracing::debug!("cannot lower the cache writer's priority");
        }
    }
}

/// Most blocks the cache's writer takes from its queue at once, whatever
/// its caller asks: the blocks it gathers wait in memory (2 MiB at most).
pub const CACHE_BATCH_MAX: usize = 64;

/// How long the cache's writer waits, after the first block of a batch, for
/// more to join it. Each block costs two positioned writes in the slot file
/// (`store/cache.rs`) and nothing per batch, so this no longer saves disk
/// work (it did while the cache was a redb table and each commit had a
/// fixed cost); it saves wake-ups: the writer sleeps rather than waits on
/// the queue, so that the router hands over blocks without waking it for
/// each. The queue (`runtime.cache_writes_in_flight`, 64 by default) holds
/// what arrives meanwhile, which is all of it below about 200 MiB/s. A
/// cached block becomes visible this much later, which nothing depends on.
pub const CACHE_LINGER: Duration = Duration::from_millis(10);

/// The cache's writer: one thread that keeps the blocks passing through
/// (see [`Datastore::put_cache_batch`]); after a batch's first block it
/// sleeps [`CACHE_LINGER`] so that the rest of the batch gathers in the
/// queue. Caching is best effort: a full queue hands the block back and it
/// is simply not cached. One thread instead of a blocking-pool task per
/// block keeps the node's threads (and their allocator arenas) few.
pub struct CacheWriter {
    tx: SyncSender<Block>,
}

impl CacheWriter {
    /// Start the thread: at most `queue` blocks wait, at most `max_batch`
    /// (and at most [`CACHE_BATCH_MAX`]) are taken at once.
    pub fn spawn(
        store: Arc<Datastore>,
        queue: usize,
        max_batch: usize,
    ) -> std::io::Result<CacheWriter> {
        let (tx, rx) = sync_channel::<Block>(queue.max(1));
        let max_batch = max_batch.clamp(1, CACHE_BATCH_MAX);
        std::thread::Builder::new()
            .name("veil-cache-writer".into())
            .spawn(move || {
                yield_to_forwarding();
                while let Ok(first) = rx.recv() {
                    std::thread::sleep(CACHE_LINGER);
                    let blocks = gather(&rx, first, max_batch);
                    if let Err(e) = store.put_cache_batch(&blocks) {
                        tracing::warn!(blocks = blocks.len(), error = %e,
                            "datastore: cannot cache blocks");
                    }
                }
            })?;
        Ok(CacheWriter { tx })
    }

    /// Queue `block`; hands it back if the queue is full or the thread is
    /// gone.
    pub fn try_write(&self, block: Block) -> Result<(), Block> {
        self.tx.try_send(block).map_err(|e| match e {
            TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
        })
    }
}
