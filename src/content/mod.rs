//! Files of any size: splitting into CHK blocks, erasure coding, manifests,
//! and fetching.
//!
//! # Layout
//!
//! [`split()`] cuts a file into [`BLOCK_DATA_LEN`]-byte pieces, each sealed as
//! a [`BlockKind::Data`] CHK block. A file of at most one block (including
//! the empty file) is named by that block's CHK alone. A larger file is a
//! **splitfile**: its data blocks are grouped into segments of at most 128
//! ([`MAX_SEGMENT`]), and each segment gets Reed-Solomon check blocks
//! (100% by default: 128 + 128), also sealed as data blocks; any `k` of a
//! segment's `n` blocks rebuild it ([`Layout`]). A **manifest** (CBOR,
//! sealed as a [`BlockKind::Manifest`] CHK block) lists the CHKs of the
//! leaves: each segment's data blocks, then its check blocks. When one
//! manifest cannot list every leaf, the leaves are grouped under child
//! manifests, and those under further manifests, until one root manifest
//! remains: the file's URI is the root manifest's CHK. A manifest over
//! manifests also lists Reed-Solomon check blocks over its children, so a
//! lost child manifest is rebuilt (`tree.rs`). The root carries the format
//! version (3), the file's SHA-256 and its erasure coding; version-1 files
//! (no check blocks) and version-2 files (none over manifests) are still
//! fetched. The root itself has no check blocks: `veil put` also inserts
//! copies of it at other points of the key space, which a fetch finds from
//! the URI alone and verifies against it (`copies.rs`, [`TOP_COPIES`]).
//!
//! # Rooms
//!
//! - [`manifest`]: the manifest wire format, encode/decode, and the
//!   capacity maths behind [`MAX_FANOUT`];
//! - `layout.rs`: segment sizes from a root's `fec` triple;
//! - [`Splitter`]: a file of known length into blocks as a stream, a
//!   segment at a time, manifests built as leaves arrive (`stream.rs`);
//! - [`split()`]: the same over a slice, all blocks at once (`split.rs`);
//! - [`fetch()`]: a file back, verified, segment by segment, any `k` of
//!   `n` blocks in random order, with bounded retries (`fetch.rs`: [`open`]
//!   the root and the tree, then [`Opened::write_rest`]; one block and one
//!   segment's decoding in `segment.rs`; the segments in order, the next
//!   one's requests leaving while the current one's last blocks are in
//!   flight, in `pipeline.rs`);
//! - [`fetch_to_path`]: into a file through `FILE.veil-part`, resuming an
//!   interrupted fetch after the segments that verify again (`resume.rs`);
//! - `copies.rs`: the top block's copies at other points of the key space
//!   ([`top_copies`]), looked for when it fails;
//! - [`dir`]: directories (freesites), a document mapping paths to files;
//! - here: the errors.
//!
//! While fetching, each child manifest must also match what its parent says
//! about it: its kind, its depth, and its length.
//!
//! # Integrity
//!
//! Every block is verified against its routing key and opened with its
//! decryption key, which also proves its kind. A data block rebuilt from
//! check blocks must hash to its CHK's decryption key (the key is the
//! plaintext's hash, so this proves it without sealing it again).
//! The tree of CHKs is therefore already a hash tree; the root's file
//! length and `sha256` are checked over the reassembled file as a final
//! end-to-end check on what the uploader built.

use crate::keys::{BlockKind, KeyError, BLOCK_DATA_LEN};

mod copies;
pub mod dir;
mod fetch;
mod layout;
pub mod manifest;
mod pipeline;
mod resume;
mod segment;
mod split;
mod stream;
mod tree;
pub mod usk;
mod window;

pub use copies::{pointer_key, top_copies, TopCopy, TOP_COPIES};
pub use fetch::{
    fetch, fetch_to_writer, fetch_with_progress, open, FetchError, FetchOptions, Opened, Progress,
    DEFAULT_MAX_LEN, TOP_RETRY_FACTOR,
};
pub use layout::{Fec, Layout, Segment, DEFAULT_REDUNDANCY, MAX_REDUNDANCY, MAX_SEGMENT};
pub use manifest::{
    decode_manifest, encode_manifest, inner_split, Manifest, ManifestEntry, MANIFEST_VERSION,
    MANIFEST_VERSION_V1, MANIFEST_VERSION_V2, MAX_DEPTH, MAX_FANOUT, MAX_FANOUT_V1, MAX_FANOUT_V2,
    MAX_FILE_LEN,
};
pub use resume::{fetch_to_path, part_path, record_path, Fetched};
pub use split::{split, split_v1, split_with, SplitFile, SplitOptions};
pub use stream::{Finished, SealedManifest, SegmentBlocks, Splitter};

/// Why a file could not be split or fetched. Messages name blocks by routing
/// key only: never a decryption key, never plaintext.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The block could not be fetched; the source says why (for blocks
    /// fetched through a node, a [`crate::client::ClientError`]).
    #[error("block {key} unavailable: {source}")]
    BlockUnavailable {
        key: String,
        #[source]
        source: FetchError,
    },
    /// The block was fetched but does not verify or open under its CHK.
    #[error("block {key} is bad: {source}")]
    BadBlock {
        key: String,
        #[source]
        source: KeyError,
    },
    /// The block opened, but it is not the kind its parent says it is.
    #[error("block {key} is a {found:?} block where a {expected:?} block belongs")]
    WrongKind {
        key: String,
        expected: BlockKind,
        found: BlockKind,
    },
    /// A manifest is malformed or internally inconsistent.
    #[error("corrupt manifest: {0}")]
    CorruptManifest(#[from] ManifestError),
    /// A manifest of a version this code does not read.
    #[error("unsupported manifest version {0}; this reads versions 1 to {MANIFEST_VERSION}")]
    UnsupportedVersion(u64),
    /// A block or subtree has a different length than its parent says.
    #[error("length mismatch: expected {expected} bytes, got {actual}")]
    LengthMismatch { expected: u64, actual: u64 },
    /// The reassembled file does not have the SHA-256 its manifest records.
    #[error("file does not match the SHA-256 in its manifest")]
    HashMismatch,
    /// The file is larger than allowed.
    #[error("file is {len} bytes; the limit is {max} (veil get --max-size raises it)")]
    TooLarge { len: u64, max: u64 },
    /// Fewer than `needed` of a segment's blocks could be fetched.
    #[error(
        "segment {segment} of {segments}: {lost} of {total} blocks unrecoverable, \
         {obtained} obtained, {needed} needed"
    )]
    SegmentUnrecoverable {
        /// 1-based.
        segment: u64,
        segments: u64,
        lost: usize,
        obtained: usize,
        needed: usize,
        total: usize,
        /// The last failure seen in the segment.
        #[source]
        cause: Box<ContentError>,
    },
    /// A data block rebuilt from check blocks does not seal to the CHK its
    /// manifest lists: a check block was built wrongly.
    #[error("segment {segment}: a rebuilt data block does not match its key {key}")]
    BadRecovery { segment: u64, key: String },
    /// Reed-Solomon coding refused its input (a bug, or a corrupt layout).
    #[error("erasure coding failed: {0}")]
    Fec(#[source] reed_solomon_simd::Error),
    /// Splitting options out of range.
    #[error(
        "segment size {segment} must be 1..={MAX_SEGMENT}, redundancy {redundancy}% at most {MAX_REDUNDANCY}%"
    )]
    BadOptions { segment: u8, redundancy: u16 },
    /// A fan-out outside `2..=MAX_FANOUT`.
    #[error("fan-out {0} is outside 2..={MAX_FANOUT}")]
    BadFanout(usize),
    /// Sealing a block while splitting failed (a bug: pieces and manifests
    /// fit a block by construction).
    #[error("sealing a block failed: {0}")]
    Seal(#[source] KeyError),
    /// The input ended before the length it had when the split began.
    #[error("the input ended before its {expected} bytes (did it shrink while being read?)")]
    InputShort { expected: u64 },
    /// The input went on past the length it had when the split began.
    #[error(
        "the input is longer than the {expected} bytes it had (did it grow while being read?)"
    )]
    InputLong { expected: u64 },
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the output failed.
    #[error("writing the file failed: {0}")]
    Write(#[from] std::io::Error),
    /// A fetch task panicked or was cancelled.
    #[error("fetch task failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// No block was in flight while blocks remained (a bug).
    #[error("fetch stalled: no block in flight while blocks remain")]
    Stalled,
}

impl ContentError {
    /// True when what was fetched is at fault: a block that does not
    /// verify, is of the wrong kind, or a manifest tree that is inconsistent.
    /// Whoever served or built it is to blame, not this machine or the
    /// network's reach; fetching it again will not help.
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            ContentError::BadBlock { .. }
                | ContentError::WrongKind { .. }
                | ContentError::CorruptManifest(_)
                | ContentError::UnsupportedVersion(_)
                | ContentError::LengthMismatch { .. }
                | ContentError::HashMismatch
                | ContentError::BadRecovery { .. }
        )
    }

    /// Why a block could not be fetched, as the fetcher said (for
    /// [`ContentError::BlockUnavailable`] only).
    pub fn unavailable_cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            ContentError::BlockUnavailable { source, .. } => Some(source.as_ref()),
            ContentError::SegmentUnrecoverable { cause, .. } => cause.unavailable_cause(),
            _ => None,
        }
    }
}

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Longer than a block.
    #[error("{0} bytes; a manifest is at most {BLOCK_DATA_LEN}")]
    TooLong(usize),
    /// Not the CBOR map the format describes.
    #[error("{0}")]
    Cbor(#[source] ciborium::de::Error<std::io::Error>),
    /// Bytes after the map.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A depth beyond [`MAX_DEPTH`].
    #[error("depth {0} exceeds {MAX_DEPTH}")]
    TooDeep(u64),
    /// An empty entry list.
    #[error("no entries")]
    NoEntries,
    /// An entry of zero bytes, or more than a subtree of its depth holds.
    #[error("entry {index} claims {length} bytes; a depth-{depth} entry holds 1..={cap}")]
    EntryLength {
        index: usize,
        length: u64,
        depth: u8,
        cap: u64,
    },
    /// The entries add up to more than the manifest's length.
    #[error("entries add up to more than the manifest's {length} bytes")]
    EntriesExceed { length: u64 },
    /// The entries add up to less than the manifest's length.
    #[error("entries add up to {sum} bytes, the manifest says {length}")]
    EntriesSum { sum: u64, length: u64 },
    /// The root manifest lacks the whole-file hash.
    #[error("root manifest has no file hash")]
    RootWithoutHash,
    /// A child manifest's depth is not one less than its parent's.
    #[error("child manifest {key} has depth {found}, its parent says {expected}")]
    ChildDepth {
        key: String,
        found: u8,
        expected: u8,
    },
    /// A child manifest carries a file hash (only the root does).
    #[error("child manifest {key} carries a file hash")]
    ChildWithHash { key: String },
    /// More entries than a manifest of its version holds.
    #[error("{0} entries; more than a manifest holds")]
    TooManyEntries(usize),
    /// A version-1 manifest with erasure coding.
    #[error("a version-1 manifest has no fec field")]
    FecInV1,
    /// A version-2 manifest with a file hash but no erasure coding, or the
    /// other way round.
    #[error("a version-2 root has both sha256 and fec, a child neither")]
    HashWithoutFec,
    /// Erasure coding out of range.
    #[error("fec [{file_length}, {segment}, {redundancy}] is out of range")]
    BadFec {
        file_length: u64,
        segment: u64,
        redundancy: u64,
    },
    /// A version-2 root whose `length` is not what its layout stores.
    #[error("root length {length} differs from the {stored} bytes its layout stores")]
    StoredLength { length: u64, stored: u64 },
    /// The tree lists more leaves than the root's length allows: a manifest
    /// bomb, refused before the list is built.
    #[error("the manifests list more than the {max} blocks a {file_length}-byte file has")]
    TooManyBlocks { max: u64, file_length: u64 },
    /// Check blocks in a manifest before version 3, at depth 0, more than
    /// the redundancy limit allows, or not a block long.
    #[error("{0} check entries where the format allows none, or not of a block each")]
    BadChecks(usize),
    /// A `checks` key before version 3.
    #[error("a manifest before version 3 has no checks field")]
    ChecksBeforeV3,
    /// A child manifest rebuilt from check blocks does not seal to its key.
    #[error("a child manifest rebuilt from check blocks does not match its key {key}")]
    BadChildRecovery { key: String },
    /// A leaf whose length does not fit its place in the layout.
    #[error("leaf {index} claims {length} bytes; its place in the layout holds {expected}")]
    LeafLength {
        index: u64,
        length: u64,
        expected: u64,
    },
}
