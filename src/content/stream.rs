//! Splitting as a stream: a file of known length read a segment at a time,
//! its manifests built as the leaves arrive.
//!
//! A [`Splitter`] holds one segment's pieces and check blocks while it seals
//! them, plus at most `fanout` manifest entries per level of the tree
//! ([`TreeBuilder`]): its memory does not depend on the file's size. The
//! length must be known up front because the layout balances the segments
//! over the whole file ([`super::Layout`]); `veil put -` therefore spools
//! stdin to an unlinked temporary file first.
//!
//! [`super::split_with`] is this splitter over a slice, so a file split in
//! memory and the same file streamed get the same URI.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::layout::{Fec, Layout};
use super::manifest::{encode_manifest, entry_capacity, MANIFEST_VERSION};
use super::split::{check_shards, SplitOptions};
use super::{ContentError, Manifest, ManifestEntry, MAX_DEPTH, MAX_FANOUT, MAX_FILE_LEN};
use crate::keys::{Block, BlockKind, Chk, BLOCK_DATA_LEN};

/// Seal `data` as a CHK block of `kind`.
pub(super) fn seal(kind: BlockKind, data: &[u8]) -> Result<(Chk, Block), ContentError> {
    // Pieces are at most a block by construction, and manifests fit one by
    // the choice of MAX_FANOUT; an error here is a bug, but report it as one.
    Chk::encode_kind(kind, data).map_err(ContentError::Seal)
}

/// A sealed manifest and its depth (0: it lists leaves).
pub type SealedManifest = (u8, Block);

/// Builds a manifest tree bottom-up as entries arrive, holding at most
/// `fanout` entries per level. Gives exactly the tree that grouping the
/// whole leaf list level by level would: a level is cut into manifests of
/// `fanout` entries as soon as it is known to have more than `fanout`.
pub(super) struct TreeBuilder {
    levels: Vec<Vec<ManifestEntry>>,
    fanout: usize,
    version: u8,
}

impl TreeBuilder {
    pub fn new(fanout: usize, version: u8) -> TreeBuilder {
        TreeBuilder {
            levels: Vec::new(),
            fanout,
            version,
        }
    }

    fn too_deep(&self) -> ContentError {
        ContentError::TooLarge {
            len: 0,
            max: entry_capacity(MAX_DEPTH, self.fanout).saturating_mul(self.fanout as u64),
        }
    }

    /// Add an entry at `depth` (0: a leaf); manifests this completes are
    /// sealed into `out`.
    pub fn push(
        &mut self,
        depth: usize,
        entry: ManifestEntry,
        out: &mut Vec<SealedManifest>,
    ) -> Result<(), ContentError> {
        if depth > usize::from(MAX_DEPTH) {
            return Err(self.too_deep());
        }
        if self.levels.len() <= depth {
            self.levels.push(Vec::with_capacity(self.fanout));
        }
        if self.levels[depth].len() == self.fanout {
            let full = std::mem::replace(&mut self.levels[depth], Vec::with_capacity(self.fanout));
            let sealed = self.seal_child(depth, full, out)?;
            self.push(depth + 1, sealed, out)?;
        }
        self.levels[depth].push(entry);
        Ok(())
    }

    fn seal_child(
        &self,
        depth: usize,
        entries: Vec<ManifestEntry>,
        out: &mut Vec<SealedManifest>,
    ) -> Result<ManifestEntry, ContentError> {
        let depth = u8::try_from(depth).map_err(|_| self.too_deep())?;
        let m = Manifest {
            version: self.version,
            length: entries.iter().map(|e| e.length).sum(),
            sha256: None,
            depth,
            entries,
            fec: None,
        };
        let (chk, block) = seal(BlockKind::Manifest, &encode_manifest(&m))?;
        out.push((depth, block));
        Ok(ManifestEntry {
            chk,
            length: m.length,
        })
    }

    /// Seal what remains below the top level and return the root (not yet
    /// sealed): the top level's entries, with the file's hash and coding.
    pub fn finish(
        mut self,
        sha256: [u8; 32],
        fec: Option<Fec>,
        out: &mut Vec<SealedManifest>,
    ) -> Result<Manifest, ContentError> {
        let mut depth = 0;
        while depth + 1 < self.levels.len() {
            let rest = std::mem::take(&mut self.levels[depth]);
            if !rest.is_empty() {
                let sealed = self.seal_child(depth, rest, out)?;
                self.push(depth + 1, sealed, out)?;
            }
            depth += 1;
        }
        let entries = self.levels.pop().unwrap_or_default();
        let depth = u8::try_from(depth).map_err(|_| self.too_deep())?;
        if depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(Manifest {
            version: self.version,
            length: entries.iter().map(|e| e.length).sum(),
            sha256: Some(sha256),
            depth,
            entries,
            fec,
        })
    }
}

/// One segment's blocks, ready to insert.
pub struct SegmentBlocks {
    /// 0-based.
    pub number: u64,
    /// Its data blocks in file order, then its check blocks.
    pub leaves: Vec<Block>,
    /// Manifests this segment completed (insert before the root).
    pub manifests: Vec<SealedManifest>,
}

/// The end of a split.
pub struct Finished {
    /// The file's URI: the root's CHK.
    pub uri: Chk,
    /// Manifests completed at the end (insert before the root).
    pub manifests: Vec<SealedManifest>,
    /// The root manifest, or the file's one data block: insert it last.
    pub root: Block,
}

/// Splits `len` bytes read from `input` a segment at a time. Call
/// [`Self::next_segment`] until it gives `None`, then [`Self::finish`].
pub struct Splitter<R> {
    input: R,
    len: u64,
    layout: Option<Layout>,
    fanout: usize,
    next: u64,
    hasher: Sha256,
    tree: TreeBuilder,
}

impl<R: Read> Splitter<R> {
    /// Check the options and the length; nothing is read yet.
    pub fn new(input: R, len: u64, opts: &SplitOptions) -> Result<Splitter<R>, ContentError> {
        if !(2..=MAX_FANOUT).contains(&opts.fanout) {
            return Err(ContentError::BadFanout(opts.fanout));
        }
        let bad = |_| ContentError::BadOptions {
            segment: opts.segment,
            redundancy: opts.redundancy,
        };
        // Options are checked even for a file that will not use them.
        Fec::checked(1, u64::from(opts.segment), u64::from(opts.redundancy)).map_err(bad)?;
        if len > MAX_FILE_LEN {
            return Err(ContentError::TooLarge {
                len,
                max: MAX_FILE_LEN,
            });
        }
        let layout = if len > BLOCK_DATA_LEN as u64 {
            let fec = Fec::checked(len, u64::from(opts.segment), u64::from(opts.redundancy))
                .map_err(bad)?;
            Some(Layout::new(fec))
        } else {
            None
        };
        Ok(Splitter {
            input,
            len,
            layout,
            fanout: opts.fanout,
            next: 0,
            hasher: Sha256::new(),
            tree: TreeBuilder::new(opts.fanout, MANIFEST_VERSION),
        })
    }

    /// Segments in the file (0 for a file of one block).
    pub fn segments(&self) -> u64 {
        self.layout.map_or(0, |l| l.segments())
    }

    /// Every block the file is made of, before de-duplication: leaves,
    /// manifests and the root.
    pub fn total_blocks(&self) -> u64 {
        let Some(layout) = self.layout else {
            return 1;
        };
        let mut level = layout.leaves();
        let mut total = level + 1;
        while level > self.fanout as u64 {
            level = level.div_ceil(self.fanout as u64);
            total += level;
        }
        total
    }

    /// Exactly `n` bytes of input.
    fn read_piece(&mut self, n: usize) -> Result<Vec<u8>, ContentError> {
        let mut buf = vec![0u8; n];
        let mut filled = 0;
        while filled < n {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => return Err(ContentError::InputShort { expected: self.len }),
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ContentError::Read(e)),
            }
        }
        self.hasher.update(&buf);
        Ok(buf)
    }

    /// After the last byte: the input must end there.
    fn expect_end(&mut self) -> Result<(), ContentError> {
        let mut probe = [0u8; 1];
        loop {
            return match self.input.read(&mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(ContentError::InputLong { expected: self.len }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(ContentError::Read(e)),
            };
        }
    }

    /// Read, encode and seal the next segment; `None` once every segment
    /// has been given.
    pub fn next_segment(&mut self) -> Result<Option<SegmentBlocks>, ContentError> {
        let Some(layout) = self.layout else {
            return Ok(None);
        };
        if self.next >= layout.segments() {
            return Ok(None);
        }
        let seg = layout.segment(self.next);
        let mut pieces = Vec::with_capacity(seg.data);
        for j in 0..seg.data as u64 {
            let n = layout.data_len(seg.first_data + j) as usize;
            pieces.push(self.read_piece(n)?);
        }
        let mut leaves = Vec::with_capacity(seg.data + seg.check);
        let mut manifests = Vec::new();
        let checks = {
            let group: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            check_shards(&group, seg.check)?
        };
        for piece in pieces.into_iter().chain(checks) {
            let (chk, block) = seal(BlockKind::Data, &piece)?;
            let length = piece.len() as u64;
            self.tree
                .push(0, ManifestEntry { chk, length }, &mut manifests)?;
            leaves.push(block);
        }
        self.next += 1;
        if self.next == layout.segments() {
            self.expect_end()?;
        }
        Ok(Some(SegmentBlocks {
            number: self.next - 1,
            leaves,
            manifests,
        }))
    }

    /// Seal the rest of the tree and the root. Every segment must have been
    /// read.
    pub fn finish(mut self) -> Result<Finished, ContentError> {
        let Some(layout) = self.layout else {
            let piece = self.read_piece(self.len as usize)?;
            self.expect_end()?;
            let (uri, root) = seal(BlockKind::Data, &piece)?;
            return Ok(Finished {
                uri,
                manifests: Vec::new(),
                root,
            });
        };
        if self.next < layout.segments() {
            return Err(ContentError::InputShort { expected: self.len });
        }
        let mut manifests = Vec::new();
        let sha256 = self.hasher.finalize().into();
        let root = self
            .tree
            .finish(sha256, Some(layout.fec()), &mut manifests)?;
        let (uri, root) = seal(BlockKind::Manifest, &encode_manifest(&root))?;
        Ok(Finished {
            uri,
            manifests,
            root,
        })
    }
}
