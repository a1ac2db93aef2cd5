//! Files of any size: splitting into CHK blocks, manifests, and fetching.
//!
//! # Layout
//!
//! [`split()`] cuts a file into [`BLOCK_DATA_LEN`]-byte pieces, each sealed as
//! a [`BlockKind::Data`] CHK block. A file of at most one block (including
//! the empty file) is named by that block's CHK alone. A larger file gets a
//! **manifest**: a CBOR document listing the CHKs of its blocks, itself
//! sealed as a [`BlockKind::Manifest`] CHK block. When one manifest cannot
//! list every block, the blocks are grouped under child manifests, and those
//! under further manifests, until one root manifest remains: the file's URI
//! is the root manifest's CHK.
//!
//! # Rooms
//!
//! - [`manifest`]: the manifest wire format, encode/decode, and the
//!   capacity maths behind [`MAX_FANOUT`];
//! - [`split()`]: a file into blocks (`split.rs`);
//! - [`fetch()`]: a file back, verified, with ordered bounded-concurrency
//!   fetching (`fetch.rs`);
//! - here: the errors.
//!
//! While fetching, each child manifest must also match what its parent says
//! about it: its kind, its depth, and its length.
//!
//! # Integrity
//!
//! Every block is verified against its routing key and opened with its
//! decryption key, which also proves its kind. The tree of CHKs is therefore
//! already a hash tree; the root's `length` and `sha256` are checked over the
//! reassembled file as a final end-to-end check on what the uploader built.

use crate::keys::{BlockKind, KeyError, BLOCK_DATA_LEN};

mod fetch;
pub mod manifest;
mod split;

pub use fetch::{fetch, fetch_to_writer, fetch_with_progress, FetchError, FetchOptions, Progress};
pub use manifest::{
    decode_manifest, encode_manifest, Manifest, ManifestEntry, MANIFEST_VERSION, MAX_DEPTH,
    MAX_FANOUT, MAX_FILE_LEN,
};
pub use split::{split, split_with_fanout, SplitFile};

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
    #[error("unsupported manifest version {0}; this reads version {MANIFEST_VERSION}")]
    UnsupportedVersion(u64),
    /// A block or subtree has a different length than its parent says.
    #[error("length mismatch: expected {expected} bytes, got {actual}")]
    LengthMismatch { expected: u64, actual: u64 },
    /// The reassembled file does not have the SHA-256 its manifest records.
    #[error("file does not match the SHA-256 in its manifest")]
    HashMismatch,
    /// The file is larger than allowed.
    #[error("file is {len} bytes; the limit is {max}")]
    TooLarge { len: u64, max: u64 },
    /// A fan-out outside `2..=MAX_FANOUT`.
    #[error("fan-out {0} is outside 2..={MAX_FANOUT}")]
    BadFanout(usize),
    /// Sealing a block while splitting failed (a bug: pieces and manifests
    /// fit a block by construction).
    #[error("sealing a block failed: {0}")]
    Seal(#[source] KeyError),
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
        )
    }

    /// Why a block could not be fetched, as the fetcher said (for
    /// [`ContentError::BlockUnavailable`] only).
    pub fn unavailable_cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            ContentError::BlockUnavailable { source, .. } => Some(source.as_ref()),
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
}
