//! The manifest format: wire structs, encode/decode, and the capacity maths
//! that fixes [`MAX_FANOUT`].
//!
//! # Manifest format (versions 1, 2 and 3)
//!
//! A CBOR map with exactly these keys:
//!
//! | key       | value                                                       |
//! |-----------|-------------------------------------------------------------|
//! | `v`       | unsigned integer: 1 or 2 (older formats, read only) or 3 ([`MANIFEST_VERSION`], written) |
//! | `length`  | unsigned integer: bytes of the leaves under this manifest (version 1: file bytes; versions 2 and 3: file bytes plus check-block bytes) |
//! | `sha256`  | 32-byte string (the whole file's SHA-256) in the root; `null` in every child manifest |
//! | `depth`   | unsigned integer: 0 if the entries are leaf blocks, `d > 0` if they are manifests of depth `d - 1` |
//! | `entries` | array of `[routing key (32-byte string), decryption key (32-byte string), length (unsigned)]` |
//! | `fec`     | versions 2 and 3: `[file length, segment size, redundancy percent]` in the root, `null` in children |
//! | `checks`  | version 3 only: array of entries like `entries`, the Reed-Solomon check blocks over the child manifests (empty at depth 0); not counted in `length` |
//!
//! In version 2 the leaves, in tree order, are segment after segment: each
//! segment's data blocks in file order, then its Reed-Solomon check blocks
//! (see [`super::Layout`] for the segment sizes, which follow from the `fec`
//! triple alone).
//!
//! In version 3 a manifest of depth `d > 0` also lists check blocks over its
//! children: each child manifest's plaintext zero-padded to a block, coded
//! as one segment (see [`inner_split`] for how many children and checks),
//! so any `c` of its `c + m` entries rebuild its `c` children. A rebuilt
//! child is its padded plaintext cut where its CBOR ends
//! ([`encoded_len`]), sealed again and compared with its CHK.
//!
//! An encoded manifest must fit in one block. [`MAX_FANOUT`] is the largest
//! number of entries for which the worst-case encoding (every integer at its
//! widest) still does; it is computed from the CBOR sizes below, not guessed.
//!
//! Every manifest is checked when decoded ([`decode_manifest`]): input of at
//! most [`BLOCK_DATA_LEN`] bytes, known version, `depth <= MAX_DEPTH`,
//! `1..=MAX_FANOUT` entries (419 in version 1), every entry length non-zero
//! and within what a subtree of that depth can hold, entry lengths summing
//! exactly to `length`, and the file no longer than [`MAX_FILE_LEN`]. In
//! version 2 a root's `length` must be exactly what its `fec` layout stores.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::layout::{Fec, Layout, MAX_REDUNDANCY};
use super::{ContentError, ManifestError};
use crate::keys::{Chk, DecryptionKey, RoutingKey, BLOCK_DATA_LEN};

/// The manifest format version this module writes. Versions 1 (no erasure
/// coding) and 2 (check blocks over the leaves only) are still read.
pub const MANIFEST_VERSION: u8 = 3;

/// Check blocks over the leaves, none over the manifests.
pub const MANIFEST_VERSION_V2: u8 = 2;

/// The old format: a tree over the file's data blocks only.
pub const MANIFEST_VERSION_V1: u8 = 1;

/// The deepest manifest accepted: depth 0 lists leaf blocks, depth `d` lists
/// manifests of depth `d - 1`. At [`MAX_FANOUT`] entries a tree of depth 2
/// already covers more than [`MAX_FILE_LEN`]; the slack is for trees built
/// with a small fan-out ([`super::split_with`]), whose inner manifests in
/// version 3 may list as few as 2 children beside their check blocks.
pub const MAX_DEPTH: u8 = 8;

/// The largest file [`super::split`] builds and [`super::fetch`] accepts: 1 TiB.
pub const MAX_FILE_LEN: u64 = 1 << 40;

// Worst-case CBOR sizes of the parts of an encoded manifest. A CBOR head
// (major type + argument) is 1 byte for arguments < 24, then 2, 3, 5 or 9.
/// A 32-byte string: 2-byte head (0x58 0x20) + 32 bytes.
const CBOR_BYTES32: usize = 2 + 32;
/// Any `u64`: at most a 9-byte head.
const CBOR_U64_MAX: usize = 9;
/// Any `u16`: at most a 3-byte head.
const CBOR_U16_MAX: usize = 3;
/// Any `u8`: at most a 2-byte head.
const CBOR_U8_MAX: usize = 2;
/// A text-string key of `n` (< 24) bytes: 1-byte head + the text.
const fn cbor_key(n: usize) -> usize {
    1 + n
}
/// One entry: a 3-element array head (1 byte) + two keys + a length.
const ENTRY_MAX_LEN: usize = 1 + CBOR_BYTES32 + CBOR_BYTES32 + CBOR_U64_MAX;
/// Everything but the entries in version 1, at its widest: the 5-entry map
/// head, the five keys and their values, and the array head for up to
/// 65 535 entries (3 bytes).
const MANIFEST_OVERHEAD_V1: usize = 1
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
/// Version 2 adds `"fec": [u64, u8, u16]` (the map head stays one byte).
const MANIFEST_OVERHEAD_V2: usize =
    MANIFEST_OVERHEAD_V1 + cbor_key(3) + 1 + CBOR_U64_MAX + CBOR_U8_MAX + CBOR_U16_MAX;
/// Version 3 adds `"checks"` and its array head (entries and checks
/// together are at most the fan-out).
const MANIFEST_OVERHEAD_MAX: usize = MANIFEST_OVERHEAD_V2 + cbor_key(6) + 3;

/// The most entries (children and checks together) one version-3
/// manifest holds: as many as fit in one block in the worst case (418 with
/// 32 KiB blocks).
pub const MAX_FANOUT: usize = (BLOCK_DATA_LEN - MANIFEST_OVERHEAD_MAX) / ENTRY_MAX_LEN;

/// The most entries a version-2 manifest holds (418).
pub const MAX_FANOUT_V2: usize = (BLOCK_DATA_LEN - MANIFEST_OVERHEAD_V2) / ENTRY_MAX_LEN;

/// The most entries a version-1 manifest holds (419).
pub const MAX_FANOUT_V1: usize = (BLOCK_DATA_LEN - MANIFEST_OVERHEAD_V1) / ENTRY_MAX_LEN;

// The array head above is 3 bytes only while the count fits in a u16.
const _: () = assert!(
    MAX_FANOUT_V1 < 65_536
        && MAX_FANOUT >= 2
        && MAX_FANOUT <= MAX_FANOUT_V2
        && MAX_FANOUT_V2 <= MAX_FANOUT_V1
);

/// The fan-out a manifest of this version may have.
pub fn max_fanout(version: u8) -> usize {
    match version {
        MANIFEST_VERSION_V1 => MAX_FANOUT_V1,
        MANIFEST_VERSION_V2 => MAX_FANOUT_V2,
        _ => MAX_FANOUT,
    }
}

/// How a version-3 manifest of depth `> 0` with room for `fanout` entries
/// splits them at `redundancy` percent: `(c, m(c))`, the most children it
/// lists and the check blocks `c` children get. `c` is the largest count
/// with `c + ceil(c * redundancy / 100) <= fanout`, but at least 2 (so the
/// tree narrows); the checks are `ceil(c * redundancy / 100)`, cut to what
/// fits beside the children.
pub fn inner_split(fanout: usize, redundancy: u16) -> (usize, impl Fn(usize) -> usize) {
    let r = usize::from(redundancy);
    let want = move |c: usize| (c * r).div_ceil(100);
    let mut c = fanout;
    while c > 2 && c + want(c) > fanout {
        c -= 1;
    }
    (c, move |children: usize| {
        want(children).min(fanout.saturating_sub(children))
    })
}

/// One line of a manifest: a child block and how many bytes lie under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    pub chk: Chk,
    pub length: u64,
}

/// A decoded manifest. See the module docs for the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`] (2) or [`MANIFEST_VERSION_V1`] (1).
    pub version: u8,
    /// Bytes of blocks under this manifest (version 1: file bytes).
    pub length: u64,
    /// SHA-256 of the whole file: `Some` in the root, `None` in children.
    pub sha256: Option<[u8; 32]>,
    /// 0: entries are leaf blocks; `d > 0`: entries are manifests of depth `d - 1`.
    pub depth: u8,
    pub entries: Vec<ManifestEntry>,
    /// Versions 2 and 3 roots: the file's length and erasure coding. `None`
    /// in children and in version 1.
    pub fec: Option<Fec>,
    /// Version 3: check blocks over the child manifests (each
    /// [`BLOCK_DATA_LEN`] bytes; empty at depth 0 and before version 3).
    pub checks: Vec<ManifestEntry>,
}

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

/// The entry array, refusing more than [`MAX_FANOUT_V1`] entries while
/// parsing and never reserving more than that.
#[derive(Default)]
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
                write!(f, "an array of at most {MAX_FANOUT_V1} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireEntries, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > MAX_FANOUT_V1 {
                    return Err(serde::de::Error::invalid_length(hint, &self));
                }
                let mut out = Vec::with_capacity(hint);
                while let Some(entry) = seq.next_element::<WireEntry>()? {
                    if out.len() == MAX_FANOUT_V1 {
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

/// `[file length, segment size, redundancy percent]`.
#[derive(Serialize, Deserialize)]
struct WireFec(u64, u64, u64);

/// Version 1 has no `fec` key at all; version 2 always writes it (`null`
/// in children). Reading, an absent key is `null`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireManifest {
    v: u64,
    length: u64,
    sha256: Option<Bytes32>,
    depth: u64,
    entries: WireEntries,
    #[serde(default, skip_serializing_if = "Skip::skip")]
    fec: Skip<Option<WireFec>>,
    #[serde(default, skip_serializing_if = "Skip::skip")]
    checks: Skip<Option<WireEntries>>,
}

/// A field that an older version leaves out and a newer one writes.
#[derive(Serialize, Deserialize, Default)]
#[serde(transparent)]
struct Skip<T> {
    value: T,
    #[serde(skip)]
    omit: bool,
}

impl<T> Skip<T> {
    fn skip(&self) -> bool {
        self.omit
    }
}

/// Rebuild a CHK from its two halves.
fn chk_from_parts(routing: &[u8; 32], decryption: &[u8; 32]) -> Chk {
    Chk {
        routing: RoutingKey(*routing),
        decryption: DecryptionKey::from_bytes(*decryption),
    }
}

fn wire_entries(entries: &[ManifestEntry]) -> WireEntries {
    WireEntries(
        entries
            .iter()
            .map(|e| {
                WireEntry(
                    Bytes32(e.chk.routing.0),
                    Bytes32(*e.chk.decryption.as_bytes()),
                    e.length,
                )
            })
            .collect(),
    )
}

/// Encode a manifest as CBOR, in its `version`'s format (the `fec` key is
/// written from version 2, `checks` in version 3 only). The result fits in
/// one block whenever the manifest has at most [`max_fanout`] entries and
/// checks together for its version.
pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let v1 = m.version == MANIFEST_VERSION_V1;
    let v3 = m.version >= MANIFEST_VERSION;
    let wire = WireManifest {
        v: u64::from(m.version),
        length: m.length,
        sha256: m.sha256.map(Bytes32),
        depth: u64::from(m.depth),
        entries: wire_entries(&m.entries),
        fec: Skip {
            value: m
                .fec
                .map(|f| WireFec(f.file_length, u64::from(f.segment), u64::from(f.redundancy))),
            omit: v1,
        },
        checks: Skip {
            value: Some(wire_entries(&m.checks)),
            omit: !v3,
        },
    };
    let mut out = Vec::with_capacity(MANIFEST_OVERHEAD_MAX + m.entries.len() * ENTRY_MAX_LEN);
    // Writing into a Vec cannot fail, and every field serializes.
    if let Err(e) = ciborium::ser::into_writer(&wire, &mut out) {
        unreachable!("encoding a manifest into memory failed: {e}");
    }
    let mut wire = wire;
    let checks = wire.checks.value.iter_mut().flat_map(|c| c.0.iter_mut());
    for e in wire.entries.0.iter_mut().chain(checks) {
        zeroize::Zeroize::zeroize(&mut e.1 .0);
    }
    out
}

/// Where the manifest at the start of `padded` ends: a child rebuilt from
/// check blocks is its plaintext zero-padded to a block. `None` if no
/// manifest map starts there.
pub(super) fn encoded_len(padded: &[u8]) -> Option<usize> {
    let mut reader = padded;
    let _: WireManifest = ciborium::de::from_reader_with_recursion_limit(&mut reader, 8).ok()?;
    Some(padded.len() - reader.len())
}

/// Check and convert a list of wire entries (children or checks).
fn entries_of(wire: WireEntries) -> Vec<ManifestEntry> {
    wire.0
        .into_iter()
        .map(|WireEntry(routing, decryption, length)| {
            let mut dec = decryption.0;
            let chk = chk_from_parts(&routing.0, &dec);
            zeroize::Zeroize::zeroize(&mut dec);
            ManifestEntry { chk, length }
        })
        .collect()
}

/// The most bytes one entry of a manifest at `depth` can stand for: a leaf
/// block at depth 0, a full subtree of depth `depth - 1` otherwise.
pub(super) fn entry_capacity(depth: u8, fanout: usize) -> u64 {
    let mut cap = BLOCK_DATA_LEN as u64;
    for _ in 0..depth {
        cap = cap.saturating_mul(fanout as u64);
    }
    cap
}

/// Decode and check a manifest. Bounded: refuses input longer than a block
/// before parsing, and never allocates from a claimed count or length.
/// Never panics.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, ContentError> {
    if bytes.len() > BLOCK_DATA_LEN {
        return Err(ManifestError::TooLong(bytes.len()).into());
    }
    let mut reader = bytes;
    let wire: WireManifest = ciborium::de::from_reader_with_recursion_limit(&mut reader, 8)
        .map_err(ManifestError::Cbor)?;
    if !reader.is_empty() {
        return Err(ManifestError::TrailingBytes(reader.len()).into());
    }
    let version = match wire.v {
        1 => MANIFEST_VERSION_V1,
        2 => MANIFEST_VERSION_V2,
        3 => MANIFEST_VERSION,
        v => return Err(ContentError::UnsupportedVersion(v)),
    };
    let checks = match (version, wire.checks.value) {
        (MANIFEST_VERSION, Some(c)) => c,
        (MANIFEST_VERSION, None) => WireEntries::default(),
        (_, None) => WireEntries::default(),
        (_, Some(_)) => return Err(ManifestError::ChecksBeforeV3.into()),
    };
    let depth = match u8::try_from(wire.depth) {
        Ok(d) if d <= MAX_DEPTH => d,
        _ => return Err(ManifestError::TooDeep(wire.depth).into()),
    };
    let fec = match (version, wire.fec.value) {
        (_, None) => None,
        (MANIFEST_VERSION_V1, Some(_)) => return Err(ManifestError::FecInV1.into()),
        (_, Some(WireFec(file_length, segment, redundancy))) => {
            Some(Fec::checked(file_length, segment, redundancy)?)
        }
    };
    if wire.sha256.is_some() != fec.is_some() && version != MANIFEST_VERSION_V1 {
        return Err(ManifestError::HashWithoutFec.into());
    }
    // The file this manifest claims: version 1 says it in `length`.
    let file_length = fec.map_or(wire.length, |f| f.file_length);
    if file_length > MAX_FILE_LEN {
        return Err(ContentError::TooLarge {
            len: file_length,
            max: MAX_FILE_LEN,
        });
    }
    if let Some(f) = fec {
        let stored = Layout::new(f).stored_len();
        if wire.length != stored {
            return Err(ManifestError::StoredLength {
                length: wire.length,
                stored,
            }
            .into());
        }
    } else if version != MANIFEST_VERSION_V1 && wire.length > Layout::MAX_STORED_LEN {
        return Err(ContentError::TooLarge {
            len: wire.length,
            max: Layout::MAX_STORED_LEN,
        });
    }
    let fanout = max_fanout(version);
    if wire.entries.0.is_empty() {
        return Err(ManifestError::NoEntries.into());
    }
    let listed = wire.entries.0.len() + checks.0.len();
    if listed > fanout {
        return Err(ManifestError::TooManyEntries(listed).into());
    }
    // Checks only over manifests, at most MAX_REDUNDANCY percent of them,
    // each a full block.
    let most_checks = wire.entries.0.len() * usize::from(MAX_REDUNDANCY) / 100;
    if (!checks.0.is_empty() && depth == 0) || checks.0.len() > most_checks {
        return Err(ManifestError::BadChecks(checks.0.len()).into());
    }
    if checks.0.iter().any(|c| c.2 != BLOCK_DATA_LEN as u64) {
        return Err(ManifestError::BadChecks(checks.0.len()).into());
    }
    let cap = entry_capacity(depth, fanout);
    let mut sum: u64 = 0;
    let mut entries = Vec::with_capacity(wire.entries.0.len());
    for (index, WireEntry(routing, decryption, length)) in wire.entries.0.into_iter().enumerate() {
        if length == 0 || length > cap {
            return Err(ManifestError::EntryLength {
                index,
                length,
                depth,
                cap,
            }
            .into());
        }
        sum = sum
            .checked_add(length)
            .filter(|s| *s <= wire.length)
            .ok_or(ManifestError::EntriesExceed {
                length: wire.length,
            })?;
        let mut dec = decryption.0;
        let chk = chk_from_parts(&routing.0, &dec);
        zeroize::Zeroize::zeroize(&mut dec);
        entries.push(ManifestEntry { chk, length });
    }
    if sum != wire.length {
        return Err(ManifestError::EntriesSum {
            sum,
            length: wire.length,
        }
        .into());
    }
    Ok(Manifest {
        version,
        length: wire.length,
        sha256: wire.sha256.map(|b| b.0),
        depth,
        entries,
        fec,
        checks: entries_of(checks),
    })
}
