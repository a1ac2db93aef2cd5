//! Splitting a file into data blocks, check blocks and a tree of manifests.

use sha2::{Digest, Sha256};

use super::layout::{DEFAULT_REDUNDANCY, MAX_SEGMENT};
use super::manifest::{encode_manifest, MANIFEST_VERSION_V1, MAX_FANOUT_V1};
use super::stream::{seal, SealedManifest, Splitter, TreeBuilder};
use super::{ContentError, ManifestEntry, MAX_FANOUT, MAX_FILE_LEN};
use crate::keys::{Block, BlockKind, Chk, RoutingKey, BLOCK_DATA_LEN};

/// A file cut into blocks, ready to insert.
#[derive(Debug)]
pub struct SplitFile {
    /// The one URI that names the whole file.
    pub uri: Chk,
    /// Every block to insert, each once: data blocks in file order, then
    /// manifests bottom-up, the root manifest (if any) last.
    pub blocks: Vec<Block>,
}

/// How [`split_with`] builds a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitOptions {
    /// Check blocks per 100 data blocks, `0..=MAX_REDUNDANCY`.
    pub redundancy: u16,
    /// Most data blocks per segment, `1..=MAX_SEGMENT`.
    pub segment: u8,
    /// Most entries per manifest, `2..=MAX_FANOUT`.
    pub fanout: usize,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            redundancy: DEFAULT_REDUNDANCY,
            segment: MAX_SEGMENT,
            fanout: MAX_FANOUT,
        }
    }
}

/// Split a file into blocks with the defaults: 100% redundancy in segments
/// of 128 data blocks, manifests of [`MAX_FANOUT`] entries.
pub fn split(data: &[u8]) -> Result<SplitFile, ContentError> {
    split_with(data, &SplitOptions::default())
}

/// Split a file into data blocks, Reed-Solomon check blocks and a tree of
/// version-2 manifests. A file of at most one block is that block alone,
/// with no check blocks. Small fan-outs and segments build deep trees and
/// many segments from little data, which is what tests want.
/// Deterministic: the same data and options always give the same URI, the
/// same one [`Splitter`] gives when the file is streamed.
pub fn split_with(data: &[u8], opts: &SplitOptions) -> Result<SplitFile, ContentError> {
    let mut splitter = Splitter::new(data, data.len() as u64, opts)?;
    let mut out = BlockList::default();
    let mut manifests = Vec::new();
    while let Some(seg) = splitter.next_segment()? {
        seg.leaves.into_iter().for_each(|b| out.push(b));
        manifests.extend(seg.manifests);
    }
    let end = splitter.finish()?;
    manifests.extend(end.manifests);
    out.manifests(manifests);
    out.push(end.root);
    Ok(SplitFile {
        uri: end.uri,
        blocks: out.blocks,
    })
}

/// A file of at most one block is that block alone; a file over the limit
/// is refused. `None`: a splitfile it is.
fn one_block(data: &[u8]) -> Result<Option<SplitFile>, ContentError> {
    let len = data.len() as u64;
    if len > MAX_FILE_LEN {
        return Err(ContentError::TooLarge {
            len,
            max: MAX_FILE_LEN,
        });
    }
    if data.len() > BLOCK_DATA_LEN {
        return Ok(None);
    }
    let (uri, block) = seal(BlockKind::Data, data)?;
    Ok(Some(SplitFile {
        uri,
        blocks: vec![block],
    }))
}

/// The Reed-Solomon check blocks over one segment's data blocks, each
/// zero-padded to a full block.
pub(super) fn check_shards(group: &[&[u8]], check: usize) -> Result<Vec<Vec<u8>>, ContentError> {
    if check == 0 {
        return Ok(Vec::new());
    }
    let padded = group.iter().map(|piece| {
        let mut shard = vec![0u8; BLOCK_DATA_LEN];
        shard[..piece.len()].copy_from_slice(piece);
        shard
    });
    reed_solomon_simd::encode(group.len(), check, padded).map_err(ContentError::Fec)
}

/// The old encoder (manifest version 1, no check blocks), kept so tests can
/// prove that files inserted before version 2 still fetch. Not for new files.
#[doc(hidden)]
pub fn split_v1(data: &[u8], fanout: usize) -> Result<SplitFile, ContentError> {
    if !(2..=MAX_FANOUT_V1).contains(&fanout) {
        return Err(ContentError::BadFanout(fanout));
    }
    if let Some(small) = one_block(data)? {
        return Ok(small);
    }
    let mut out = BlockList::default();
    let mut tree = TreeBuilder::new(fanout, MANIFEST_VERSION_V1, 0);
    let mut manifests = Vec::new();
    for piece in data.chunks(BLOCK_DATA_LEN) {
        let (chk, block) = seal(BlockKind::Data, piece)?;
        out.push(block);
        let length = piece.len() as u64;
        tree.push_leaf(ManifestEntry { chk, length }, &mut manifests)?;
    }
    let root = tree.finish(Sha256::digest(data).into(), None, &mut manifests)?;
    out.manifests(manifests);
    let (uri, block) = seal(BlockKind::Manifest, &encode_manifest(&root))?;
    out.push(block);
    Ok(SplitFile {
        uri,
        blocks: out.blocks,
    })
}

/// Blocks in insertion order, each once.
#[derive(Default)]
struct BlockList {
    seen: std::collections::HashSet<RoutingKey>,
    blocks: Vec<Block>,
}

impl BlockList {
    fn push(&mut self, block: Block) {
        if self.seen.insert(block.routing_key()) {
            self.blocks.push(block);
        }
    }

    /// Manifests bottom-up: every depth-0 manifest, then depth 1, ...
    fn manifests(&mut self, mut manifests: Vec<SealedManifest>) {
        manifests.sort_by_key(|(depth, _)| *depth);
        manifests.into_iter().for_each(|(_, b)| self.push(b));
    }
}
