//! One block with bounded retries, one segment's plan, and the
//! Reed-Solomon decoding of the data blocks a segment did not get
//! (`pipeline.rs` asks for the blocks).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{ContentError, ManifestEntry};
use crate::keys::{Block, BlockKind, Chk, KeyError, RoutingKey, BLOCK_DATA_LEN};

/// What a block fetcher may fail with: any error (or a plain message),
/// kept whole as the [`ContentError::BlockUnavailable`] source so callers
/// can inspect it.
pub type FetchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Decides whether a failed block request is worth asking again.
pub type RetryIf = fn(&(dyn std::error::Error + Send + Sync + 'static)) -> bool;

/// The longest wait between two attempts at one block.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Fetches one block, asking again (a new request each time) after
/// `backoff`, `2 * backoff`, ... up to `retries` times while `retry_if`
/// says the failure is worth it. Counts its retries in `counter`.
#[derive(Clone)]
pub(super) struct Getter<F> {
    pub fetch_block: F,
    pub retries: u32,
    pub backoff: Duration,
    pub retry_if: RetryIf,
    pub counter: Arc<AtomicU64>,
}

pub(super) fn unavailable(key: &RoutingKey, source: impl Into<FetchError>) -> ContentError {
    ContentError::BlockUnavailable {
        key: key.to_base64(),
        source: source.into(),
    }
}

pub(super) fn bad_block(key: &RoutingKey, source: KeyError) -> ContentError {
    ContentError::BadBlock {
        key: key.to_base64(),
        source,
    }
}

impl<F, Fut, E> Getter<F>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    /// Count a retry and wait before it: `backoff * 2^attempt`, at most
    /// [`MAX_BACKOFF`].
    pub async fn pause(&self, attempt: u32) {
        self.counter.fetch_add(1, Ordering::Relaxed);
        let wait = self
            .backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        tokio::time::sleep(wait).await;
    }

    /// The block under `key`, unverified.
    pub async fn raw(&self, key: RoutingKey) -> Result<Block, ContentError> {
        let mut attempt: u32 = 0;
        loop {
            let err: FetchError = match (self.fetch_block)(key).await {
                Ok(block) => return Ok(block),
                Err(e) => e.into(),
            };
            if attempt >= self.retries || !(self.retry_if)(err.as_ref()) {
                return Err(unavailable(&key, err));
            }
            self.pause(attempt).await;
            attempt += 1;
        }
    }

    /// Fetch one block, verify and open it, and check its kind and (for
    /// data) its length against what the parent says.
    pub async fn open(
        &self,
        chk: Chk,
        expected_kind: BlockKind,
        expected_len: u64,
    ) -> Result<Vec<u8>, ContentError> {
        let key = chk.routing;
        let block = self.raw(key).await?;
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
}

/// A leaf's identity: both halves of its CHK (the same routing key under
/// another decryption key is another leaf).
pub(super) type LeafKey = (RoutingKey, [u8; 32]);

pub(super) fn leaf_key(chk: &Chk) -> LeafKey {
    (chk.routing, *chk.decryption.as_bytes())
}

/// The last few blocks opened, so a key repeated across segments (a file
/// of zeros, a crafted manifest) is fetched once. Bounded: [`Self::CAP`]
/// blocks.
#[derive(Default)]
pub(super) struct RecentBlocks {
    order: VecDeque<LeafKey>,
    blocks: HashMap<LeafKey, Arc<Vec<u8>>>,
}

impl RecentBlocks {
    const CAP: usize = 64;

    pub(super) fn get(&self, key: &LeafKey) -> Option<Arc<Vec<u8>>> {
        self.blocks.get(key).cloned()
    }

    pub(super) fn put(&mut self, key: LeafKey, data: Arc<Vec<u8>>) {
        if self.blocks.insert(key, data).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > Self::CAP {
            if let Some(old) = self.order.pop_front() {
                self.blocks.remove(&old);
            }
        }
    }
}

/// One segment to fetch.
pub(super) struct Plan<'a> {
    /// 1-based, for messages.
    pub number: u64,
    pub of: u64,
    /// The segment's leaves: `data` data blocks, then check blocks.
    pub leaves: &'a [ManifestEntry],
    pub data: usize,
}

/// The segment's data blocks from the shards that came: as they are when
/// every data block came, else Reed-Solomon decoded and each rebuilt block
/// checked against its CHK. A data block that came is handed on as it is
/// (shared with the recent-blocks cache), never copied; only a short one
/// (a file's last) is padded for the decoder.
pub(super) async fn rebuild(
    plan: Plan<'_>,
    shards: Vec<Option<Arc<Vec<u8>>>>,
) -> Result<Vec<Arc<Vec<u8>>>, ContentError> {
    let k = plan.data;
    let m = plan.leaves.len() - k;
    if shards[..k].iter().all(Option::is_some) {
        return Ok(shards.into_iter().take(k).flatten().collect());
    }
    let leaves: Vec<ManifestEntry> = plan.leaves[..k].to_vec();
    let segment = plan.number;
    let job = move || -> Result<Vec<Arc<Vec<u8>>>, ContentError> {
        let originals: Vec<(usize, Cow<'_, [u8]>)> = shards[..k]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|d| (i, pad(d))))
            .collect();
        let recovery = shards[k..]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|d| (i, d.as_slice())));
        let mut restored =
            reed_solomon_simd::decode(k, m, originals, recovery).map_err(ContentError::Fec)?;
        let mut out = Vec::with_capacity(k);
        for (i, shard) in shards.into_iter().take(k).enumerate() {
            if let Some(data) = shard {
                out.push(data);
                continue;
            }
            let leaf = &leaves[i];
            let bad = || ContentError::BadRecovery {
                segment,
                key: leaf.chk.routing.to_base64(),
            };
            let mut piece = restored.remove(&i).ok_or_else(bad)?;
            piece.truncate(leaf.length as usize);
            let (chk, _) = Chk::encode_kind(BlockKind::Data, &piece).map_err(|_| bad())?;
            if chk.routing != leaf.chk.routing {
                return Err(bad());
            }
            out.push(Arc::new(piece));
        }
        Ok(out)
    };
    tokio::task::spawn_blocking(job)
        .await
        .map_err(ContentError::TaskFailed)?
}

/// A data block as a Reed-Solomon shard of [`BLOCK_DATA_LEN`] bytes:
/// itself when it is full (every block but a file's last), else a padded
/// copy.
fn pad(data: &[u8]) -> Cow<'_, [u8]> {
    if data.len() == BLOCK_DATA_LEN {
        return Cow::Borrowed(data);
    }
    let mut shard = vec![0u8; BLOCK_DATA_LEN];
    shard[..data.len()].copy_from_slice(data);
    Cow::Owned(shard)
}
