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
use super::manifest::inner_split;
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
/// [`Self::cap`] entries as soon as it is known to have more than that.
/// In version 3 a manifest over manifests also lists check blocks over its
/// children ([`inner_split`]), so it keeps its children's plaintexts until
/// it is sealed (at most a fan-out of blocks per level).
pub(super) struct TreeBuilder {
    levels: Vec<Vec<ManifestEntry>>,
    /// The plaintexts of the manifests waiting at each level (version 3,
    /// above the leaves).
    texts: Vec<Vec<Vec<u8>>>,
    fanout: usize,
    version: u8,
    redundancy: u16,
}

impl TreeBuilder {
    pub fn new(fanout: usize, version: u8, redundancy: u16) -> TreeBuilder {
        TreeBuilder {
            levels: Vec::new(),
            texts: Vec::new(),
            fanout,
            version,
            redundancy,
        }
    }

    /// Does a manifest at `depth` list check blocks over its children?
    fn coded(&self, depth: usize) -> bool {
        depth > 0 && self.version >= MANIFEST_VERSION && self.redundancy > 0
    }

    /// The most children a manifest at `depth` lists.
    pub fn cap(&self, depth: usize) -> usize {
        if self.coded(depth) {
            inner_split(self.fanout, self.redundancy).0
        } else {
            self.fanout
        }
    }

    /// The check blocks a manifest at `depth` with `children` gets.
    pub fn checks_for(&self, depth: usize, children: usize) -> usize {
        if self.coded(depth) {
            (inner_split(self.fanout, self.redundancy).1)(children)
        } else {
            0
        }
    }

    /// Add a leaf; manifests this completes are sealed into `out`.
    pub fn push_leaf(
        &mut self,
        entry: ManifestEntry,
        out: &mut Vec<SealedManifest>,
    ) -> Result<(), ContentError> {
        self.push(0, entry, Vec::new(), out)
    }

    fn too_deep(&self) -> ContentError {
        ContentError::TooLarge {
            len: 0,
            max: entry_capacity(MAX_DEPTH, self.fanout).saturating_mul(self.fanout as u64),
        }
    }

    /// Add an entry at `depth` (0: a leaf; above, a manifest with its
    /// plaintext, kept only where checks will be made over it).
    fn push(
        &mut self,
        depth: usize,
        entry: ManifestEntry,
        text: Vec<u8>,
        out: &mut Vec<SealedManifest>,
    ) -> Result<(), ContentError> {
        if depth > usize::from(MAX_DEPTH) {
            return Err(self.too_deep());
        }
        while self.levels.len() <= depth {
            self.levels.push(Vec::with_capacity(self.cap(depth)));
            self.texts.push(Vec::new());
        }
        if self.levels[depth].len() == self.cap(depth) {
            let full = std::mem::take(&mut self.levels[depth]);
            let texts = std::mem::take(&mut self.texts[depth]);
            let (sealed, text) = self.seal_child(depth, full, texts, out)?;
            self.push(depth + 1, sealed, text, out)?;
        }
        self.levels[depth].push(entry);
        if self.coded(depth) {
            self.texts[depth].push(text);
        }
        Ok(())
    }

    /// The check blocks over a manifest's children (their plaintexts),
    /// sealed into `out` beside them; their entries.
    fn checks(
        &self,
        depth: usize,
        texts: &[Vec<u8>],
        out: &mut Vec<SealedManifest>,
    ) -> Result<Vec<ManifestEntry>, ContentError> {
        let m = self.checks_for(depth, texts.len());
        let group: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        let child_depth = u8::try_from(depth.saturating_sub(1)).map_err(|_| self.too_deep())?;
        let mut entries = Vec::with_capacity(m);
        for shard in check_shards(&group, m)? {
            let (chk, block) = seal(BlockKind::Data, &shard)?;
            out.push((child_depth, block));
            entries.push(ManifestEntry {
                chk,
                length: BLOCK_DATA_LEN as u64,
            });
        }
        Ok(entries)
    }

    fn seal_child(
        &self,
        depth: usize,
        entries: Vec<ManifestEntry>,
        texts: Vec<Vec<u8>>,
        out: &mut Vec<SealedManifest>,
    ) -> Result<(ManifestEntry, Vec<u8>), ContentError> {
        let checks = self.checks(depth, &texts, out)?;
        let depth = u8::try_from(depth).map_err(|_| self.too_deep())?;
        let m = Manifest {
            version: self.version,
            length: entries.iter().map(|e| e.length).sum(),
            sha256: None,
            depth,
            entries,
            fec: None,
            checks,
        };
        let text = encode_manifest(&m);
        let (chk, block) = seal(BlockKind::Manifest, &text)?;
        out.push((depth, block));
        let entry = ManifestEntry {
            chk,
            length: m.length,
        };
        Ok((entry, text))
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
            let texts = std::mem::take(&mut self.texts[depth]);
            if !rest.is_empty() {
                let (sealed, text) = self.seal_child(depth, rest, texts, out)?;
                self.push(depth + 1, sealed, text, out)?;
            }
            depth += 1;
        }
        let entries = self.levels.pop().unwrap_or_default();
        let texts = self.texts.pop().unwrap_or_default();
        let checks = self.checks(depth, &texts, out)?;
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
            checks,
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
            next: 0,
            hasher: Sha256::new(),
            tree: TreeBuilder::new(opts.fanout, MANIFEST_VERSION, opts.redundancy),
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
        let mut depth = 0;
        while level > self.tree.cap(depth) as u64 {
            let cap = self.tree.cap(depth) as u64;
            let (full, rest) = (level / cap, level % cap);
            let checks = |n: u64| self.tree.checks_for(depth, n as usize) as u64;
            total +=
                level.div_ceil(cap) + full * checks(cap) + if rest > 0 { checks(rest) } else { 0 };
            level = level.div_ceil(cap);
            depth += 1;
        }
        total + self.tree.checks_for(depth, level as usize) as u64
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
                .push_leaf(ManifestEntry { chk, length }, &mut manifests)?;
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
