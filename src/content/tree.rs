//! The manifest tree, fetched a level at a time: each distinct manifest
//! once, and in version 3 any `c` of a manifest's `c` children and `m`
//! check blocks, the missing children rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use tokio::task::JoinSet;

use super::manifest::encoded_len;
use super::segment::{leaf_key, Getter, LeafKey};
use super::{decode_manifest, ContentError, FetchError, Manifest, ManifestEntry, ManifestError};
use crate::keys::{Block, BlockKind, Chk, RoutingKey, BLOCK_DATA_LEN};

/// How far past the next manifest to hand back a fetch may run, as a
/// multiple of its concurrency: bounds the reorder buffer to this many
/// blocks.
const WINDOW_FACTOR: usize = 4;

/// A manifest's children and the check blocks over them.
type Group = (Vec<ManifestEntry>, Vec<ManifestEntry>);

/// Open the tree under `root` a level at a time, fetching each distinct
/// child manifest once, and return its leaves in order. A child that
/// cannot be fetched is rebuilt from its siblings and its parent's check
/// blocks (version 3). No level may list more than `max_leaves` entries:
/// checked before the level is built. `on_manifest` runs after each
/// manifest with the entries it added.
pub(super) async fn walk_tree<F, Fut, E>(
    getter: &Getter<F>,
    root: Manifest,
    concurrency: usize,
    max_leaves: u64,
    file_length: u64,
    on_manifest: &mut impl FnMut(u64),
) -> Result<Vec<ManifestEntry>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let too_many = || ManifestError::TooManyBlocks {
        max: max_leaves,
        file_length,
    };
    if root.entries.len() as u64 > max_leaves {
        return Err(too_many().into());
    }
    let version = root.version;
    let mut depth = root.depth;
    let mut groups: Vec<Group> = vec![(root.entries, root.checks)];
    while depth > 0 {
        let child_depth = depth - 1;
        // Each distinct child once, in first-seen order.
        let mut first_seen: HashMap<LeafKey, usize> = HashMap::new();
        let mut distinct: Vec<ManifestEntry> = Vec::new();
        for entry in groups.iter().flat_map(|g| &g.0) {
            first_seen.entry(leaf_key(&entry.chk)).or_insert_with(|| {
                distinct.push(entry.clone());
                distinct.len() - 1
            });
        }
        let index = |entry: &ManifestEntry| first_seen.get(&leaf_key(&entry.chk)).copied();
        let check =
            |entry: &ManifestEntry, bytes: &[u8]| check_child(entry, bytes, child_depth, version);
        let mut children: Vec<Option<Manifest>> = Vec::with_capacity(distinct.len());
        let mut missing: Vec<Option<ContentError>> = Vec::with_capacity(distinct.len());
        let mut fetcher = Ordered::new(&distinct, concurrency, getter.clone());
        while let Some(result) = fetcher.next().await? {
            let entry = &distinct[children.len()];
            match result {
                Ok(bytes) => {
                    let child = check(entry, &bytes)?;
                    on_manifest(child.entries.len() as u64);
                    children.push(Some(child));
                    missing.push(None);
                }
                Err(e @ ContentError::BlockUnavailable { .. }) => {
                    children.push(None);
                    missing.push(Some(e));
                }
                Err(e) => return Err(e),
            }
        }
        drop(fetcher);
        // Rebuild what did not come, a parent's group at a time.
        for (entries, checks) in &groups {
            let lost: Vec<usize> = (0..entries.len())
                .filter(|&j| index(&entries[j]).is_some_and(|i| children[i].is_none()))
                .collect();
            let Some(&first_lost) = lost.first() else {
                continue;
            };
            if checks.is_empty() {
                let i = index(&entries[first_lost]).unwrap_or(0);
                return Err(missing[i].take().unwrap_or(ContentError::Stalled));
            }
            let present: Vec<(usize, Vec<u8>)> = (0..entries.len())
                .filter_map(|j| {
                    let child = index(&entries[j]).and_then(|i| children[i].as_ref())?;
                    Some((j, pad(&super::encode_manifest(child))))
                })
                .collect();
            let Some(came) = fetch_checks(getter, checks, lost.len(), concurrency).await? else {
                // Too few: the fetch fails with why the first child did not come.
                let i = index(&entries[first_lost]).unwrap_or(0);
                return Err(missing[i].take().unwrap_or(ContentError::Stalled));
            };
            let mut restored = reed_solomon_simd::decode(
                entries.len(),
                checks.len(),
                present,
                came.iter().map(|(j, d)| (*j, d.as_slice())),
            )
            .map_err(ContentError::Fec)?;
            for j in lost {
                let entry = &entries[j];
                let Some(i) = index(entry).filter(|&i| children[i].is_none()) else {
                    continue; // a repeat, rebuilt just before
                };
                let bad = || ManifestError::BadChildRecovery {
                    key: entry.chk.routing.to_base64(),
                };
                let shard = restored.remove(&j).ok_or_else(bad)?;
                let text = &shard[..encoded_len(&shard).ok_or_else(bad)?];
                let (chk, _) = Chk::encode_kind(BlockKind::Manifest, text).map_err(|_| bad())?;
                if chk.routing != entry.chk.routing {
                    return Err(bad().into());
                }
                let child = check(entry, text)?;
                on_manifest(child.entries.len() as u64);
                children[i] = Some(child);
            }
        }
        // The next level's size, from the counts alone, before building it.
        let mut total: u64 = 0;
        let mut next: Vec<usize> = Vec::new();
        for entry in groups.iter().flat_map(|g| &g.0) {
            let i = index(entry).ok_or(ContentError::Stalled)?;
            let child = children[i].as_ref().ok_or(ContentError::Stalled)?;
            if child.length != entry.length {
                return Err(ContentError::LengthMismatch {
                    expected: entry.length,
                    actual: child.length,
                });
            }
            total += child.entries.len() as u64;
            if total > max_leaves {
                return Err(too_many().into());
            }
            next.push(i);
        }
        groups = next
            .into_iter()
            .filter_map(|i| children[i].as_ref())
            .map(|c| (c.entries.clone(), c.checks.clone()))
            .collect();
        depth = child_depth;
    }
    Ok(groups.into_iter().flat_map(|g| g.0).collect())
}

/// A block's plaintext zero-padded to a full block: a coding shard.
fn pad(data: &[u8]) -> Vec<u8> {
    let mut shard = vec![0u8; BLOCK_DATA_LEN];
    shard[..data.len().min(BLOCK_DATA_LEN)]
        .copy_from_slice(&data[..data.len().min(BLOCK_DATA_LEN)]);
    shard
}

/// Decode a child manifest and check it against what its parent says.
fn check_child(
    entry: &ManifestEntry,
    bytes: &[u8],
    depth: u8,
    version: u8,
) -> Result<Manifest, ContentError> {
    let child = decode_manifest(bytes)?;
    let key = || entry.chk.routing.to_base64();
    if child.depth != depth {
        return Err(ManifestError::ChildDepth {
            key: key(),
            found: child.depth,
            expected: depth,
        }
        .into());
    }
    if child.sha256.is_some() || child.fec.is_some() {
        return Err(ManifestError::ChildWithHash { key: key() }.into());
    }
    if child.version != version {
        return Err(ContentError::UnsupportedVersion(u64::from(child.version)));
    }
    Ok(child)
}

/// Any `need` of a group's check blocks, as (index, block), at most
/// `concurrency` asked at once and no more than are still needed; `None`
/// if fewer than `need` can be had.
async fn fetch_checks<F, Fut, E>(
    getter: &Getter<F>,
    checks: &[ManifestEntry],
    need: usize,
    concurrency: usize,
) -> Result<Option<Vec<(usize, Vec<u8>)>>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let mut tasks: JoinSet<(usize, Result<Vec<u8>, ContentError>)> = JoinSet::new();
    let mut came = Vec::with_capacity(need);
    let mut next = 0;
    loop {
        while tasks.len() < concurrency.max(1)
            && next < checks.len()
            && came.len() + tasks.len() < need
        {
            let getter = getter.clone();
            let chk = checks[next].chk.clone();
            let j = next;
            tasks.spawn(async move {
                (
                    j,
                    getter
                        .open(chk, BlockKind::Data, BLOCK_DATA_LEN as u64)
                        .await,
                )
            });
            next += 1;
        }
        if came.len() == need {
            return Ok(Some(came));
        }
        let Some(joined) = tasks.join_next().await else {
            return Ok(None);
        };
        match joined.map_err(ContentError::TaskFailed)? {
            (j, Ok(data)) => came.push((j, data)),
            (_, Err(ContentError::BlockUnavailable { .. })) => {}
            (_, Err(e)) => return Err(e),
        }
    }
}

type TaskResult = (usize, Result<Vec<u8>, ContentError>);

/// Fetches a list of manifests with at most `concurrency` in flight,
/// handing them back in list order. Runs at most `WINDOW_FACTOR *
/// concurrency` ahead of the next one to hand back, so the reorder buffer
/// stays bounded. Dropping it aborts whatever is still in flight.
struct Ordered<'a, F> {
    items: &'a [ManifestEntry],
    concurrency: usize,
    window: usize,
    getter: Getter<F>,
    tasks: JoinSet<TaskResult>,
    ready: BTreeMap<usize, Result<Vec<u8>, ContentError>>,
    next_spawn: usize,
    next_out: usize,
}

impl<'a, F, Fut, E> Ordered<'a, F>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    fn new(items: &'a [ManifestEntry], concurrency: usize, getter: Getter<F>) -> Self {
        Ordered {
            items,
            concurrency,
            window: concurrency.saturating_mul(WINDOW_FACTOR),
            getter,
            tasks: JoinSet::new(),
            ready: BTreeMap::new(),
            next_spawn: 0,
            next_out: 0,
        }
    }

    /// The next manifest's plaintext (or why it could not be had) in list
    /// order, or `None` when all are done.
    async fn next(&mut self) -> Result<Option<Result<Vec<u8>, ContentError>>, ContentError> {
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
                let getter = self.getter.clone();
                let (chk, len) = (entry.chk.clone(), entry.length);
                self.tasks
                    .spawn(async move { (i, getter.open(chk, BlockKind::Manifest, len).await) });
                self.next_spawn += 1;
            }
            match self.tasks.join_next().await {
                Some(Ok((i, result))) => {
                    self.ready.insert(i, result);
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
