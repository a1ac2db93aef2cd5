//! Files of any size: splitting into CHK blocks, manifests, and fetching.
//!
//! # Layout
//!
//! [`split`] cuts a file into [`BLOCK_DATA_LEN`]-byte pieces, each sealed as
//! a [`BlockKind::Data`] CHK block. A file of at most one block (including
//! the empty file) is named by that block's CHK alone. A larger file gets a
//! **manifest**: a CBOR document listing the CHKs of its blocks, itself
//! sealed as a [`BlockKind::Manifest`] CHK block. When one manifest cannot
//! list every block, the blocks are grouped under child manifests, and those
//! under further manifests, until one root manifest remains: the file's URI
//! is the root manifest's CHK.
//!
//! # Manifest format (version 1)
//!
//! A CBOR map with exactly these keys:
//!
//! | key       | value                                                       |
//! |-----------|-------------------------------------------------------------|
//! | `v`       | unsigned integer, [`MANIFEST_VERSION`]                      |
//! | `length`  | unsigned integer: bytes of file under this manifest         |
//! | `sha256`  | 32-byte string (the whole file's SHA-256) in the root; `null` in every child manifest |
//! | `depth`   | unsigned integer: 0 if the entries are data blocks, `d > 0` if they are manifests of depth `d - 1` |
//! | `entries` | array of `[routing key (32-byte string), decryption key (32-byte string), length (unsigned)]` |
//!
//! An encoded manifest must fit in one block. [`MAX_FANOUT`] is the largest
//! number of entries for which the worst-case encoding (every integer at its
//! widest) still does; it is computed from the CBOR sizes below, not guessed.
//!
//! Every manifest is checked when decoded ([`decode_manifest`]): input of at
//! most [`BLOCK_DATA_LEN`] bytes, known version, `depth <= MAX_DEPTH`,
//! `1..=MAX_FANOUT` entries, every entry length non-zero and within what a
//! subtree of that depth can hold, entry lengths summing exactly to `length`,
//! and `length <= MAX_FILE_LEN`. While fetching, each child must also match
//! what its parent says about it: its kind, its depth, and its length.
//!
//! # Integrity
//!
//! Every block is verified against its routing key and opened with its
//! decryption key, which also proves its kind. The tree of CHKs is therefore
//! already a hash tree; the root's `length` and `sha256` are checked over the
//! reassembled file as a final end-to-end check on what the uploader built.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::keys::{Block, BlockKind, Chk, DecryptionKey, KeyError, RoutingKey, BLOCK_DATA_LEN};

/// The manifest format version this module writes and reads.
pub const MANIFEST_VERSION: u8 = 1;

/// The deepest manifest accepted: depth 0 lists data blocks, depth `d` lists
/// manifests of depth `d - 1`. At [`MAX_FANOUT`] entries a tree of depth 2
/// already covers more than [`MAX_FILE_LEN`]; the slack is for trees built
/// with a small fan-out ([`split_with_fanout`]).
pub const MAX_DEPTH: u8 = 4;

/// The largest file [`split`] builds and [`fetch`] accepts: 1 TiB.
pub const MAX_FILE_LEN: u64 = 1 << 40;

// Worst-case CBOR sizes of the parts of an encoded manifest. A CBOR head
// (major type + argument) is 1 byte for arguments < 24, then 2, 3, 5 or 9.
/// A 32-byte string: 2-byte head (0x58 0x20) + 32 bytes.
const CBOR_BYTES32: usize = 2 + 32;
/// Any `u64`: at most a 9-byte head.
const CBOR_U64_MAX: usize = 9;
/// Any `u8`: at most a 2-byte head.
const CBOR_U8_MAX: usize = 2;
/// A text-string key of `n` (< 24) bytes: 1-byte head + the text.
const fn cbor_key(n: usize) -> usize {
    1 + n
}
/// One entry: a 3-element array head (1 byte) + two keys + a length.
const ENTRY_MAX_LEN: usize = 1 + CBOR_BYTES32 + CBOR_BYTES32 + CBOR_U64_MAX;
/// Everything but the entries, at its widest: the 5-entry map head, the five
/// keys and their values, and the array head for up to 65 535 entries
/// (3 bytes).
const MANIFEST_OVERHEAD_MAX: usize = 1
    + cbor_key(1) // "v"
    + CBOR_U8_MAX
    + cbor_key(6) // "length"
    + CBOR_U64_MAX
    + cbor_key(6) // "sha256"
    + CBOR_BYTES32
    + cbor_key(5) // "depth"
    + CBOR_U8_MAX
    + cbor_key(7) // "entries"
    + 3;

/// The most entries one manifest holds: as many as fit in one block in the
/// worst case (419 with 32 KiB blocks).
pub const MAX_FANOUT: usize = (BLOCK_DATA_LEN - MANIFEST_OVERHEAD_MAX) / ENTRY_MAX_LEN;

// The array head above is 3 bytes only while the count fits in a u16.
const _: () = assert!(MAX_FANOUT < 65_536 && MAX_FANOUT >= 2);

/// How far past the next block to hand back a fetch may run, as a multiple
/// of its concurrency: bounds the reorder buffer to this many blocks.
const WINDOW_FACTOR: usize = 4;

/// Why a file could not be split or fetched. Messages name blocks by routing
/// key only: never a decryption key, never plaintext.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The block could not be fetched.
    #[error("block {key} unavailable: {reason}")]
    BlockUnavailable { key: String, reason: String },
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
    CorruptManifest(String),
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
    /// Writing the output failed.
    #[error("writing the file failed: {0}")]
    Write(#[from] std::io::Error),
    /// A fetch task panicked or was cancelled.
    #[error("fetch task failed: {0}")]
    TaskFailed(String),
}

/// One line of a manifest: a child block and how many file bytes lie under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    pub chk: Chk,
    pub length: u64,
}

/// A decoded manifest. See the module docs for the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Bytes of file under this manifest.
    pub length: u64,
    /// SHA-256 of the whole file: `Some` in the root, `None` in children.
    pub sha256: Option<[u8; 32]>,
    /// 0: entries are data blocks; `d > 0`: entries are manifests of depth `d - 1`.
    pub depth: u8,
    pub entries: Vec<ManifestEntry>,
}

/// A file cut into blocks, ready to insert.
#[derive(Debug)]
pub struct SplitFile {
    /// The one URI that names the whole file.
    pub uri: Chk,
    /// Every block to insert, each once: data blocks in file order, then
    /// manifests bottom-up, the root manifest (if any) last.
    pub blocks: Vec<Block>,
}

/// Progress of a fetch, reported after the root and after every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Blocks fetched and verified so far.
    pub blocks_done: u64,
    /// Blocks known to be needed so far; grows as manifests are opened.
    pub blocks_known: u64,
    /// File bytes written so far.
    pub bytes_done: u64,
    /// The file's length (known once the root block is open).
    pub bytes_total: u64,
}

/// Options for [`fetch_to_writer`].
#[derive(Clone, Copy, Debug)]
pub struct FetchOptions {
    /// Most blocks in flight at once (0 is treated as 1).
    pub concurrency: usize,
    /// Refuse files longer than this (at most [`MAX_FILE_LEN`] is accepted
    /// regardless).
    pub max_len: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 8,
            max_len: MAX_FILE_LEN,
        }
    }
}

// ---------------------------------------------------------------------------
// Wire format

/// Exactly 32 bytes, as a CBOR byte string.
#[derive(Clone, Copy)]
struct Bytes32([u8; 32]);

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes32, E> {
                v.try_into()
                    .map(Bytes32)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[derive(Serialize, Deserialize)]
struct WireEntry(Bytes32, Bytes32, u64);

/// The entry array, refusing more than [`MAX_FANOUT`] entries while parsing
/// and never reserving more than that.
struct WireEntries(Vec<WireEntry>);

impl Serialize for WireEntries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for WireEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WireEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at most {MAX_FANOUT} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireEntries, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX_FANOUT {
                    return Err(serde::de::Error::invalid_length(hint, &self));
                }
                let mut out = Vec::with_capacity(hint);
                while let Some(entry) = seq.next_element::<WireEntry>()? {
                    if out.len() == MAX_FANOUT {
                        return Err(serde::de::Error::invalid_length(out.len() + 1, &self));
                    }
                    out.push(entry);
                }
                Ok(WireEntries(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireManifest {
    v: u64,
    length: u64,
    sha256: Option<Bytes32>,
    depth: u64,
    entries: WireEntries,
}

/// Rebuild a CHK from its two halves.
fn chk_from_parts(routing: &[u8; 32], decryption: &[u8; 32]) -> Chk {
    Chk {
        routing: RoutingKey(*routing),
        decryption: DecryptionKey::from_bytes(*decryption),
    }
}

/// Encode a manifest as CBOR. The result fits in one block whenever the
/// manifest has at most [`MAX_FANOUT`] entries.
pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let wire = WireManifest {
        v: u64::from(MANIFEST_VERSION),
        length: m.length,
        sha256: m.sha256.map(Bytes32),
        depth: u64::from(m.depth),
        entries: WireEntries(
            m.entries
                .iter()
                .map(|e| {
                    WireEntry(
                        Bytes32(e.chk.routing.0),
                        Bytes32(*e.chk.decryption.as_bytes()),
                        e.length,
                    )
                })
                .collect(),
        ),
    };
    let mut out = Vec::with_capacity(MANIFEST_OVERHEAD_MAX + m.entries.len() * ENTRY_MAX_LEN);
    // Writing into a Vec cannot fail, and every field serializes.
    if let Err(e) = ciborium::ser::into_writer(&wire, &mut out) {
        unreachable!("encoding a manifest into memory failed: {e}");
    }
    let mut wire = wire;
    for e in wire.entries.0.iter_mut() {
        zeroize::Zeroize::zeroize(&mut e.1 .0);
    }
    out
}

/// The most file bytes one entry of a manifest at `depth` can stand for:
/// a data block at depth 0, a full subtree of depth `depth - 1` otherwise.
fn entry_capacity(depth: u8) -> u64 {
    let mut cap = BLOCK_DATA_LEN as u64;
    for _ in 0..depth {
        cap = cap.saturating_mul(MAX_FANOUT as u64);
    }
    cap
}

/// Decode and check a manifest. Bounded: refuses input longer than a block
/// before parsing, and never allocates from a claimed count or length.
/// Never panics.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, ContentError> {
    if bytes.len() > BLOCK_DATA_LEN {
        return Err(ContentError::CorruptManifest(format!(
            "{} bytes; a manifest is at most {BLOCK_DATA_LEN}",
            bytes.len()
        )));
    }
    let mut reader = bytes;
    let wire: WireManifest = ciborium::de::from_reader_with_recursion_limit(&mut reader, 8)
        .map_err(|e| ContentError::CorruptManifest(e.to_string()))?;
    if !reader.is_empty() {
        return Err(ContentError::CorruptManifest(format!(
            "{} trailing bytes",
            reader.len()
        )));
    }
    if wire.v != u64::from(MANIFEST_VERSION) {
        return Err(ContentError::UnsupportedVersion(wire.v));
    }
    let depth = match u8::try_from(wire.depth) {
        Ok(d) if d <= MAX_DEPTH => d,
        _ => {
            return Err(ContentError::CorruptManifest(format!(
                "depth {} exceeds {MAX_DEPTH}",
                wire.depth
            )))
        }
    };
    if wire.length > MAX_FILE_LEN {
        return Err(ContentError::TooLarge {
            len: wire.length,
            max: MAX_FILE_LEN,
        });
    }
    if wire.entries.0.is_empty() {
        return Err(ContentError::CorruptManifest("no entries".into()));
    }
    let cap = entry_capacity(depth);
    let mut sum: u64 = 0;
    let mut entries = Vec::with_capacity(wire.entries.0.len());
    for (i, WireEntry(routing, decryption, length)) in wire.entries.0.into_iter().enumerate() {
        if length == 0 || length > cap {
            return Err(ContentError::CorruptManifest(format!(
                "entry {i} claims {length} bytes; a depth-{depth} entry holds 1..={cap}"
            )));
        }
        sum = sum
            .checked_add(length)
            .filter(|s| *s <= wire.length)
            .ok_or_else(|| {
                ContentError::CorruptManifest(format!(
                    "entries add up to more than the manifest's {} bytes",
                    wire.length
                ))
            })?;
        let mut dec = decryption.0;
        let chk = chk_from_parts(&routing.0, &dec);
        zeroize::Zeroize::zeroize(&mut dec);
        entries.push(ManifestEntry { chk, length });
    }
    if sum != wire.length {
        return Err(ContentError::CorruptManifest(format!(
            "entries add up to {sum} bytes, the manifest says {}",
            wire.length
        )));
    }
    Ok(Manifest {
        length: wire.length,
        sha256: wire.sha256.map(|b| b.0),
        depth,
        entries,
    })
}

// ---------------------------------------------------------------------------
// Splitting

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
    Chk::encode_kind(kind, data).map_err(|e| ContentError::CorruptManifest(e.to_string()))
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

// ---------------------------------------------------------------------------
// Fetching

/// Fetch, verify and reassemble the file named by `uri`, with at most
/// `concurrency` calls to `fetch_block` in flight at once.
pub async fn fetch<F, Fut, E>(
    uri: &Chk,
    concurrency: usize,
    fetch_block: F,
) -> Result<Vec<u8>, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
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
    E: fmt::Display + Send + 'static,
{
    let opts = FetchOptions {
        concurrency,
        max_len: MAX_FILE_LEN,
    };
    let mut out = Vec::new();
    fetch_to_writer(uri, &opts, fetch_block, &mut out, on_progress).await?;
    Ok(out)
}

/// Fetch the file named by `uri` and write it, in order, to `writer`.
/// Returns the file's length.
///
/// The file is written as it arrives, before its whole-file SHA-256 can be
/// checked: on any error, discard what was written. Memory stays bounded by
/// the manifests (about 72 bytes per 32 KiB of file) plus a window of
/// `4 * concurrency` blocks, whatever the file's size.
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
    E: fmt::Display + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let concurrency = opts.concurrency.max(1);
    let max_len = opts.max_len.min(MAX_FILE_LEN);
    let mut progress = Progress {
        blocks_done: 0,
        blocks_known: 1,
        bytes_done: 0,
        bytes_total: 0,
    };

    let root_block = fetch_block(uri.routing)
        .await
        .map_err(|e| unavailable(&uri.routing, e))?;
    let (kind, root_data) = uri
        .decode_any(&root_block)
        .map_err(|e| bad_block(&uri.routing, e))?;
    progress.blocks_done = 1;

    if kind == BlockKind::Data {
        let len = root_data.len() as u64;
        if len > max_len {
            return Err(ContentError::TooLarge { len, max: max_len });
        }
        writer.write_all(&root_data).await?;
        writer.flush().await?;
        progress.bytes_done = len;
        progress.bytes_total = len;
        on_progress(progress);
        return Ok(len);
    }

    let root = decode_manifest(&root_data)?;
    let Some(expected_hash) = root.sha256 else {
        return Err(ContentError::CorruptManifest(
            "root manifest has no file hash".into(),
        ));
    };
    if root.length > max_len {
        return Err(ContentError::TooLarge {
            len: root.length,
            max: max_len,
        });
    }
    progress.bytes_total = root.length;
    progress.blocks_known += root.entries.len() as u64;
    on_progress(progress);

    // Walk down the tree a level at a time; each level's entries stay in
    // file order.
    let mut level = root.entries;
    let mut depth = root.depth;
    while depth > 0 {
        let child_depth = depth - 1;
        let mut next = Vec::new();
        let mut fetcher = Ordered::new(
            &level,
            BlockKind::Manifest,
            concurrency,
            fetch_block.clone(),
        );
        let mut index = 0;
        while let Some(bytes) = fetcher.next().await? {
            let entry = &level[index];
            index += 1;
            let child = decode_manifest(&bytes)?;
            if child.depth != child_depth {
                return Err(ContentError::CorruptManifest(format!(
                    "child manifest {} has depth {}, its parent says {child_depth}",
                    entry.chk.routing, child.depth
                )));
            }
            if child.sha256.is_some() {
                return Err(ContentError::CorruptManifest(format!(
                    "child manifest {} carries a file hash",
                    entry.chk.routing
                )));
            }
            if child.length != entry.length {
                return Err(ContentError::LengthMismatch {
                    expected: entry.length,
                    actual: child.length,
                });
            }
            progress.blocks_done += 1;
            progress.blocks_known += child.entries.len() as u64;
            on_progress(progress);
            next.extend(child.entries);
        }
        level = next;
        depth = child_depth;
    }

    let mut hasher = Sha256::new();
    let mut fetcher = Ordered::new(&level, BlockKind::Data, concurrency, fetch_block);
    while let Some(bytes) = fetcher.next().await? {
        hasher.update(&bytes);
        writer.write_all(&bytes).await?;
        progress.blocks_done += 1;
        progress.bytes_done += bytes.len() as u64;
        on_progress(progress);
    }
    writer.flush().await?;

    if progress.bytes_done != root.length {
        return Err(ContentError::LengthMismatch {
            expected: root.length,
            actual: progress.bytes_done,
        });
    }
    let actual_hash: [u8; 32] = hasher.finalize().into();
    if actual_hash != expected_hash {
        return Err(ContentError::HashMismatch);
    }
    Ok(root.length)
}

fn unavailable(key: &RoutingKey, reason: impl fmt::Display) -> ContentError {
    ContentError::BlockUnavailable {
        key: key.to_base64(),
        reason: reason.to_string(),
    }
}

fn bad_block(key: &RoutingKey, source: KeyError) -> ContentError {
    ContentError::BadBlock {
        key: key.to_base64(),
        source,
    }
}

/// Fetch one block, verify and open it, and check its kind and (for data)
/// its length against what the parent says.
async fn fetch_one<F, Fut, E>(
    fetch_block: F,
    chk: Chk,
    expected_kind: BlockKind,
    expected_len: u64,
) -> Result<Vec<u8>, ContentError>
where
    F: Fn(RoutingKey) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
    E: fmt::Display,
{
    let key = chk.routing;
    let block = fetch_block(key).await.map_err(|e| unavailable(&key, e))?;
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

type TaskResult = (usize, Result<Vec<u8>, ContentError>);

/// Fetches a list of blocks with at most `concurrency` in flight, handing
/// them back in list order. Runs at most `WINDOW_FACTOR * concurrency` ahead
/// of the next block to hand back, so the reorder buffer stays bounded.
/// Dropping it aborts whatever is still in flight.
struct Ordered<'a, F> {
    items: &'a [ManifestEntry],
    kind: BlockKind,
    concurrency: usize,
    window: usize,
    fetch_block: F,
    tasks: JoinSet<TaskResult>,
    ready: BTreeMap<usize, Vec<u8>>,
    next_spawn: usize,
    next_out: usize,
}

impl<'a, F, Fut, E> Ordered<'a, F>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn new(
        items: &'a [ManifestEntry],
        kind: BlockKind,
        concurrency: usize,
        fetch_block: F,
    ) -> Self {
        Ordered {
            items,
            kind,
            concurrency,
            window: concurrency.saturating_mul(WINDOW_FACTOR),
            fetch_block,
            tasks: JoinSet::new(),
            ready: BTreeMap::new(),
            next_spawn: 0,
            next_out: 0,
        }
    }

    /// The next block's plaintext in list order, or `None` when all are done.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ContentError> {
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
                let job = fetch_one(
                    self.fetch_block.clone(),
                    entry.chk.clone(),
                    self.kind,
                    entry.length,
                );
                self.tasks.spawn(async move { (i, job.await) });
                self.next_spawn += 1;
            }
            match self.tasks.join_next().await {
                Some(Ok((i, result))) => {
                    self.ready.insert(i, result?);
                }
                Some(Err(e)) => return Err(ContentError::TaskFailed(e.to_string())),
                None => {
                    // Unreachable: the block at next_out is always spawned
                    // before we wait (next_out < next_spawn or the loop
                    // above just spawned it).
                    return Err(ContentError::TaskFailed(
                        "no block in flight while blocks remain".into(),
                    ));
                }
            }
        }
    }
}
