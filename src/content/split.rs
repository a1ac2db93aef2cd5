//! Splitting a file into data blocks, check blocks and a tree of manifests.

use sha2::{Digest, Sha256};

use super::layout::{Fec, Layout, DEFAULT_REDUNDANCY, MAX_SEGMENT};
use super::manifest::{
    encode_manifest, entry_capacity, MANIFEST_VERSION, MANIFEST_VERSION_V1, MAX_FANOUT_V1,
};
use super::{ContentError, Manifest, ManifestEntry, MAX_DEPTH, MAX_FANOUT, MAX_FILE_LEN};
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
/// Deterministic: the same data and options always give the same URI.
pub fn split_with(data: &[u8], opts: &SplitOptions) -> Result<SplitFile, ContentError> {
    if !(2..=MAX_FANOUT).contains(&opts.fanout) {
        return Err(ContentError::BadFanout(opts.fanout));
    }
    let bad = |_| ContentError::BadOptions {
        segment: opts.segment,
        redundancy: opts.redundancy,
    };
    // Options are checked even for a file that will not use them.
    Fec::checked(1, u64::from(opts.segment), u64::from(opts.redundancy)).map_err(bad)?;
    if let Some(small) = one_block(data)? {
        return Ok(small);
    }
    let fec = Fec::checked(
        data.len() as u64,
        u64::from(opts.segment),
        u64::from(opts.redundancy),
    )
    .map_err(bad)?;
    let mut out = BlockList::default();
    let layout = Layout::new(fec);
    let mut leaves: Vec<ManifestEntry> = Vec::with_capacity(layout.leaves() as usize);
    let mut pieces = data.chunks(BLOCK_DATA_LEN);
    for seg in layout.iter() {
        let group: Vec<&[u8]> = pieces.by_ref().take(seg.data).collect();
        for piece in &group {
            out.leaf(&mut leaves, piece)?;
        }
        for shard in check_shards(&group, seg.check)? {
            out.leaf(&mut leaves, &shard)?;
        }
    }
    let root = build_tree(
        leaves,
        opts.fanout,
        MANIFEST_VERSION,
        Sha256::digest(data).into(),
        Some(layout.fec()),
        &mut out,
    )?;
    out.finish(&root)
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
    let (uri, block) = encode(BlockKind::Data, data)?;
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

/// Group `level` under manifests of at most `fanout` entries, level after
/// level, and return the root (not yet sealed). Every other manifest is
/// sealed into `out`.
fn build_tree(
    mut level: Vec<ManifestEntry>,
    fanout: usize,
    version: u8,
    sha256: [u8; 32],
    fec: Option<Fec>,
    out: &mut BlockList,
) -> Result<Manifest, ContentError> {
    let mut depth: u8 = 0;
    while level.len() > fanout {
        let mut next = Vec::with_capacity(level.len().div_ceil(fanout));
        for group in level.chunks(fanout) {
            let m = Manifest {
                version,
                length: group.iter().map(|e| e.length).sum(),
                sha256: None,
                depth,
                entries: group.to_vec(),
                fec: None,
            };
            let (chk, block) = encode(BlockKind::Manifest, &encode_manifest(&m))?;
            out.push(block);
            next.push(ManifestEntry {
                chk,
                length: m.length,
            });
        }
        level = next;
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(ContentError::TooLarge {
                len: fec.map_or(0, |f| f.file_length),
                max: entry_capacity(MAX_DEPTH, fanout).saturating_mul(fanout as u64),
            });
        }
    }
    Ok(Manifest {
        version,
        length: level.iter().map(|e| e.length).sum(),
        sha256: Some(sha256),
        depth,
        entries: level,
        fec,
    })
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
    let mut level = Vec::with_capacity(data.len().div_ceil(BLOCK_DATA_LEN));
    for piece in data.chunks(BLOCK_DATA_LEN) {
        out.leaf(&mut level, piece)?;
    }
    let root = build_tree(
        level,
        fanout,
        MANIFEST_VERSION_V1,
        Sha256::digest(data).into(),
        None,
        &mut out,
    )?;
    out.finish(&root)
}

fn encode(kind: BlockKind, data: &[u8]) -> Result<(Chk, Block), ContentError> {
    // Pieces are at most a block by construction, and manifests fit one by
    // the choice of MAX_FANOUT; an error here is a bug, but report it as one.
    Chk::encode_kind(kind, data).map_err(ContentError::Seal)
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

    /// Seal `plain` as a data block and list it as the next leaf.
    fn leaf(&mut self, leaves: &mut Vec<ManifestEntry>, plain: &[u8]) -> Result<(), ContentError> {
        let (chk, block) = encode(BlockKind::Data, plain)?;
        self.push(block);
        leaves.push(ManifestEntry {
            chk,
            length: plain.len() as u64,
        });
        Ok(())
    }

    /// Seal the root last and name the file by it.
    fn finish(mut self, root: &Manifest) -> Result<SplitFile, ContentError> {
        let (uri, block) = encode(BlockKind::Manifest, &encode_manifest(root))?;
        self.push(block);
        Ok(SplitFile {
            uri,
            blocks: self.blocks,
        })
    }
}
