//! Where the cache's blocks live: a flat file of fixed slots and a small
//! file of one metadata record per slot (see `store/cache.rs` for what is
//! kept in memory, and docs/operations.md for the format).
//!
//! # Format
//!
//! - `<name>.slots`: slot `i` holds the first [`HEAD_LEN`] (32,768) bytes of
//!   its block at offset `i * HEAD_LEN`, so every write covers whole,
//!   aligned pages and the kernel never reads a page back to merge it.
//! - `<name>.slots-meta`: a [`HEADER_LEN`]-byte header (magic, format
//!   version, head length, slot count) and then one [`RECORD_LEN`]-byte
//!   record per slot at `HEADER_LEN + i * RECORD_LEN`: the block's routing
//!   key (32 bytes), its bytes past [`HEAD_LEN`] (up to [`TAIL_LEN`],
//!   zero-padded), the sequence number of its put (6 bytes, little-endian),
//!   the block's length (2 bytes, little-endian: a signed block is much
//!   shorter than a slot) and the first 4 bytes of the SHA-256 of those 60
//!   bytes. A record whose check fails (all zeros: never
//!   written) marks a free slot.
//!
//! Nothing is ever fsynced: a crash may lose cached blocks or leave a slot
//! whose record names a key its data does not hash to, and every read
//! checks the block against its key, so such a slot is found, freed and
//! never served.
//!
//! A datastore on a [`StoreSource::Backend`](super::StoreSource) (tests)
//! keeps its cache in memory instead, with the same behaviour.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::keys::BLOCK_LEN;

/// Bytes of a block kept in its slot of the data file.
pub(super) const HEAD_LEN: usize = 32 * 1024;
/// Bytes of a block kept in its metadata record.
pub(super) const TAIL_LEN: usize = BLOCK_LEN - HEAD_LEN;
/// Bytes of one metadata record.
pub(super) const RECORD_LEN: usize = 64;
/// Bytes of the metadata file's header.
pub(super) const HEADER_LEN: usize = 64;
/// Records read at once when the index is rebuilt (256 KiB).
pub(super) const RECORDS_PER_READ: usize = 4096;
/// How far past a write the data file's disk blocks are allocated.
const RESERVE_AHEAD: u64 = 8 << 20;

const MAGIC: &[u8; 16] = b"veil cache slots";
const FORMAT: u32 = 1;
const CHECK_LEN: usize = 4;
const CHECKED_LEN: usize = RECORD_LEN - CHECK_LEN;

/// One slot's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub key: [u8; 32],
    pub tail: [u8; TAIL_LEN],
    /// Kept to [`SEQ_BITS`] bits on disk.
    pub seq: u64,
    /// The block's length in bytes, at most [`BLOCK_LEN`].
    pub len: u16,
}

/// Bits of a put's sequence number a record keeps: at a million puts a
/// second, nine years.
const SEQ_BITS: u32 = 48;
const SEQ_AT: usize = 32 + TAIL_LEN;
const LEN_AT: usize = SEQ_AT + SEQ_BITS as usize / 8;
const _: () = assert!(LEN_AT + 2 == CHECKED_LEN && BLOCK_LEN <= u16::MAX as usize);

fn check(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::digest(bytes);
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

impl Record {
    pub(super) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[..32].copy_from_slice(&self.key);
        out[32..32 + TAIL_LEN].copy_from_slice(&self.tail);
        out[SEQ_AT..LEN_AT].copy_from_slice(&self.seq.to_le_bytes()[..LEN_AT - SEQ_AT]);
        out[LEN_AT..CHECKED_LEN].copy_from_slice(&self.len.to_le_bytes());
        let sum = check(&out[..CHECKED_LEN]);
        out[CHECKED_LEN..].copy_from_slice(&sum);
        out
    }

    /// The record in `bytes`, if its check holds.
    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        let bytes: &[u8; RECORD_LEN] = bytes.try_into().ok()?;
        if check(&bytes[..CHECKED_LEN]) != bytes[CHECKED_LEN..] {
            return None;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let mut tail = [0u8; TAIL_LEN];
        tail.copy_from_slice(&bytes[32..32 + TAIL_LEN]);
        let mut seq = [0u8; 8];
        seq[..LEN_AT - SEQ_AT].copy_from_slice(&bytes[SEQ_AT..LEN_AT]);
        let len = u16::from_le_bytes([bytes[LEN_AT], bytes[LEN_AT + 1]]);
        if usize::from(len) > BLOCK_LEN {
            return None;
        }
        Some(Record {
            key,
            tail,
            seq: u64::from_le_bytes(seq),
            len,
        })
    }
}

fn header(slots: u32) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..16].copy_from_slice(MAGIC);
    out[16..20].copy_from_slice(&FORMAT.to_le_bytes());
    out[20..24].copy_from_slice(&(HEAD_LEN as u32).to_le_bytes());
    out[24..28].copy_from_slice(&slots.to_le_bytes());
    out
}

/// The slot count a header names, if it is one this build wrote.
fn header_slots(bytes: &[u8; HEADER_LEN]) -> Option<u32> {
    let word = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(w)
    };
    let ours = &bytes[..16] == MAGIC && word(16) == FORMAT && word(20) == HEAD_LEN as u32;
    ours.then(|| word(24))
}

/// The two files of a cache, or memory.
pub(super) enum Slots {
    Files {
        data: File,
        meta: File,
        data_path: PathBuf,
        /// Disk blocks of `data` are allocated up to here.
        reserved: AtomicU64,
        /// `data`'s length: `slots * HEAD_LEN`.
        len: u64,
    },
    Memory {
        data: Mutex<HashMap<u32, Box<[u8]>>>,
        meta: Mutex<HashMap<u32, [u8; RECORD_LEN]>>,
    },
}

/// The files of the cache kept beside the redb file `db`.
pub(super) fn paths(db: &Path) -> (PathBuf, PathBuf) {
    (db.with_extension("slots"), db.with_extension("slots-meta"))
}

fn offset(slot: u32, len: usize) -> u64 {
    u64::from(slot) * len as u64
}

impl Slots {
    pub(super) fn memory() -> Slots {
        Slots::Memory {
            data: Mutex::default(),
            meta: Mutex::default(),
        }
    }

    /// Open (or create) the files beside the redb file `db` for `slots`
    /// slots. Returns the files and how many slots of the old layout to
    /// read records from (0 for new or foreign files, which are cleared).
    /// The files are resized to `slots` (a smaller count cuts the slots
    /// past it off); the data file stays sparse until slots are written.
    pub(super) fn open(db: &Path, slots: u32) -> std::io::Result<(Slots, u32)> {
        let (data_path, meta_path) = paths(db);
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
        };
        let (data, meta) = (open(&data_path)?, open(&meta_path)?);
        let mut head = [0u8; HEADER_LEN];
        let old = match meta.read_exact_at(&mut head, 0) {
            Ok(()) => header_slots(&head),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(e),
        };
        let keep = match old {
            Some(old) => old.min(slots),
            None => {
                // New or not ours: start empty.
                meta.set_len(0)?;
                data.set_len(0)?;
                0
            }
        };
        if old != Some(slots) {
            meta.set_len((HEADER_LEN + slots as usize * RECORD_LEN) as u64)?;
            data.set_len(offset(slots, HEAD_LEN))?;
            meta.write_all_at(&header(slots), 0)?;
        }
        let files = Slots::Files {
            data,
            meta,
            data_path,
            reserved: AtomicU64::new(0),
            len: offset(slots, HEAD_LEN),
        };
        Ok((files, keep))
    }

    /// Where this cache lives, for logs.
    pub(super) fn name(&self) -> String {
        match self {
            Slots::Files { data_path, .. } => data_path.display().to_string(),
            Slots::Memory { .. } => "memory".into(),
        }
    }

    /// Read the records of slots `from..from + out.len() / RECORD_LEN`.
    pub(super) fn read_records(&self, from: u32, out: &mut [u8]) -> std::io::Result<()> {
        match self {
            Slots::Files { meta, .. } => {
                meta.read_exact_at(out, HEADER_LEN as u64 + offset(from, RECORD_LEN))
            }
            Slots::Memory { meta, .. } => {
                let meta = meta.lock().unwrap_or_else(|e| e.into_inner());
                for (i, chunk) in out.chunks_exact_mut(RECORD_LEN).enumerate() {
                    let slot = from.saturating_add(i as u32);
                    match meta.get(&slot) {
                        Some(r) => chunk.copy_from_slice(r),
                        None => chunk.fill(0),
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn write_record(&self, slot: u32, record: &[u8; RECORD_LEN]) -> std::io::Result<()> {
        match self {
            Slots::Files { meta, .. } => {
                meta.write_all_at(record, HEADER_LEN as u64 + offset(slot, RECORD_LEN))
            }
            Slots::Memory { meta, .. } => {
                let mut meta = meta.lock().unwrap_or_else(|e| e.into_inner());
                meta.insert(slot, *record);
                Ok(())
            }
        }
    }

    /// Write a block's head into `slot`.
    pub(super) fn write_head(&self, slot: u32, head: &[u8]) -> std::io::Result<()> {
        match self {
            Slots::Files {
                data,
                reserved,
                len,
                data_path,
                ..
            } => {
                let at = offset(slot, HEAD_LEN);
                let end = at.saturating_add(head.len() as u64);
                let from = reserved.load(Ordering::Relaxed);
                if end > from {
                    // Allocate ahead (best effort, never past the file's
                    // length, which the budget bounds), so the filesystem
                    // does not allocate on every write.
                    let to = end.saturating_add(RESERVE_AHEAD).min(*len);
                    if super::backend::allocate(data, at.max(from), to).is_err() {
                        tracing::debug!(path = %data_path.display(),
                            "datastore: cannot allocate the cache's slot file ahead");
                    }
                    reserved.fetch_max(to, Ordering::Relaxed);
                }
                data.write_all_at(head, at)
            }
            Slots::Memory { data, .. } => {
                let mut data = data.lock().unwrap_or_else(|e| e.into_inner());
                data.insert(slot, head.into());
                Ok(())
            }
        }
    }

    /// Read `slot`'s head into `out` ([`HEAD_LEN`] bytes).
    pub(super) fn read_head(&self, slot: u32, out: &mut [u8]) -> std::io::Result<()> {
        match self {
            Slots::Files { data, .. } => data.read_exact_at(out, offset(slot, HEAD_LEN)),
            Slots::Memory { data, .. } => {
                let data = data.lock().unwrap_or_else(|e| e.into_inner());
                match data.get(&slot) {
                    Some(head) if head.len() == out.len() => out.copy_from_slice(head),
                    _ => out.fill(0),
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_zeros_are_free() {
        let r = Record {
            key: [7; 32],
            tail: [9; TAIL_LEN],
            seq: 0x0304_0506_0708,
            len: BLOCK_LEN as u16,
        };
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r));
        let short = Record { len: 1200, ..r };
        assert_eq!(Record::decode(&short.encode()), Some(short));
        let too_long = Record {
            len: BLOCK_LEN as u16 + 1,
            ..r
        };
        assert_eq!(Record::decode(&too_long.encode()), None);
        assert_eq!(Record::decode(&[0u8; RECORD_LEN]), None);
        let mut bad = bytes;
        bad[40] ^= 1;
        assert_eq!(Record::decode(&bad), None);
        assert_eq!(header_slots(&header(12)), Some(12));
        assert_eq!(header_slots(&[0u8; HEADER_LEN]), None);
    }
}
