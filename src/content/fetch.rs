//! Fetching a file back: the root, then the manifest tree a level at a time,
//! then the data blocks, each level in file order with bounded concurrency.

use std::collections::BTreeMap;
use std::future::Future;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{decode_manifest, ContentError, ManifestEntry, ManifestError, MAX_FILE_LEN};
use crate::keys::{Block, BlockKind, Chk, KeyError, RoutingKey};

/// How far past the next block to hand back a fetch may run, as a multiple
/// of its concurrency: bounds the reorder buffer to this many blocks.
const WINDOW_FACTOR: usize = 4;

/// What a block fetcher may fail with: any error (or a plain message),
/// kept whole as the [`ContentError::BlockUnavailable`] source so callers
/// can inspect it.
pub type FetchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Progress of a fetch, reported after the root and after every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Blocks fetched and verified so far.
    pub blocks_done: u64,
    /// Blocks known to be needed so far; grows as manifests are opened.
    pub blocks_known: u64,
    /// File bytes written so far.
    pub bytes_done: u64,
    /// The file's length (known once the root block is open).
    pub bytes_total: u64,
}

/// Options for [`fetch_to_writer`].
#[derive(Clone, Copy, Debug)]
pub struct FetchOptions {
    /// Most blocks in flight at once (0 is treated as 1).
    pub concurrency: usize,
    /// Refuse files longer than this (at most [`MAX_FILE_LEN`] is accepted
    /// regardless).
    pub max_len: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 8,
            max_len: MAX_FILE_LEN,
        }
    }
}

/// Fetch, verify and reassemble the file named by `uri`, with at most
/// `concurrency` calls to `fetch_block` in flight at once.
pub async fn fetch<F, Fut, E>(
    uri: &Chk,
    concurrency: usize,
    fetch_block: F,
) -> Result<Vec<u8>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    fetch_with_progress(uri, concurrency, fetch_block, |_| {}).await
}

/// [`fetch`], calling `on_progress` after the root and after every block.
pub async fn fetch_with_progress<F, Fut, E>(
    uri: &Chk,
    concurrency: usize,
    fetch_block: F,
    on_progress: impl FnMut(Progress),
) -> Result<Vec<u8>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let opts = FetchOptions {
        concurrency,
        max_len: MAX_FILE_LEN,
    };
    let mut out = Vec::new();
    fetch_to_writer(uri, &opts, fetch_block, &mut out, on_progress).await?;
    Ok(out)
}

/// Fetch the file named by `uri` and write it, in order, to `writer`.
/// Returns the file's length.
///
/// The file is written as it arrives, before its whole-file SHA-256 can be
/// checked: on any error, discard what was written. Memory stays bounded by
/// the manifests (about 72 bytes per 32 KiB of file) plus a window of
/// `4 * concurrency` blocks, whatever the file's size.
pub async fn fetch_to_writer<F, Fut, E, W>(
    uri: &Chk,
    opts: &FetchOptions,
    fetch_block: F,
    writer: &mut W,
    mut on_progress: impl FnMut(Progress),
) -> Result<u64, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let concurrency = opts.concurrency.max(1);
    let max_len = opts.max_len.min(MAX_FILE_LEN);
    let mut progress = Progress {
        blocks_done: 0,
        blocks_known: 1,
        bytes_done: 0,
        bytes_total: 0,
    };

    let root_block = fetch_block(uri.routing)
        .await
        .map_err(|e| unavailable(&uri.routing, e))?;
    let (kind, root_data) = uri
        .decode_any(&root_block)
        .map_err(|e| bad_block(&uri.routing, e))?;
    progress.blocks_done = 1;

    if kind == BlockKind::Data {
        let len = root_data.len() as u64;
        if len > max_len {
            return Err(ContentError::TooLarge { len, max: max_len });
        }
        writer.write_all(&root_data).await?;
        writer.flush().await?;
        progress.bytes_done = len;
        progress.bytes_total = len;
        on_progress(progress);
        return Ok(len);
    }

    let root = decode_manifest(&root_data)?;
    let Some(expected_hash) = root.sha256 else {
        return Err(ManifestError::RootWithoutHash.into());
    };
    if root.length > max_len {
        return Err(ContentError::TooLarge {
            len: root.length,
            max: max_len,
        });
    }
    progress.bytes_total = root.length;
    progress.blocks_known += root.entries.len() as u64;
    on_progress(progress);

    // Walk down the tree a level at a time; each level's entries stay in
    // file order.
    let mut level = root.entries;
    let mut depth = root.depth;
    while depth > 0 {
        let child_depth = depth - 1;
        let mut next = Vec::new();
        let mut fetcher = Ordered::new(
            &level,
            BlockKind::Manifest,
            concurrency,
            fetch_block.clone(),
        );
        let mut index = 0;
        while let Some(bytes) = fetcher.next().await? {
            let entry = &level[index];
            index += 1;
            let child = decode_manifest(&bytes)?;
            if child.depth != child_depth {
                return Err(ManifestError::ChildDepth {
                    key: entry.chk.routing.to_base64(),
                    found: child.depth,
                    expected: child_depth,
                }
                .into());
            }
            if child.sha256.is_some() {
                return Err(ManifestError::ChildWithHash {
                    key: entry.chk.routing.to_base64(),
                }
                .into());
            }
            if child.length != entry.length {
                return Err(ContentError::LengthMismatch {
                    expected: entry.length,
                    actual: child.length,
                });
            }
            progress.blocks_done += 1;
            progress.blocks_known += child.entries.len() as u64;
            on_progress(progress);
            next.extend(child.entries);
        }
        level = next;
        depth = child_depth;
    }

    let mut hasher = Sha256::new();
    let mut fetcher = Ordered::new(&level, BlockKind::Data, concurrency, fetch_block);
    while let Some(bytes) = fetcher.next().await? {
        hasher.update(&bytes);
        writer.write_all(&bytes).await?;
        progress.blocks_done += 1;
        progress.bytes_done += bytes.len() as u64;
        on_progress(progress);
    }
    writer.flush().await?;

    if progress.bytes_done != root.length {
        return Err(ContentError::LengthMismatch {
            expected: root.length,
            actual: progress.bytes_done,
        });
    }
    let actual_hash: [u8; 32] = hasher.finalize().into();
    if actual_hash != expected_hash {
        return Err(ContentError::HashMismatch);
    }
    Ok(root.length)
}

fn unavailable(key: &RoutingKey, source: impl Into<FetchError>) -> ContentError {
    ContentError::BlockUnavailable {
        key: key.to_base64(),
        source: source.into(),
    }
}

fn bad_block(key: &RoutingKey, source: KeyError) -> ContentError {
    ContentError::BadBlock {
        key: key.to_base64(),
        source,
    }
}

/// Fetch one block, verify and open it, and check its kind and (for data)
/// its length against what the parent says.
async fn fetch_one<F, Fut, E>(
    fetch_block: F,
    chk: Chk,
    expected_kind: BlockKind,
    expected_len: u64,
) -> Result<Vec<u8>, ContentError>
where
    F: Fn(RoutingKey) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
    E: Into<FetchError>,
{
    let key = chk.routing;
    let block = fetch_block(key).await.map_err(|e| unavailable(&key, e))?;
    let (kind, data) = chk.decode_any(&block).map_err(|e| bad_block(&key, e))?;
    if kind != expected_kind {
        return Err(ContentError::WrongKind {
            key: key.to_base64(),
            expected: expected_kind,
            found: kind,
        });
    }
    if expected_kind == BlockKind::Data && data.len() as u64 != expected_len {
        return Err(ContentError::LengthMismatch {
            expected: expected_len,
            actual: data.len() as u64,
        });
    }
    Ok(data)
}

type TaskResult = (usize, Result<Vec<u8>, ContentError>);

/// Fetches a list of blocks with at most `concurrency` in flight, handing
/// them back in list order. Runs at most `WINDOW_FACTOR * concurrency` ahead
/// of the next block to hand back, so the reorder buffer stays bounded.
/// Dropping it aborts whatever is still in flight.
struct Ordered<'a, F> {
    items: &'a [ManifestEntry],
    kind: BlockKind,
    concurrency: usize,
    window: usize,
    fetch_block: F,
    tasks: JoinSet<TaskResult>,
    ready: BTreeMap<usize, Vec<u8>>,
    next_spawn: usize,
    next_out: usize,
}

impl<'a, F, Fut, E> Ordered<'a, F>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    fn new(
        items: &'a [ManifestEntry],
        kind: BlockKind,
        concurrency: usize,
        fetch_block: F,
    ) -> Self {
        Ordered {
            items,
            kind,
            concurrency,
            window: concurrency.saturating_mul(WINDOW_FACTOR),
            fetch_block,
            tasks: JoinSet::new(),
            ready: BTreeMap::new(),
            next_spawn: 0,
            next_out: 0,
        }
    }

    /// The next block's plaintext in list order, or `None` when all are done.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ContentError> {
        loop {
            if self.next_out == self.items.len() {
                return Ok(None);
            }
            if let Some(data) = self.ready.remove(&self.next_out) {
                self.next_out += 1;
                return Ok(Some(data));
            }
            while self.tasks.len() < self.concurrency
                && self.next_spawn < self.items.len()
                && self.next_spawn < self.next_out + self.window
            {
                let i = self.next_spawn;
                let entry = &self.items[i];
                let job = fetch_one(
                    self.fetch_block.clone(),
                    entry.chk.clone(),
                    self.kind,
                    entry.length,
                );
                self.tasks.spawn(async move { (i, job.await) });
                self.next_spawn += 1;
            }
            match self.tasks.join_next().await {
                Some(Ok((i, result))) => {
                    self.ready.insert(i, result?);
                }
                Some(Err(e)) => return Err(ContentError::TaskFailed(e)),
                // Unreachable: the block at next_out is always spawned
                // before we wait (next_out < next_spawn or the loop above
                // just spawned it).
                None => return Err(ContentError::Stalled),
            }
        }
    }
}
