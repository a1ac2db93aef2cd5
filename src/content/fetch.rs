//! Fetching a file back: the root, then the manifest tree a level at a time
//! (each distinct manifest once), then the leaves segment by segment
//! (`pipeline.rs`), written in order.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::copies::{fetch_top, TOP_COPIES};
use super::layout::Layout;
use super::pipeline::Segments;
use super::segment::{bad_block, Getter, Plan};
pub use super::segment::{FetchError, RetryIf};
use super::tree::walk_tree;
use super::window::Window;
use super::{decode_manifest, ContentError, ManifestEntry, ManifestError, MAX_FILE_LEN};
use crate::keys::{Block, BlockKind, Chk, RoutingKey, BLOCK_DATA_LEN};

/// The top block and the manifests get this many times the retries of
/// a leaf ([`FetchOptions::retries`]).
pub const TOP_RETRY_FACTOR: u32 = 2;

/// Segments of a version-1 file (no check blocks): runs of this many data
/// blocks, all of which are needed.
const V1_SEGMENT: usize = 128;

/// The largest file [`fetch`] and `veil get` accept unless told otherwise:
/// 4 GiB. A root may declare up to [`MAX_FILE_LEN`]; this refuses such a
/// claim before anything is fetched or allocated for it.
pub const DEFAULT_MAX_LEN: u64 = 4 << 30;

/// Progress of a fetch, reported after the root and after every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Blocks fetched and verified so far.
    pub blocks_done: u64,
    /// Blocks known to be needed so far: grows as manifests are opened,
    /// then counts `k` for each segment.
    pub blocks_known: u64,
    /// Segments written so far.
    pub segments_done: u64,
    /// Segments in the file (known once every manifest is open).
    pub segments_total: u64,
    /// Of `segments_done`, those found already written in a partial file
    /// and verified there (not fetched).
    pub segments_resumed: u64,
    /// Block requests asked again after a failure.
    pub retries: u64,
    /// File bytes written so far.
    pub bytes_done: u64,
    /// The file's length (known once the root block is open).
    pub bytes_total: u64,
}

/// Options for [`fetch_to_writer`].
#[derive(Clone, Copy, Debug)]
pub struct FetchOptions {
    /// Most blocks in flight at once (0 is treated as 1). A file's data
    /// blocks are asked for through a window that starts at 32 (or this, if
    /// lower), grows while blocks keep coming and halves when requests fail
    /// and are retried ([`Window`]); this bounds it.
    pub concurrency: usize,
    /// Refuse files longer than this, as soon as the root says so (at most
    /// [`MAX_FILE_LEN`] is accepted regardless).
    pub max_len: u64,
    /// How many times a failed block request is asked again (the top
    /// block and manifests: [`TOP_RETRY_FACTOR`] times as many).
    pub retries: u32,
    /// The wait before the first retry; each further one waits twice as long.
    pub backoff: Duration,
    /// Which failures are worth a retry (all of them by default).
    pub retry_if: RetryIf,
    /// Seeds the order blocks are asked for in; `None` draws a seed.
    pub seed: Option<u64>,
    /// Copies of the top block to look for when it fails
    /// ([`TOP_COPIES`] by default; 0: the block alone, with its retries).
    pub top_copies: u8,
    /// Where the window starts (`None`: [`INITIAL_WINDOW`]); through a
    /// tunnel the whole window, since the exit keeps the flow control.
    pub initial_window: Option<usize>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 8,
            max_len: DEFAULT_MAX_LEN,
            retries: 2,
            backoff: Duration::from_millis(250),
            retry_if: |_| true,
            seed: None,
            top_copies: TOP_COPIES,
            initial_window: None,
        }
    }
}

/// Fetch, verify and reassemble the file named by `uri`, with at most
/// `concurrency` calls to `fetch_block` in flight at once and the other
/// [`FetchOptions`] at their defaults.
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
        ..FetchOptions::default()
    };
    let mut out = Vec::new();
    fetch_to_writer(uri, &opts, fetch_block, &mut out, on_progress).await?;
    Ok(out)
}

/// Fetch the file named by `uri` and write it, in order, to `writer`.
/// Returns the file's length.
///
/// The file is written a segment at a time, before its whole-file SHA-256
/// can be checked: on any error, discard what was written. Memory stays
/// bounded by the manifests (about 100 bytes per 32 KiB block) plus two
/// segments (the one being completed and the next, at most 128 blocks
/// each, and `concurrency` more in flight),
/// whatever the file's size.
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
    let opened = open(uri, opts, fetch_block, &mut on_progress).await?;
    opened.write_rest(writer, on_progress, |_, _| Ok(())).await
}

/// A file whose root (and manifest tree) is open: what remains is its
/// segments, written in order by [`Opened::write_rest`], maybe after
/// [`Opened::verify_prefix`] has accepted some already on disk.
pub struct Opened<F> {
    getter: Getter<F>,
    counter: Arc<AtomicU64>,
    /// Blocks in flight: adapts to the path, at most the options'
    /// `concurrency` (see `window.rs`).
    window: Window,
    progress: Progress,
    rng: rand::rngs::StdRng,
    hasher: Sha256,
    body: Body,
}

enum Body {
    /// A file of one block: its bytes.
    Small(Vec<u8>),
    /// A splitfile: its leaves, its segments as (first leaf, data, check),
    /// the hash its root records, and the next segment to fetch.
    Tree {
        leaves: Vec<ManifestEntry>,
        segments: Vec<(usize, usize, usize)>,
        expected_hash: [u8; 32],
        next: usize,
    },
}

/// Fetch the root and the whole manifest tree of the file named by `uri`,
/// checking every claim before it is allocated for (see [`fetch_to_writer`]).
pub async fn open<F, Fut, E>(
    uri: &Chk,
    opts: &FetchOptions,
    fetch_block: F,
    on_progress: &mut impl FnMut(Progress),
) -> Result<Opened<F>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let concurrency = opts.concurrency.max(1);
    let max_len = opts.max_len.min(MAX_FILE_LEN);
    let counter = Arc::new(AtomicU64::new(0));
    let getter = Getter {
        fetch_block,
        retries: opts.retries,
        backoff: opts.backoff,
        retry_if: opts.retry_if,
        counter: counter.clone(),
    };
    let mut progress = Progress {
        blocks_done: 0,
        blocks_known: 1,
        segments_done: 0,
        segments_total: 0,
        segments_resumed: 0,
        retries: 0,
        bytes_done: 0,
        bytes_total: 0,
    };
    let rng = match opts.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let opened = |progress, body| Opened {
        getter: getter.clone(),
        counter: counter.clone(),
        window: Window::starting_at(
            opts.initial_window.unwrap_or(super::window::INITIAL_WINDOW),
            concurrency,
        ),
        progress,
        rng,
        hasher: Sha256::new(),
        body,
    };

    // The top block and the manifests have no check blocks to fall back
    // on: they are asked again twice as often (the node starts each repeat
    // on another first hop), and the top block also has copies elsewhere.
    let top = Getter {
        retries: getter.retries.saturating_mul(TOP_RETRY_FACTOR),
        ..getter.clone()
    };
    let root_block = fetch_top(&top, uri, opts.top_copies).await?;
    let (kind, root_data) = uri
        .decode_any(&root_block)
        .map_err(|e| bad_block(&uri.routing, e))?;
    progress.blocks_done = 1;
    progress.retries = counter.load(Ordering::Relaxed);

    if kind == BlockKind::Data {
        let len = root_data.len() as u64;
        if len > max_len {
            return Err(ContentError::TooLarge { len, max: max_len });
        }
        progress.bytes_total = len;
        return Ok(opened(progress, Body::Small(root_data)));
    }

    let root = decode_manifest(&root_data)?;
    let Some(expected_hash) = root.sha256 else {
        return Err(ManifestError::RootWithoutHash.into());
    };
    let layout = root.fec.map(Layout::new);
    let file_length = layout.map_or(root.length, |l| l.fec().file_length);
    // Checked before anything else is fetched or allocated: the claim
    // itself, then (below) every level against the leaves it can have.
    if file_length > max_len {
        return Err(ContentError::TooLarge {
            len: file_length,
            max: max_len,
        });
    }
    // Version 1 trees list full blocks but the last; version 2 exactly
    // the layout's leaves.
    let max_leaves = layout.map_or(file_length.div_ceil(BLOCK_DATA_LEN as u64), |l| l.leaves());
    progress.bytes_total = file_length;
    progress.blocks_known += root.entries.len() as u64;
    on_progress(progress);

    let leaves = walk_tree(&top, root, concurrency, max_leaves, file_length, &mut |n| {
        progress.blocks_done += 1;
        progress.blocks_known += n;
        progress.retries = counter.load(Ordering::Relaxed);
        on_progress(progress);
    })
    .await?;

    let segments = segments_of(layout, &leaves, file_length)?;
    progress.segments_total = segments.len() as u64;
    progress.blocks_known = progress.blocks_done + segments.iter().map(|s| s.1 as u64).sum::<u64>();
    on_progress(progress);
    let body = Body::Tree {
        leaves,
        segments,
        expected_hash,
        next: 0,
    };
    Ok(opened(progress, body))
}

/// The segments as (first leaf, data, check): version 2 from the layout
/// (every leaf's length checked against it), version 1 as runs of data
/// blocks with no check blocks.
fn segments_of(
    layout: Option<Layout>,
    leaves: &[ManifestEntry],
    file_length: u64,
) -> Result<Vec<(usize, usize, usize)>, ContentError> {
    let Some(l) = layout else {
        return Ok((0..leaves.len())
            .step_by(V1_SEGMENT)
            .map(|first| (first, V1_SEGMENT.min(leaves.len() - first), 0))
            .collect());
    };
    if leaves.len() as u64 != l.leaves() {
        return Err(ManifestError::TooManyBlocks {
            max: l.leaves(),
            file_length,
        }
        .into());
    }
    let mut out = Vec::with_capacity(l.segments() as usize);
    for seg in l.iter() {
        let first = seg.first_leaf as usize;
        for j in 0..seg.data + seg.check {
            let expected = if j < seg.data {
                l.data_len(seg.first_data + j as u64)
            } else {
                BLOCK_DATA_LEN as u64
            };
            let length = leaves[first + j].length;
            if length != expected {
                return Err(ManifestError::LeafLength {
                    index: (first + j) as u64,
                    length,
                    expected,
                }
                .into());
            }
        }
        out.push((first, seg.data, seg.check));
    }
    Ok(out)
}

impl<F, Fut, E> Opened<F>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    /// Progress so far: the root and manifests, and any segments
    /// [`Self::verify_prefix`] accepted.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Accept what a partial file already holds: read up to `max_segments`
    /// whole segments from `prefix`, in order, checking every data block
    /// against the CHK its manifest lists (its plaintext hash, the CHK's
    /// decryption key: [`Chk::made_from`]). Stops at the
    /// first segment that is short or differs. Returns the bytes that
    /// verified; the fetch then goes on after them. Nothing is fetched.
    pub async fn verify_prefix<R: AsyncRead + Unpin>(
        &mut self,
        prefix: &mut R,
        max_segments: u64,
    ) -> Result<u64, ContentError> {
        let Body::Tree {
            leaves,
            segments,
            next,
            ..
        } = &mut self.body
        else {
            return Ok(0);
        };
        let mut buf = vec![0u8; BLOCK_DATA_LEN];
        'segments: while (*next as u64) < max_segments && *next < segments.len() {
            let (first, data, _) = segments[*next];
            let mut hasher = self.hasher.clone();
            let mut bytes = 0u64;
            for leaf in &leaves[first..first + data] {
                let piece = &mut buf[..leaf.length as usize];
                if prefix.read_exact(piece).await.is_err() {
                    break 'segments;
                }
                if !leaf.chk.made_from(BlockKind::Data, piece) {
                    break 'segments;
                }
                hasher.update(&*piece);
                bytes += leaf.length;
            }
            self.hasher = hasher;
            self.progress.bytes_done += bytes;
            self.progress.segments_done += 1;
            self.progress.segments_resumed += 1;
            *next += 1;
        }
        let remaining: u64 = segments[*next..].iter().map(|s| s.1 as u64).sum();
        self.progress.blocks_known = self.progress.blocks_done + remaining;
        Ok(self.progress.bytes_done)
    }

    /// Fetch the remaining segments and write them, in order, to `writer`,
    /// then check the length and the whole-file SHA-256. `on_segment` runs
    /// after each segment is written and flushed, with the segments and
    /// bytes written so far. Returns the file's length.
    pub async fn write_rest<W: AsyncWrite + Unpin>(
        mut self,
        writer: &mut W,
        mut on_progress: impl FnMut(Progress),
        mut on_segment: impl FnMut(u64, u64) -> Result<(), ContentError>,
    ) -> Result<u64, ContentError> {
        let mut progress = self.progress;
        let (leaves, segments, expected_hash, start) = match self.body {
            Body::Small(data) => {
                writer.write_all(&data).await?;
                writer.flush().await?;
                progress.bytes_done = data.len() as u64;
                on_progress(progress);
                return Ok(data.len() as u64);
            }
            Body::Tree {
                leaves,
                segments,
                expected_hash,
                next,
            } => (leaves, segments, expected_hash, next),
        };
        let file_length = progress.bytes_total;
        let counter = self.counter.clone();
        let of = segments.len() as u64;
        let plans = (1..)
            .zip(&segments)
            .skip(start)
            .map(|(number, &(first, data, check))| Plan {
                number,
                of,
                leaves: &leaves[first..first + data + check],
                data,
            });
        let mut fetching = Segments::new(&self.getter, plans, &mut self.window, &mut self.rng);
        loop {
            let mut on_block = || {
                progress.blocks_done += 1;
                progress.retries = counter.load(Ordering::Relaxed);
                on_progress(progress);
            };
            let Some(pieces) = fetching.next(&mut on_block).await else {
                break;
            };
            for piece in pieces? {
                self.hasher.update(piece.as_slice());
                writer.write_all(&piece).await?;
                progress.bytes_done += piece.len() as u64;
            }
            writer.flush().await?;
            progress.segments_done += 1;
            on_segment(progress.segments_done, progress.bytes_done)?;
            on_progress(progress);
        }
        drop(fetching);

        if progress.bytes_done != file_length {
            return Err(ContentError::LengthMismatch {
                expected: file_length,
                actual: progress.bytes_done,
            });
        }
        let actual_hash: [u8; 32] = self.hasher.finalize().into();
        if actual_hash != expected_hash {
            return Err(ContentError::HashMismatch);
        }
        Ok(file_length)
    }
}
