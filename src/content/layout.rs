//! Segments: how a version-2 splitfile's data blocks are grouped, and how
//! many Reed-Solomon check blocks each group gets.
//!
//! A file of `F` bytes has `N = ceil(F / B)` data blocks (`B` =
//! [`BLOCK_DATA_LEN`]). They are cut into `S = ceil(N / segment)` segments of
//! as equal a size as possible: the first `N mod S` segments hold
//! `floor(N / S) + 1` data blocks, the rest `floor(N / S)`. A segment of `k`
//! data blocks gets `m = ceil(k * redundancy / 100)` check blocks, each the
//! Reed-Solomon recovery shard (from `reed-solomon-simd`) over the segment's
//! data blocks, each zero-padded to `B` bytes. Any `k` of a segment's
//! `k + m` blocks give back its data.

use super::ManifestError;
use crate::keys::BLOCK_DATA_LEN;

/// The most data blocks in one segment.
pub const MAX_SEGMENT: u8 = 128;

/// The default redundancy: as many check blocks as data blocks (128 + 128).
pub const DEFAULT_REDUNDANCY: u16 = 100;

/// The most redundancy accepted: three check blocks per data block.
pub const MAX_REDUNDANCY: u16 = 300;

/// A version-2 root's erasure coding: the file's length, the segment size,
/// and the redundancy. The whole layout follows from these three numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fec {
    /// The file's length in bytes (at least 1).
    pub file_length: u64,
    /// The most data blocks per segment, `1..=MAX_SEGMENT`.
    pub segment: u8,
    /// Check blocks per 100 data blocks (rounded up per segment),
    /// `0..=MAX_REDUNDANCY`.
    pub redundancy: u16,
}

impl Fec {
    /// Check the three numbers as read off the wire.
    pub(super) fn checked(
        file_length: u64,
        segment: u64,
        redundancy: u64,
    ) -> Result<Fec, ManifestError> {
        let bad = || ManifestError::BadFec {
            file_length,
            segment,
            redundancy,
        };
        let segment = u8::try_from(segment)
            .ok()
            .filter(|s| (1..=MAX_SEGMENT).contains(s))
            .ok_or_else(bad)?;
        let redundancy = u16::try_from(redundancy)
            .ok()
            .filter(|r| *r <= MAX_REDUNDANCY)
            .ok_or_else(bad)?;
        if file_length == 0 || file_length > super::MAX_FILE_LEN {
            return Err(bad());
        }
        Ok(Fec {
            file_length,
            segment,
            redundancy,
        })
    }
}

/// One segment's place among the leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the segment's first leaf (its first data block).
    pub first_leaf: u64,
    /// Index of its first data block among the file's data blocks.
    pub first_data: u64,
    /// Data blocks (`k`).
    pub data: usize,
    /// Check blocks (`m`).
    pub check: usize,
}

/// The segments of a version-2 file, computed from its [`Fec`] alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    fec: Fec,
    data_blocks: u64,
    segments: u64,
    base: u64,
    extra: u64,
}

impl Layout {
    /// A bound on any version-2 manifest's `length`: a 1 TiB file at the
    /// highest redundancy, with a rounded-up block per segment to spare.
    pub const MAX_STORED_LEN: u64 = super::MAX_FILE_LEN * (1 + MAX_REDUNDANCY as u64 / 100) * 2;

    pub fn new(fec: Fec) -> Layout {
        let data_blocks = fec.file_length.div_ceil(BLOCK_DATA_LEN as u64).max(1);
        let segments = data_blocks.div_ceil(u64::from(fec.segment.max(1)));
        Layout {
            fec,
            data_blocks,
            segments,
            base: data_blocks / segments,
            extra: data_blocks % segments,
        }
    }

    pub fn fec(&self) -> Fec {
        self.fec
    }

    /// Data blocks in the file (`N`).
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// Segments in the file (`S`).
    pub fn segments(&self) -> u64 {
        self.segments
    }

    fn check_for(&self, data: u64) -> u64 {
        (data * u64::from(self.fec.redundancy)).div_ceil(100)
    }

    /// Check blocks in the whole file.
    pub fn check_blocks(&self) -> u64 {
        self.extra * self.check_for(self.base + 1)
            + (self.segments - self.extra) * self.check_for(self.base)
    }

    /// Leaves (data and check blocks) in the whole file.
    pub fn leaves(&self) -> u64 {
        self.data_blocks + self.check_blocks()
    }

    /// Bytes stored in the leaves: the file plus a full block per check block.
    pub fn stored_len(&self) -> u64 {
        self.fec.file_length + self.check_blocks() * BLOCK_DATA_LEN as u64
    }

    /// The length of data block `i` (every block is full but the last).
    pub fn data_len(&self, i: u64) -> u64 {
        if i + 1 == self.data_blocks {
            self.fec.file_length - i * BLOCK_DATA_LEN as u64
        } else {
            BLOCK_DATA_LEN as u64
        }
    }

    /// Segment `i` (0-based, below [`Self::segments`]), computed directly:
    /// the first `extra` segments hold one data block more than the rest.
    pub fn segment(&self, i: u64) -> Segment {
        let longer = i.min(self.extra);
        let shorter = i - longer;
        let data = self.base + u64::from(i < self.extra);
        let first_data = longer * (self.base + 1) + shorter * self.base;
        let checks_before =
            longer * self.check_for(self.base + 1) + shorter * self.check_for(self.base);
        Segment {
            first_leaf: first_data + checks_before,
            first_data,
            data: data as usize,
            check: self.check_for(data) as usize,
        }
    }

    /// The segments in leaf order.
    pub fn iter(&self) -> impl Iterator<Item = Segment> + '_ {
        (0..self.segments).map(move |i| self.segment(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(file_length: u64, segment: u8, redundancy: u16) -> Layout {
        Layout::new(Fec {
            file_length,
            segment,
            redundancy,
        })
    }

    #[test]
    fn segments_are_even_and_add_up() {
        let b = BLOCK_DATA_LEN as u64;
        // 300 data blocks at 128 per segment: 3 segments of 100.
        let l = layout(300 * b, 128, 100);
        let segs: Vec<Segment> = l.iter().collect();
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s.data == 100 && s.check == 100));
        assert_eq!(l.leaves(), 600);
        assert_eq!(l.stored_len(), 600 * b);
        // 257 blocks: 87 + 85 + 85, with 50% redundancy rounded up.
        let l = layout(256 * b + 1, 128, 50);
        let segs: Vec<Segment> = l.iter().collect();
        let sizes: Vec<(usize, usize)> = segs.iter().map(|s| (s.data, s.check)).collect();
        assert_eq!(sizes, vec![(86, 43), (86, 43), (85, 43)]);
        assert_eq!(l.check_blocks(), 129);
        assert_eq!(segs[2].first_leaf, 86 + 43 + 86 + 43);
        assert_eq!(segs[2].first_data, 172);
        assert_eq!(l.data_len(256), 1);
        assert_eq!(l.data_len(255), b);
        // No redundancy: no check blocks.
        assert_eq!(layout(5 * b, 2, 0).check_blocks(), 0);
        // The largest file fits the stored bound.
        assert!(
            layout(super::super::MAX_FILE_LEN, 1, MAX_REDUNDANCY).stored_len()
                <= Layout::MAX_STORED_LEN
        );
    }

    #[test]
    fn wire_values_are_checked() {
        assert!(Fec::checked(1, 128, 300).is_ok());
        assert!(Fec::checked(0, 128, 100).is_err());
        assert!(Fec::checked(1, 0, 100).is_err());
        assert!(Fec::checked(1, 129, 100).is_err());
        assert!(Fec::checked(1, 128, 301).is_err());
        assert!(Fec::checked(super::super::MAX_FILE_LEN + 1, 128, 100).is_err());
    }
}
