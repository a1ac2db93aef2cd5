//! Splitting a file into data blocks and a tree of manifests.

use sha2::{Digest, Sha256};

use super::manifest::{encode_manifest, entry_capacity};
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

/// Split a file into blocks with the largest fan-out, [`MAX_FANOUT`].
pub fn split(data: &[u8]) -> Result<SplitFile, ContentError> {
    split_with_fanout(data, MAX_FANOUT)
}

/// Split a file into blocks, putting at most `fanout` entries in each
/// manifest (`2..=MAX_FANOUT`). Small fan-outs build deep trees from little
/// data, which is what tests want; real files should use [`split`].
/// Deterministic: the same data and fan-out always give the same URI.
pub fn split_with_fanout(data: &[u8], fanout: usize) -> Result<SplitFile, ContentError> {
    if !(2..=MAX_FANOUT).contains(&fanout) {
        return Err(ContentError::BadFanout(fanout));
    }
    let len = data.len() as u64;
    if len > MAX_FILE_LEN {
        return Err(ContentError::TooLarge {
            len,
            max: MAX_FILE_LEN,
        });
    }
    let mut out = BlockList::default();

    if data.len() <= BLOCK_DATA_LEN {
        let (uri, block) = encode(BlockKind::Data, data)?;
        out.push(block);
        return Ok(SplitFile {
            uri,
            blocks: out.blocks,
        });
    }

    let mut level: Vec<ManifestEntry> = Vec::with_capacity(data.len().div_ceil(BLOCK_DATA_LEN));
    for piece in data.chunks(BLOCK_DATA_LEN) {
        let (chk, block) = encode(BlockKind::Data, piece)?;
        out.push(block);
        level.push(ManifestEntry {
            chk,
            length: piece.len() as u64,
        });
    }

    let sha256: [u8; 32] = Sha256::digest(data).into();
    let mut depth: u8 = 0;
    while level.len() > fanout {
        let mut next = Vec::with_capacity(level.len().div_ceil(fanout));
        for group in level.chunks(fanout) {
            let m = Manifest {
                length: group.iter().map(|e| e.length).sum(),
                sha256: None,
                depth,
                entries: group.to_vec(),
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
                len,
                max: entry_capacity(MAX_DEPTH).saturating_mul(fanout as u64),
            });
        }
    }
    let root = Manifest {
        length: len,
        sha256: Some(sha256),
        depth,
        entries: level,
    };
    let (uri, block) = encode(BlockKind::Manifest, &encode_manifest(&root))?;
    out.push(block);
    Ok(SplitFile {
        uri,
        blocks: out.blocks,
    })
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
}
