//! The cache part of the datastore: blocks that merely passed through, in
//! a flat file of fixed slots (`store/slots.rs`), as Freenet keeps its
//! datastore, instead of a B-tree.
//!
//! # In memory
//!
//! An index maps each cached key to its slot and orders the slots by
//! recency (a sequence number per slot; eviction takes the smallest). A hit
//! refreshes the slot's number in memory only: it writes nothing. The index
//! costs about 150 bytes per slot in use (the slot's key, tail and numbers,
//! a hash map entry and an ordered-set entry): a 64 MiB cache, 2046 slots,
//! about 0.3 MiB.
//!
//! # Puts
//!
//! A put of a key not held takes a free slot, or the least recently used
//! one (its key leaves the index first, so nobody can find it while it is
//! overwritten), writes the block's head into the slot and then the slot's
//! record (plain positioned writes, no fsync), and only then enters the
//! key in the index. A put of a key already held only refreshes it. A write
//! that fails (a full disk, an I/O error) leaves the slot free: the block
//! is simply not cached, the failure is counted, and the store part never
//! notices.
//!
//! # Reads and damage
//!
//! A read takes the slot's head from the file and the tail from memory and
//! checks the block against its key. A block that does not verify is
//! damage (a crash between a put's two writes, a failing disk): the slot is
//! freed, its record cleared, the damage counted, and the lookup misses. A
//! read that raced with a put reusing the slot (the slot's generation
//! changed meanwhile) is a plain miss.
//!
//! # Reopening
//!
//! The index is rebuilt from the records alone (64 bytes a slot, read 256
//! KiB at a time; no block data is read). Recency after a reopen is the
//! order of the puts: hits were never written. Two records naming one key
//! (possible after a crash) keep the newer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::slots::{Record, Slots, HEAD_LEN, RECORDS_PER_READ, RECORD_LEN, TAIL_LEN};
use super::tables::check_block;
use crate::keys::{Block, RoutingKey};

/// About what the index costs per slot in use (bytes): the [`Entry`]
/// (80), a hash map entry (about 40) and an ordered-set entry (about 20).
pub const CACHE_INDEX_BYTES_PER_BLOCK: u64 = 150;

/// What a slot in use holds.
#[derive(Clone, Copy)]
struct Entry {
    key: [u8; 32],
    tail: [u8; TAIL_LEN],
    /// Recency: larger is newer.
    seq: u64,
    /// The block's length (a signed block is shorter than a slot).
    len: u16,
    /// Changes whenever the slot is given to another block.
    gen: u64,
}

#[derive(Default)]
struct Index {
    /// Per slot, what it holds; grows as slots are first used.
    slots: Vec<Option<Entry>>,
    keys: HashMap<[u8; 32], u32>,
    /// `(seq, slot)` of every slot in use, oldest first.
    lru: BTreeSet<(u64, u32)>,
    /// Slots below `slots.len()` that hold nothing.
    free: Vec<u32>,
    next_seq: u64,
    next_gen: u64,
}

impl Index {
    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = s.saturating_add(1);
        s
    }

    fn touch(&mut self, slot: u32) {
        let seq = self.seq();
        if let Some(Some(e)) = self.slots.get_mut(slot as usize) {
            self.lru.remove(&(e.seq, slot));
            e.seq = seq;
            self.lru.insert((seq, slot));
        }
    }

    /// Empty `slot` (it stays out of the free list: the caller decides).
    fn clear(&mut self, slot: u32) -> Option<Entry> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        self.keys.remove(&entry.key);
        self.lru.remove(&(entry.seq, slot));
        Some(entry)
    }

    /// A slot to write a new block into: a free one, a never used one, or
    /// the least recently used (evicted now).
    fn take(&mut self, capacity: u32) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        if (self.slots.len() as u64) < u64::from(capacity) {
            self.slots.push(None);
            return u32::try_from(self.slots.len() - 1).ok();
        }
        let &(_, slot) = self.lru.first()?;
        let evicted = self.clear(slot)?;
        tracing::trace!(key = %RoutingKey(evicted.key), "datastore: evicted from the cache");
        Some(slot)
    }

    fn fill(&mut self, slot: u32, entry: Entry) {
        let at = slot as usize;
        if self.slots.len() <= at {
            self.slots.resize(at + 1, None);
        }
        self.keys.insert(entry.key, slot);
        self.lru.insert((entry.seq, slot));
        self.slots[at] = Some(entry);
    }
}

/// A block's bytes as its slot keeps them: the head (all of a block no
/// longer than [`HEAD_LEN`]), the rest zero-padded to [`TAIL_LEN`], and the
/// length.
fn parts(bytes: &[u8]) -> std::io::Result<(&[u8], [u8; TAIL_LEN], u16)> {
    let (head, rest) = bytes.split_at(bytes.len().min(HEAD_LEN));
    let too_long = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "block too long");
    let len = u16::try_from(bytes.len()).map_err(|_| too_long())?;
    let mut tail = [0u8; TAIL_LEN];
    tail.get_mut(..rest.len())
        .ok_or_else(too_long)?
        .copy_from_slice(rest);
    Ok((head, tail, len))
}

/// Counters `veil status` may show.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct CacheStats {
    /// Blocks not cached because writing them failed.
    pub write_errors: u64,
    /// Slots found damaged (not matching their key) and freed.
    pub damaged: u64,
}

/// How a test-made torn put stops ([`SlotCache::put_torn`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Torn {
    /// The block's head is written, its record is not.
    DataOnly,
    /// The record is written, the head is not.
    RecordOnly,
}

/// The cache part. See the module documentation.
pub(super) struct SlotCache {
    slots: Slots,
    capacity: u32,
    index: Mutex<Index>,
    /// Serialises puts.
    write: Mutex<()>,
    write_errors: AtomicU64,
    damaged: AtomicU64,
    /// Test hook: every write fails.
    fail_writes: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent between statements that could
    // panic, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SlotCache {
    /// A cache of `capacity` slots on `slots`, its index rebuilt from the
    /// first `keep` records.
    pub(super) fn new(slots: Slots, capacity: u32, keep: u32) -> std::io::Result<SlotCache> {
        let cache = SlotCache {
            slots,
            capacity,
            index: Mutex::default(),
            write: Mutex::new(()),
            write_errors: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            fail_writes: AtomicBool::new(false),
        };
        cache.rebuild(keep.min(capacity))?;
        Ok(cache)
    }

    fn rebuild(&self, keep: u32) -> std::io::Result<()> {
        let mut index = Index::default();
        let mut buf = vec![0u8; RECORDS_PER_READ * RECORD_LEN];
        let mut from = 0u32;
        while from < keep {
            let n = (keep - from).min(RECORDS_PER_READ as u32);
            let bytes = &mut buf[..n as usize * RECORD_LEN];
            self.slots.read_records(from, bytes)?;
            for (i, raw) in bytes.chunks_exact(RECORD_LEN).enumerate() {
                let slot = from + i as u32;
                let Some(r) = Record::decode(raw) else {
                    continue;
                };
                if let Some(&other) = index.keys.get(&r.key) {
                    let older = index.slots[other as usize].is_some_and(|e| e.seq < r.seq);
                    if !older {
                        continue;
                    }
                    index.clear(other);
                }
                index.next_seq = index.next_seq.max(r.seq.saturating_add(1));
                let gen = index.next_gen;
                index.next_gen += 1;
                let entry = Entry {
                    key: r.key,
                    tail: r.tail,
                    seq: r.seq,
                    len: r.len,
                    gen,
                };
                index.fill(slot, entry);
            }
            from += n;
        }
        index.free = (0..index.slots.len() as u32)
            .filter(|&s| index.slots[s as usize].is_none())
            .rev()
            .collect();
        *lock(&self.index) = index;
        Ok(())
    }

    pub(super) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Blocks held.
    pub(super) fn len(&self) -> u64 {
        lock(&self.index).keys.len() as u64
    }

    pub(super) fn holds(&self, key: &RoutingKey) -> bool {
        lock(&self.index).keys.contains_key(&key.0)
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            write_errors: self.write_errors.load(Ordering::Relaxed),
            damaged: self.damaged.load(Ordering::Relaxed),
        }
    }

    /// Keep `block`. An error means it is not cached (and was counted).
    pub(super) fn put(&self, block: &Block) -> std::io::Result<()> {
        let key = block.routing_key();
        // Split before a slot is taken: a block that cannot be kept must
        // not cost another block its slot.
        let (head, tail, len) = parts(block.as_bytes())?;
        let _write = lock(&self.write);
        let (slot, seq, gen) = {
            let mut index = lock(&self.index);
            if let Some(&slot) = index.keys.get(&key.0) {
                index.touch(slot);
                return Ok(());
            }
            let Some(slot) = index.take(self.capacity) else {
                return Ok(());
            };
            let gen = index.next_gen;
            index.next_gen += 1;
            (slot, index.seq(), gen)
        };
        let record = Record {
            key: key.0,
            tail,
            seq,
            len,
        };
        let written = self
            .check_writable()
            .and_then(|()| self.slots.write_head(slot, head))
            .and_then(|()| self.slots.write_record(slot, &record.encode()));
        let mut index = lock(&self.index);
        match written {
            Ok(()) => {
                let entry = Entry {
                    key: key.0,
                    tail,
                    seq,
                    len,
                    gen,
                };
                index.fill(slot, entry);
                Ok(())
            }
            Err(e) => {
                index.free.push(slot);
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn check_writable(&self) -> std::io::Result<()> {
        match self.fail_writes.load(Ordering::Relaxed) {
            true => Err(super::backend::no_space()),
            false => Ok(()),
        }
    }

    /// The block cached under `key`, refreshing its recency; damage is
    /// freed, counted and missed.
    pub(super) fn get(&self, key: &RoutingKey) -> Option<Block> {
        let (slot, entry) = {
            let mut index = lock(&self.index);
            let slot = *index.keys.get(&key.0)?;
            index.touch(slot);
            (slot, index.slots.get(slot as usize).copied().flatten()?)
        };
        let len = usize::from(entry.len);
        let mut bytes = vec![0u8; len];
        let head_len = len.min(HEAD_LEN);
        let read = self.slots.read_head(slot, &mut bytes[..head_len]);
        bytes[head_len..].copy_from_slice(&entry.tail[..len - head_len]);
        let found = match read {
            Ok(()) => check_block(key, bytes),
            Err(e) => {
                tracing::warn!(%key, error = %e, "datastore: cannot read a cached block");
                None
            }
        };
        if found.is_none() {
            self.drop_damaged(key, slot, entry.gen);
        }
        found
    }

    /// Free `slot` if it still holds the block read (generation `gen`).
    fn drop_damaged(&self, key: &RoutingKey, slot: u32, gen: u64) {
        let _write = lock(&self.write);
        let mut index = lock(&self.index);
        let same = index
            .slots
            .get(slot as usize)
            .copied()
            .flatten()
            .is_some_and(|e| e.gen == gen);
        if !same {
            return;
        }
        index.clear(slot);
        index.free.push(slot);
        drop(index);
        self.damaged.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%key, part = "cache",
            "datastore: block on disk does not match its key; removed");
        if let Err(e) = self.slots.write_record(slot, &[0u8; RECORD_LEN]) {
            tracing::debug!(error = %e, "datastore: cannot clear a damaged cache slot");
        }
    }

    /// Test hook: make every later write fail (`ENOSPC`) or work again.
    pub(super) fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::Relaxed);
    }

    /// Test hook: begin a put of `block` as [`SlotCache::put`] does but
    /// stop as `torn` says, as a crash would: the index is not told.
    pub(super) fn put_torn(&self, block: &Block, torn: Torn) -> std::io::Result<()> {
        let key = block.routing_key();
        let (head, tail, len) = parts(block.as_bytes())?;
        let _write = lock(&self.write);
        let (slot, seq) = {
            let mut index = lock(&self.index);
            let Some(slot) = index.take(self.capacity) else {
                return Ok(());
            };
            (slot, index.seq())
        };
        match torn {
            Torn::DataOnly => self.slots.write_head(slot, head),
            Torn::RecordOnly => {
                let record = Record {
                    key: key.0,
                    tail,
                    seq,
                    len,
                };
                self.slots.write_record(slot, &record.encode())
            }
        }
    }

    /// Test hook: damage the head of `key`'s slot (flip its first byte, or
    /// with `truncate` zero its second half). Whether it was held.
    pub(super) fn corrupt(&self, key: &RoutingKey, truncate: bool) -> std::io::Result<bool> {
        let _write = lock(&self.write);
        let held = {
            let index = lock(&self.index);
            index
                .keys
                .get(&key.0)
                .and_then(|&slot| Some((slot, index.slots.get(slot as usize).copied()??)))
        };
        let Some((slot, entry)) = held else {
            return Ok(false);
        };
        let mut head = vec![0u8; usize::from(entry.len).min(HEAD_LEN)];
        self.slots.read_head(slot, &mut head)?;
        if truncate {
            let half = head.len() / 2;
            head[half..].fill(0);
        } else {
            head[0] ^= 0x01;
        }
        self.slots.write_head(slot, &head)?;
        Ok(true)
    }

    /// Where the cache lives, for logs.
    pub(super) fn name(&self) -> String {
        self.slots.name()
    }
}
