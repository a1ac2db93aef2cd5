//! Whole files over a node's client API: split and insert, fetch and
//! reassemble. Used by `veil put`/`veil get` and the testnet workload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::client::{Client, ClientError, Endpoint};
use crate::content::{self, ContentError, FetchOptions, Progress, SplitOptions, Splitter};
use crate::error::{ErrorKind, HasKind};
use crate::keys::{Block, Chk, RoutingKey};
use crate::routing::Failure;
use sha2::{Digest, Sha256};

/// How long one block request may take end to end.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(150);

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("an insert worker stopped unexpectedly: {0}")]
    Worker(#[source] tokio::task::JoinError),
    /// Some blocks were refused; the root was not inserted.
    #[error("{failed} of {total} blocks could not be inserted (the first: {first}); the file's URI was not published")]
    InsertFailed {
        failed: u64,
        total: u64,
        #[source]
        first: ClientError,
    },
}

impl HasKind for TransferError {
    /// A block that could not be fetched has the kind of the client error
    /// behind it; data that does not verify is [`ErrorKind::BadData`].
    fn kind(&self) -> ErrorKind {
        match self {
            TransferError::Client(e) => e.kind(),
            TransferError::Content(e) if e.is_bad_data() => ErrorKind::BadData,
            TransferError::Content(e) => e
                .unavailable_cause()
                .and_then(|cause| cause.downcast_ref::<ClientError>())
                .map_or(ErrorKind::Local, HasKind::kind),
            TransferError::Worker(_) => ErrorKind::Local,
            TransferError::InsertFailed { first, .. } => first.kind(),
        }
    }
}

/// Split `data` with the default options (100% redundancy), insert every
/// block through the node at `node` with at most `concurrency` blocks in
/// flight (the root last, so the URI only resolves once everything is in),
/// and return the URI. `on_block` is called after each block with (done,
/// total).
pub async fn put_file(
    node: &Endpoint,
    data: &[u8],
    concurrency: usize,
    on_block: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Chk, TransferError> {
    put_file_with(node, data, concurrency, &SplitOptions::default(), on_block).await
}

/// [`put_file`] with the splitting options (redundancy, segment size).
pub async fn put_file_with(
    node: &Endpoint,
    data: &[u8],
    concurrency: usize,
    split: &SplitOptions,
    on_block: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Chk, TransferError> {
    let input = std::io::Cursor::new(data.to_vec());
    put_stream(
        node,
        input,
        data.len() as u64,
        concurrency,
        split,
        move |p| on_block(p.blocks_done as usize, p.blocks_total as usize),
    )
    .await
}

/// Progress of [`put_stream`], reported after every block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutProgress {
    /// Blocks acknowledged (a block repeated within the file counts once
    /// per place, and is sent once).
    pub blocks_done: u64,
    /// Blocks in the file: leaves, manifests and the root.
    pub blocks_total: u64,
    /// Segments whose every block is acknowledged.
    pub segments_done: u64,
    pub segments_total: u64,
    /// Blocks the node refused to store, after [`INSERT_ATTEMPTS`] tries.
    pub blocks_failed: u64,
    /// Insert attempts repeated after a transient failure
    /// ([`insert_worth_retrying`]), the top block's copies included.
    pub blocks_retried: u64,
    /// Copies of the top block ([`content::TOP_COPIES`]), placed once
    /// every other block is in, and how many of them were placed (block
    /// and pointer both acknowledged) or failed.
    pub copies_total: u64,
    pub copies_done: u64,
    pub copies_failed: u64,
}

/// Routing keys already sent, so a block repeated within a file (a run of
/// zeros) is inserted once. Bounded: the last [`Self::CAP`] keys.
struct RecentKeys {
    order: std::collections::VecDeque<RoutingKey>,
    set: std::collections::HashSet<RoutingKey>,
}

impl RecentKeys {
    const CAP: usize = 4096;

    fn new() -> RecentKeys {
        RecentKeys {
            order: std::collections::VecDeque::with_capacity(Self::CAP),
            set: std::collections::HashSet::with_capacity(Self::CAP),
        }
    }

    /// True if `key` is new.
    fn insert(&mut self, key: RoutingKey) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > Self::CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// A batch of blocks from the splitter: one segment's leaves, or
/// manifests (no segment).
struct Batch {
    segment: Option<u64>,
    blocks: Vec<Block>,
}

/// Idle client connections to one node, reused across blocks.
#[derive(Clone)]
struct Pool {
    node: Endpoint,
    idle: Arc<std::sync::Mutex<Vec<Client>>>,
    /// Insert attempts repeated after a transient failure.
    retried: Arc<std::sync::atomic::AtomicU64>,
}

impl Pool {
    fn new(node: &Endpoint) -> Pool {
        Pool {
            node: node.clone(),
            idle: Arc::default(),
            retried: Arc::default(),
        }
    }

    async fn client(&self) -> Result<Client, ClientError> {
        let idle = self.idle.lock().ok().and_then(|mut p| p.pop());
        match idle {
            Some(c) => Ok(c),
            None => Client::connect(&self.node, BLOCK_TIMEOUT).await,
        }
    }

    fn retried(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn give_back(&self, client: Client) {
        if let Ok(mut p) = self.idle.lock() {
            p.push(client);
        }
    }

    async fn insert_once(&self, block: Block) -> Result<(), ClientError> {
        let mut client = self.client().await?;
        client.insert(block).await?;
        self.give_back(client);
        Ok(())
    }

    /// Insert `block`, asking again after a failure that a later attempt
    /// may not meet ([`insert_worth_retrying`]): up to
    /// [`INSERT_ATTEMPTS`] times, waiting [`INSERT_BACKOFF`], then twice
    /// as long, with a random part so retries do not arrive together.
    /// Every retry is counted in `retried`.
    async fn insert(&self, block: Block) -> Result<(), ClientError> {
        let mut attempt = 0;
        loop {
            match self.insert_once(block.clone()).await {
                Err(e) if attempt + 1 < INSERT_ATTEMPTS && insert_worth_retrying(&e) => {
                    self.retried
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let base = INSERT_BACKOFF * (1 << attempt);
                    let jitter = base.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(base + jitter).await;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn get(&self, key: RoutingKey) -> Result<Block, ClientError> {
        let mut client = self.client().await?;
        let block = client.get(key).await?;
        self.give_back(client);
        Ok(block)
    }
}

/// Inserts in flight, and which segments they finish.
struct Inserts {
    pool: Pool,
    limit: usize,
    tasks: JoinSet<(Option<u64>, Result<(), ClientError>)>,
    /// Blocks still unacknowledged per segment (+1 while it is dispatched).
    outstanding: HashMap<u64, usize>,
    progress: PutProgress,
    first_failure: Option<ClientError>,
}

impl Inserts {
    fn count(&mut self, segment: Option<u64>, blocks: u64) {
        self.progress.blocks_done += blocks;
        let Some(n) = segment else { return };
        if let Some(left) = self.outstanding.get_mut(&n) {
            *left -= 1;
            if *left == 0 {
                self.outstanding.remove(&n);
                self.progress.segments_done += 1;
            }
        }
    }

    /// Wait for one insert. A block the node refused is counted and the put
    /// goes on (so the error can say how many); losing the node ends it.
    async fn join_one(&mut self) -> Result<(), TransferError> {
        let Some(joined) = self.tasks.join_next().await else {
            return Ok(());
        };
        let (segment, result) = joined.map_err(TransferError::Worker)?;
        self.progress.blocks_retried = self.pool.retried();
        match result {
            Ok(()) => self.count(segment, 1),
            Err(e @ ClientError::Network(_)) => {
                self.progress.blocks_failed += 1;
                self.first_failure.get_or_insert(e);
                self.count(segment, 1);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn send(&mut self, batch: Batch, recent: &mut RecentKeys) -> Result<(), TransferError> {
        if let Some(n) = batch.segment {
            self.outstanding.insert(n, 1);
        }
        for block in batch.blocks {
            if !recent.insert(block.routing_key()) {
                self.progress.blocks_done += 1;
                continue;
            }
            while self.tasks.len() >= self.limit {
                self.join_one().await?;
            }
            if let Some(n) = batch.segment {
                *self.outstanding.entry(n).or_default() += 1;
            }
            let pool = self.pool.clone();
            let segment = batch.segment;
            self.tasks
                .spawn(async move { (segment, pool.insert(block).await) });
        }
        self.count(batch.segment, 0);
        Ok(())
    }

    async fn drain(&mut self) -> Result<(), TransferError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

/// Split `len` bytes of `input` as they are read and insert them through
/// the node at `node`: a segment at a time, with at most `concurrency`
/// blocks in flight and one encoded segment waiting, so memory stays at a
/// few segments whatever the file's size. Manifests are inserted as they
/// complete and the root last, once every other block is acknowledged.
/// Blocks the node refuses are counted and the put fails naming how many,
/// without inserting the root.
pub async fn put_stream<R: std::io::Read + Send + 'static>(
    node: &Endpoint,
    input: R,
    len: u64,
    concurrency: usize,
    split: &SplitOptions,
    mut on_progress: impl FnMut(PutProgress) + Send,
) -> Result<Chk, TransferError> {
    let mut splitter = Splitter::new(input, len, split)?;
    let mut inserts = Inserts {
        pool: Pool::new(node),
        limit: concurrency.clamp(1, MAX_CONCURRENCY),
        tasks: JoinSet::new(),
        outstanding: HashMap::new(),
        progress: PutProgress {
            blocks_total: splitter.total_blocks(),
            segments_total: splitter.segments(),
            ..PutProgress::default()
        },
        first_failure: None,
    };
    on_progress(inserts.progress);
    // One encoded segment waits in the channel while the next is read.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let producer = tokio::task::spawn_blocking(move || {
        while let Some(seg) = splitter.next_segment()? {
            let leaves = Batch {
                segment: Some(seg.number),
                blocks: seg.leaves,
            };
            let manifests = Batch {
                segment: None,
                blocks: seg.manifests.into_iter().map(|(_, b)| b).collect(),
            };
            // A closed channel: the put failed, and says why itself.
            if tx.blocking_send(leaves).is_err() || tx.blocking_send(manifests).is_err() {
                return Ok(None);
            }
        }
        splitter.finish().map(Some)
    });
    let mut recent = RecentKeys::new();
    let sent = async {
        while let Some(batch) = rx.recv().await {
            inserts.send(batch, &mut recent).await?;
            on_progress(inserts.progress);
        }
        Ok::<(), TransferError>(())
    }
    .await;
    drop(rx);
    let finished = producer.await.map_err(TransferError::Worker)?;
    sent?;
    let Some(end) = finished? else {
        return Err(ContentError::Stalled.into());
    };
    let manifests = Batch {
        segment: None,
        blocks: end.manifests.into_iter().map(|(_, b)| b).collect(),
    };
    inserts.send(manifests, &mut recent).await?;
    inserts.drain().await?;
    on_progress(inserts.progress);
    if let Some(first) = inserts.first_failure.take() {
        return Err(TransferError::InsertFailed {
            failed: inserts.progress.blocks_failed,
            total: inserts.progress.blocks_total,
            first,
        });
    }
    inserts.pool.insert(end.root.clone()).await?;
    inserts.progress.blocks_done += 1;
    on_progress(inserts.progress);
    // The root has no check blocks: copies of it at other points of the
    // key space. Best effort (the root is in, so the URI resolves), but
    // counted, so the caller can say which failed.
    let copies = content::top_copies(&end.uri, &end.root, content::TOP_COPIES)?;
    inserts.progress.copies_total = copies.len() as u64;
    let mut placing = JoinSet::new();
    for copy in copies {
        let pool = inserts.pool.clone();
        placing.spawn(async move {
            // The pointer only once its block is in.
            pool.insert(copy.block).await?;
            pool.insert(copy.pointer).await
        });
    }
    while let Some(joined) = placing.join_next().await {
        match joined {
            Ok(Ok(())) => inserts.progress.copies_done += 1,
            Ok(Err(_)) | Err(_) => inserts.progress.copies_failed += 1,
        }
    }
    inserts.progress.blocks_retried = inserts.pool.retried();
    on_progress(inserts.progress);
    Ok(end.uri)
}

/// The URI [`put_stream`] would give `len` bytes of `input` with these
/// options, computed by the same splitter without inserting anything
/// (FCP's `GetCHKOnly`). Blocking: it reads and encodes the whole input.
pub fn chk_of<R: std::io::Read>(
    input: R,
    len: u64,
    split: &SplitOptions,
) -> Result<Chk, TransferError> {
    let mut splitter = Splitter::new(input, len, split)?;
    while splitter.next_segment()?.is_some() {}
    Ok(splitter.finish()?.uri)
}

/// How many times one block's insert is tried before the put counts it as
/// failed.
pub const INSERT_ATTEMPTS: u32 = 4;

/// The wait before the first insert retry; each further one waits twice as
/// long (plus up to as much again at random).
pub const INSERT_BACKOFF: Duration = Duration::from_millis(250);

/// Whether an insert the network failed may succeed if tried again: a
/// peer that timed out, an overloaded node, or a path on which a node
/// lost its next hop or could not store (another attempt may take another
/// path, or find the disk with room again). Not a block that does not
/// verify, a collision, a node without peers, or a lost connection to the
/// node itself (which ends the put).
pub fn insert_worth_retrying(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Network(Failure::Timeout | Failure::Overloaded | Failure::NotStored)
    )
}

/// Whether a failed block request through the node is worth asking again:
/// not found, timed out, overloaded, or the connection lost mid-request.
/// Not when the node cannot be reached at all, has no peers, refuses, or
/// sent something that does not verify.
pub fn worth_retrying(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Network(f)) => !matches!(f, Failure::NoPeers),
        Some(ClientError::Timeout(_) | ClientError::Io(_) | ClientError::Closed) => true,
        _ => false,
    }
}

/// Blocks one transfer keeps in flight at most (each is a client API
/// connection to the node, which serves `client_max_connections`).
pub const MAX_CONCURRENCY: usize = 1024;

/// The fetch options `veil get` starts from: the defaults, retrying only
/// what [`worth_retrying`] says.
pub fn get_options(concurrency: usize) -> FetchOptions {
    FetchOptions {
        concurrency: concurrency.clamp(1, MAX_CONCURRENCY),
        retry_if: worth_retrying,
        ..FetchOptions::default()
    }
}

/// Fetch the file named by `uri` through the node at `node`, verifying every
/// block, the length and the whole-file hash ([`get_options`]).
pub async fn get_file(
    node: &Endpoint,
    uri: &Chk,
    concurrency: usize,
) -> Result<Vec<u8>, TransferError> {
    let mut out = Vec::new();
    get_to_writer(node, uri, &get_options(concurrency), &mut out, |_| {}).await?;
    Ok(out)
}

/// Fetch the file named by `uri` through the node at `node` into `writer`
/// (see [`content::fetch_to_writer`]: discard what was written on error).
pub async fn get_to_writer<W: tokio::io::AsyncWrite + Unpin>(
    node: &Endpoint,
    uri: &Chk,
    opts: &FetchOptions,
    writer: &mut W,
    on_progress: impl FnMut(Progress),
) -> Result<u64, TransferError> {
    let opts = window_for(node, opts).await;
    let (opts, fetch_block) = through_node(node, uri, &opts);
    Ok(content::fetch_to_writer(uri, &opts, fetch_block, writer, on_progress).await?)
}

/// Fetch the file named by `uri` through the node at `node` into `path`,
/// through `FILE.veil-part`, resuming from what an interrupted run left
/// there (see [`content::fetch_to_path`]).
pub async fn get_to_path(
    node: &Endpoint,
    uri: &Chk,
    opts: &FetchOptions,
    path: &std::path::Path,
    on_progress: impl FnMut(Progress),
) -> Result<content::Fetched, TransferError> {
    let opts = window_for(node, opts).await;
    let (opts, fetch_block) = through_node(node, uri, &opts);
    Ok(content::fetch_to_path(uri, &opts, fetch_block, path, on_progress).await?)
}

/// Where the window starts: through a node in the tunnel mode, full. Its
/// tunnel's exit keeps the flow control, and keys the client asks for one
/// by one as blocks arrive would be reactions, each waiting the
/// originator's random delay (`docs/protocol.md`, "Sending: reactions
/// wait, once"). A node that does not answer the status request keeps the
/// default.
async fn window_for(node: &Endpoint, opts: &FetchOptions) -> FetchOptions {
    let mut opts = *opts;
    if opts.initial_window.is_none() {
        if let Ok(mut c) = Client::connect(node, BLOCK_TIMEOUT).await {
            if c.status().await.is_ok_and(|s| s.tunnels) {
                opts.initial_window = Some(opts.concurrency);
            }
        }
    }
    opts
}

/// The options and block fetcher of a get through the node at `node`.
fn through_node(
    node: &Endpoint,
    uri: &Chk,
    opts: &FetchOptions,
) -> (
    FetchOptions,
    impl Fn(RoutingKey) -> BlockFuture + Clone + Send + Sync + 'static,
) {
    // Unless told otherwise, the order blocks are asked for is random per
    // file and node but the same each time: a second get through the same
    // node asks for the same blocks, which its client cache holds, while
    // other nodes spread over other check blocks.
    let mut opts = *opts;
    if opts.seed.is_none() {
        let digest = Sha256::new()
            .chain_update(uri.routing.0)
            .chain_update(node.to_string())
            .finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        opts.seed = Some(u64::from_le_bytes(seed));
    }
    let pool = Pool::new(node);
    let fetch_block = move |key| -> BlockFuture {
        let pool = pool.clone();
        Box::pin(async move { pool.get(key).await })
    };
    (opts, fetch_block)
}

type BlockFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Block, ClientError>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_that_could_not_be_fetched_has_the_kind_of_its_cause() {
        let missing = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: Box::new(ClientError::Network(Failure::DataNotFound)),
        });
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let down = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: Box::new(ClientError::Closed),
        });
        assert_eq!(down.kind(), ErrorKind::NodeDown);
        let other = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: "not a client error".into(),
        });
        assert_eq!(other.kind(), ErrorKind::Local);
        let bad = TransferError::Content(ContentError::HashMismatch);
        assert_eq!(bad.kind(), ErrorKind::BadData);
        assert!(bad.kind().peer_at_fault());
        let client = TransferError::Client(ClientError::Network(Failure::NoPeers));
        assert_eq!(client.kind(), ErrorKind::NoPeers);
    }
}
