//! What tunnel cells are on the wire, and what a sealed cell holds.
//!
//! A [`Cell`] is opaque to every node but the one it is sealed for: always
//! exactly [`SMALL_CELL`] or [`BIG_CELL`] bytes, whatever it carries. Its
//! plaintext ([`Sealed`]) is a little-endian `u32` length, that many bytes
//! of CBOR, and zeros up to the cell's size less the 16-byte tag. The
//! cryptography that seals and opens cells is in `routing::tunnel::onion`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DecodeError, Malformed, TunnelOutcome};
use crate::keys::{from_byte_string, Block, RoutingKey, BLOCK_LEN, SSK_BLOCK_LEN};

/// The authentication tag at the end of every cell (ChaCha20-Poly1305).
pub const CELL_TAG_LEN: usize = 16;
/// A cell that carries no block: keys, an extension, an outcome.
pub const SMALL_CELL: usize = 1024;
/// A cell that carries one block (either kind), with room for its framing.
pub const BIG_CELL: usize = max(BLOCK_LEN, SSK_BLOCK_LEN) + 64 + CELL_TAG_LEN;
/// Routing keys one `Sealed::Get` carries at most (it fits a small cell:
/// `cell::tests` checks it).
pub const CELL_KEYS: usize = 28;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Bytes of a sealed plaintext before its CBOR: the CBOR's length.
const LEN_PREFIX: usize = 4;

/// An X25519 public key of one side of a tunnel hop's key agreement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ephemeral(pub [u8; 32]);

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ephemeral({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Ephemeral {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ephemeral {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_byte_string(d, "32 bytes", |b| b.try_into().ok().map(Ephemeral))
    }
}

/// A tunnel cell as it travels: [`SMALL_CELL`] or [`BIG_CELL`] opaque bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Cell(Vec<u8>);

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cell({} bytes)", self.0.len())
    }
}

impl Cell {
    /// Wrap bytes of one of the two cell sizes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Cell, CellError> {
        if bytes.len() == SMALL_CELL || bytes.len() == BIG_CELL {
            Ok(Cell(bytes))
        } else {
            Err(CellError::BadSize(bytes.len()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Is this a big cell (one that can carry a block)?
    pub fn is_big(&self) -> bool {
        self.0.len() == BIG_CELL
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_byte_string(d, "a tunnel cell (1024 or the big size)", |b| {
            Cell::from_bytes(b).ok()
        })
    }
}

/// Why a cell or its plaintext is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CellError {
    #[error("a tunnel cell is {SMALL_CELL} or {BIG_CELL} bytes, not {0}")]
    BadSize(usize),
    #[error("a sealed cell's length prefix says {0} bytes; at most {1} fit")]
    BadLength(usize, usize),
    #[error("{0} routing keys do not fit one cell (at most {CELL_KEYS})")]
    TooManyKeys(usize),
    #[error("the plaintext does not fit its cell: {0} bytes")]
    TooLarge(usize),
    #[error("malformed sealed cell: {0}")]
    Malformed(#[source] DecodeError),
}

/// What a cell holds once the node it is sealed for opens it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sealed {
    /// Towards the exit. To the tunnel's last hop: build the next hop with
    /// this key-agreement share.
    Extend { ephemeral: Ephemeral },
    /// To the exit: fetch these keys (numbered, in order, from 0 on this
    /// tunnel). `more`: further cells of the same send follow at once; the
    /// exit sends nothing back on the tunnel until the last has arrived.
    Get { keys: Vec<RoutingKey>, more: bool },
    /// To the exit: insert this block (numbered with the keys); `more` as
    /// for `Get`.
    Put {
        #[serde(with = "cell_block")]
        block: Block,
        more: bool,
    },
    /// Back from the last hop: the new hop's key-agreement share.
    Extended { ephemeral: Ephemeral },
    /// Back from the last hop: it could not extend (no other neighbour, or
    /// the neighbour refused).
    ExtendFailed,
    /// Back from the exit: the block of the `index`-th key.
    Data {
        index: u32,
        #[serde(with = "cell_block")]
        block: Block,
    },
    /// Back from the exit: how the `index`-th key or block ended otherwise.
    Outcome { index: u32, outcome: TunnelOutcome },
}

impl Sealed {
    /// Does this plaintext go in a big cell?
    pub fn is_big(&self) -> bool {
        matches!(self, Sealed::Put { .. } | Sealed::Data { .. })
    }

    /// The unsealed cell: length, CBOR, zeros, and room for the tag.
    pub fn to_cell_bytes(&self) -> Result<Vec<u8>, CellError> {
        if let Sealed::Get { keys, .. } = self {
            if keys.len() > CELL_KEYS {
                return Err(CellError::TooManyKeys(keys.len()));
            }
        }
        let size = if self.is_big() { BIG_CELL } else { SMALL_CELL };
        let room = size - CELL_TAG_LEN - LEN_PREFIX;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&[0; LEN_PREFIX]);
        super::encode_cbor_into(self, &mut out);
        let len = out.len() - LEN_PREFIX;
        if len > room {
            return Err(CellError::TooLarge(len));
        }
        out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
        out.resize(size, 0);
        Ok(out)
    }

    /// Read an opened cell's plaintext (tag included at the end, ignored).
    /// The length is checked against the cell before anything is parsed.
    pub fn from_cell_bytes(bytes: &[u8]) -> Result<Sealed, CellError> {
        let room = bytes.len().saturating_sub(CELL_TAG_LEN + LEN_PREFIX);
        let Some(prefix) = bytes.get(..LEN_PREFIX) else {
            return Err(CellError::BadSize(bytes.len()));
        };
        let mut len = [0u8; LEN_PREFIX];
        len.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len) as usize;
        if len > room {
            return Err(CellError::BadLength(len, room));
        }
        let body = &bytes[LEN_PREFIX..LEN_PREFIX + len];
        let sealed: Sealed = if len <= super::SMALL_DECODE {
            super::decode_cbor(body, room, 16).map_err(CellError::Malformed)?
        } else {
            let mut reader = body;
            let value = super::with_block_scratch(|scratch| {
                ciborium::de::from_reader_with_buffer(&mut reader, scratch)
            })
            .map_err(|e| CellError::Malformed(DecodeError::Malformed(Malformed::from(e))))?;
            if !reader.is_empty() {
                return Err(CellError::Malformed(DecodeError::Malformed(
                    Malformed::TrailingBytes(reader.len()),
                )));
            }
            value
        };
        if let Sealed::Get { keys, .. } = &sealed {
            if keys.len() > CELL_KEYS {
                return Err(CellError::TooManyKeys(keys.len()));
            }
        }
        Ok(sealed)
    }
}

/// A block inside a cell: its bytes, any length up to a real block's. It is
/// as good as its hash: the originator verifies every block against the key
/// it asked for, and an exit inserts only blocks of a length the wire
/// carries (the simulator's short stand-ins travel this way).
mod cell_block {
    use serde::{Deserializer, Serializer};

    use crate::keys::{from_byte_string, Block, BLOCK_LEN, SSK_BLOCK_LEN};

    pub fn serialize<S: Serializer>(block: &Block, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(block.as_bytes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Block, D::Error> {
        from_byte_string(d, "a block's bytes", |bytes| match bytes.len() {
            BLOCK_LEN | SSK_BLOCK_LEN => Block::from_bytes(bytes).ok(),
            0 => None,
            n if n > BLOCK_LEN.max(SSK_BLOCK_LEN) => None,
            _ => Some(Block::stand_in(&bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Chk;

    #[test]
    fn the_fullest_plaintexts_fit_their_cells() {
        let keys = vec![RoutingKey([0xff; 32]); CELL_KEYS];
        let block = Chk::encode(&[7u8; 32 * 1024]).unwrap().1;
        for s in [
            Sealed::Get { keys, more: true },
            Sealed::Data {
                index: u32::MAX,
                block: block.clone(),
            },
            Sealed::Put { block, more: false },
            Sealed::Extend {
                ephemeral: Ephemeral([0xff; 32]),
            },
            Sealed::Outcome {
                index: u32::MAX,
                outcome: TunnelOutcome::RouteNotFound,
            },
        ] {
            let bytes = s.to_cell_bytes().unwrap();
            assert!(Cell::from_bytes(bytes.clone()).is_ok());
            assert_eq!(Sealed::from_cell_bytes(&bytes).unwrap(), s);
        }
        let too_many = Sealed::Get {
            more: false,
            keys: vec![RoutingKey([1; 32]); CELL_KEYS + 1],
        };
        assert_eq!(
            too_many.to_cell_bytes(),
            Err(CellError::TooManyKeys(CELL_KEYS + 1))
        );
    }

    #[test]
    fn a_length_prefix_past_the_cell_is_refused_before_parsing() {
        let mut bytes = Sealed::ExtendFailed.to_cell_bytes().unwrap();
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Sealed::from_cell_bytes(&bytes),
            Err(CellError::BadLength(..))
        ));
        assert!(Cell::from_bytes(vec![0; 1000]).is_err());
    }
}
