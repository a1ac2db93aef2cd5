//! Routing messages and their CBOR encoding.
//!
//! No message has a field that names or hints at the node that originated a
//! request or the node that held the data: a request carries only its random
//! `uid`, the routing key and the hops-to-live, and a forwarded request is
//! encoded exactly like an originated one.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, HasKind};
use crate::keys::{Block, RoutingKey};

pub mod cell;
pub mod swap;
pub use cell::{Cell, CellError, Ephemeral, Sealed, BIG_CELL, CELL_KEYS, SMALL_CELL};
pub use swap::SwapMessage;

/// Hops-to-live.
pub type Htl = u8;

/// A random 64-bit request ID, the same at every hop.
pub type Uid = u64;

/// A tunnel's identifier on one link, chosen at random by the node that
/// sends the build on that link (so no identifier is the same on two links).
/// Its top bit is always set, so every identifier encodes to the same size.
pub type TunnelId = u64;

/// The outcome of one tunnelled key that did not bring a block back
/// ([`Sealed::Outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelOutcome {
    Inserted,
    DataNotFound,
    RouteNotFound,
    Timeout,
    Overloaded,
    NoPeers,
    Collision,
    BadBlock,
    NotStored,
}

/// The largest encoded message: a big tunnel cell (which holds a block and
/// its framing), plus generous room for the CBOR framing of the other fields.
pub const MAX_MESSAGE_LEN: usize = BIG_CELL + 128;

/// One routing message between neighbours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    DataRequest {
        uid: Uid,
        key: RoutingKey,
        htl: Htl,
    },
    DataFound {
        uid: Uid,
        block: Block,
    },
    DataNotFound {
        uid: Uid,
    },
    RouteNotFound {
        uid: Uid,
        htl: Htl,
    },
    RejectedLoop {
        uid: Uid,
    },
    /// The peer has too many of our requests in flight; try elsewhere.
    RejectedOverload {
        uid: Uid,
    },
    InsertRequest {
        uid: Uid,
        key: RoutingKey,
        htl: Htl,
        block: Block,
    },
    /// The insert reached a node whose hops-to-live ran out, which stored it.
    InsertSucceeded {
        uid: Uid,
    },
    /// The insert was abandoned (a downstream timeout).
    InsertFailed {
        uid: Uid,
    },
    /// The insert met a different valid block under its (signed) key: the
    /// original, which every hop verifies and passes back; it was kept.
    InsertCollision {
        uid: Uid,
        block: Block,
    },
    /// Add a hop to a tunnel: the originator's key-agreement share for the
    /// receiver. Sent by the originator to its first hop, and by the
    /// tunnel's last hop when the originator asks it to extend: the two are
    /// the same message.
    TunnelBuild {
        tunnel: TunnelId,
        ephemeral: Ephemeral,
    },
    /// The answer to a build: the new hop's key-agreement share.
    TunnelBuilt {
        tunnel: TunnelId,
        ephemeral: Ephemeral,
    },
    /// A cell travelling away from the originator; only the hop it is
    /// sealed for can open it.
    TunnelForward {
        tunnel: TunnelId,
        cell: Cell,
    },
    /// A cell travelling back to the originator; only the originator can
    /// open it.
    TunnelBackward {
        tunnel: TunnelId,
        cell: Cell,
    },
    /// The tunnel is gone (a link on it broke, it expired, or it was refused).
    TunnelDown {
        tunnel: TunnelId,
    },
}

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {0} bytes; the maximum is {MAX_MESSAGE_LEN}")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(#[source] Malformed),
}

impl HasKind for DecodeError {
    /// Bytes that do not decode came from the peer that sent them: decoding
    /// runs only on what a neighbour put on its link.
    fn kind(&self) -> ErrorKind {
        ErrorKind::Protocol
    }
}

/// The kind of a [`Message`] without its fields: how traces and the audit
/// log name messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MessageKind {
    DataRequest,
    DataFound,
    DataNotFound,
    RouteNotFound,
    RejectedLoop,
    RejectedOverload,
    InsertRequest,
    InsertSucceeded,
    InsertFailed,
    InsertCollision,
    TunnelBuild,
    TunnelBuilt,
    TunnelForward,
    TunnelBackward,
    TunnelDown,
}

impl MessageKind {
    /// The kind's name, as traces and logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::DataRequest => "DataRequest",
            MessageKind::DataFound => "DataFound",
            MessageKind::DataNotFound => "DataNotFound",
            MessageKind::RouteNotFound => "RouteNotFound",
            MessageKind::RejectedLoop => "RejectedLoop",
            MessageKind::RejectedOverload => "RejectedOverload",
            MessageKind::InsertRequest => "InsertRequest",
            MessageKind::InsertSucceeded => "InsertSucceeded",
            MessageKind::InsertFailed => "InsertFailed",
            MessageKind::InsertCollision => "InsertCollision",
            MessageKind::TunnelBuild => "TunnelBuild",
            MessageKind::TunnelBuilt => "TunnelBuilt",
            MessageKind::TunnelForward => "TunnelForward",
            MessageKind::TunnelBackward => "TunnelBackward",
            MessageKind::TunnelDown => "TunnelDown",
        }
    }

    /// Is this a request kind (as opposed to a reply)?
    pub fn is_request(self) -> bool {
        matches!(self, MessageKind::DataRequest | MessageKind::InsertRequest)
    }

    /// Does a message of this kind start (or carry on) a flow for its
    /// originator: a request, an insert, a tunnel build or a cell sent
    /// away from the originator?
    pub fn starts_flow(self) -> bool {
        self.is_request() || matches!(self, MessageKind::TunnelBuild | MessageKind::TunnelForward)
    }

    /// Is this a tunnel message (its flow is a [`TunnelId`], not a uid)?
    pub fn is_tunnel(self) -> bool {
        matches!(
            self,
            MessageKind::TunnelBuild
                | MessageKind::TunnelBuilt
                | MessageKind::TunnelForward
                | MessageKind::TunnelBackward
                | MessageKind::TunnelDown
        )
    }

    /// Does a message of this kind carry a hops-to-live?
    pub fn carries_htl(self) -> bool {
        self.is_request() || self == MessageKind::RouteNotFound
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Message {
    /// The message's kind.
    pub fn message_kind(&self) -> MessageKind {
        match self {
            Message::DataRequest { .. } => MessageKind::DataRequest,
            Message::DataFound { .. } => MessageKind::DataFound,
            Message::DataNotFound { .. } => MessageKind::DataNotFound,
            Message::RouteNotFound { .. } => MessageKind::RouteNotFound,
            Message::RejectedLoop { .. } => MessageKind::RejectedLoop,
            Message::RejectedOverload { .. } => MessageKind::RejectedOverload,
            Message::InsertRequest { .. } => MessageKind::InsertRequest,
            Message::InsertSucceeded { .. } => MessageKind::InsertSucceeded,
            Message::InsertFailed { .. } => MessageKind::InsertFailed,
            Message::InsertCollision { .. } => MessageKind::InsertCollision,
            Message::TunnelBuild { .. } => MessageKind::TunnelBuild,
            Message::TunnelBuilt { .. } => MessageKind::TunnelBuilt,
            Message::TunnelForward { .. } => MessageKind::TunnelForward,
            Message::TunnelBackward { .. } => MessageKind::TunnelBackward,
            Message::TunnelDown { .. } => MessageKind::TunnelDown,
        }
    }

    /// The kind of a message, as a short name for traces and logs.
    pub fn kind(&self) -> &'static str {
        self.message_kind().as_str()
    }

    /// The message's flow on its link: the uid of a request or reply, the
    /// [`TunnelId`] of a tunnel message.
    pub fn uid(&self) -> Uid {
        match *self {
            Message::DataRequest { uid, .. }
            | Message::DataFound { uid, .. }
            | Message::DataNotFound { uid }
            | Message::RouteNotFound { uid, .. }
            | Message::RejectedLoop { uid }
            | Message::RejectedOverload { uid }
            | Message::InsertRequest { uid, .. }
            | Message::InsertSucceeded { uid }
            | Message::InsertFailed { uid }
            | Message::InsertCollision { uid, .. } => uid,
            Message::TunnelBuild { tunnel, .. }
            | Message::TunnelBuilt { tunnel, .. }
            | Message::TunnelForward { tunnel, .. }
            | Message::TunnelBackward { tunnel, .. }
            | Message::TunnelDown { tunnel } => tunnel,
        }
    }

    /// The same request or reply under another uid (tunnel messages are
    /// returned unchanged).
    pub fn with_uid(mut self, new: Uid) -> Message {
        match &mut self {
            Message::DataRequest { uid, .. }
            | Message::DataFound { uid, .. }
            | Message::DataNotFound { uid }
            | Message::RouteNotFound { uid, .. }
            | Message::RejectedLoop { uid }
            | Message::RejectedOverload { uid }
            | Message::InsertRequest { uid, .. }
            | Message::InsertSucceeded { uid }
            | Message::InsertFailed { uid }
            | Message::InsertCollision { uid, .. } => *uid = new,
            _ => {}
        }
        self
    }

    /// The hops-to-live the message carries, if its kind has one.
    pub fn htl(&self) -> Option<Htl> {
        match *self {
            Message::DataRequest { htl, .. }
            | Message::RouteNotFound { htl, .. }
            | Message::InsertRequest { htl, .. } => Some(htl),
            _ => None,
        }
    }

    /// Is this a request (as opposed to a reply)?
    pub fn is_request(&self) -> bool {
        self.message_kind().is_request()
    }

    /// The routing key a request is for.
    pub fn key(&self) -> Option<RoutingKey> {
        match self {
            Message::DataRequest { key, .. } | Message::InsertRequest { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// Encode as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        encode_cbor(self)
    }

    /// Bytes of cells and blocks the message carries: what sets its size
    /// on the link, beside a small header.
    pub fn payload_len(&self) -> usize {
        let blocks: usize = self.carried_blocks().map(|b| b.as_bytes().len()).sum();
        let cells = match self {
            Message::TunnelForward { cell, .. } | Message::TunnelBackward { cell, .. } => {
                cell.as_bytes().len()
            }
            _ => 0,
        };
        blocks + cells
    }

    /// Bytes [`Message::encode`] needs at most beyond the blocks it
    /// carries: the buffer is sized once, not grown while a block is written.
    fn encoded_capacity(&self) -> usize {
        self.payload_len() + 128
    }

    /// The blocks this message carries.
    fn carried_blocks(&self) -> impl Iterator<Item = &Block> {
        let block = match self {
            Message::InsertRequest { block, .. }
            | Message::DataFound { block, .. }
            | Message::InsertCollision { block, .. } => Some(block),
            _ => None,
        };
        block.into_iter()
    }

    /// Decode CBOR, refusing oversized input before parsing it. Never panics.
    ///
    /// A message longer than [`SMALL_DECODE`] bytes (only one carrying a
    /// block is) is decoded with a scratch buffer that holds it whole, so
    /// its block is copied out in one piece: ciborium's default scratch of
    /// 4 KiB takes it in eight, growing the block's buffer three times. That
    /// entry point has ciborium's default nesting limit (256) rather than 16.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() <= SMALL_DECODE {
            return decode_cbor(bytes, MAX_MESSAGE_LEN, 16);
        }
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let mut reader = bytes;
        let value: Message = with_block_scratch(|scratch| {
            ciborium::de::from_reader_with_buffer(&mut reader, scratch)
        })
        .map_err(|e| DecodeError::Malformed(Malformed::from(e)))?;
        if !reader.is_empty() {
            return Err(DecodeError::Malformed(Malformed::TrailingBytes(
                reader.len(),
            )));
        }
        Ok(value)
    }
}

/// Messages up to this long are decoded with ciborium's own 4 KiB scratch
/// (and a nesting limit of 16); see [`Message::decode`].
pub const SMALL_DECODE: usize = 4096;

thread_local! {
    /// Each thread's scratch for decoding messages that carry a block,
    /// allocated the first time one is decoded there.
    static DECODE_SCRATCH: std::cell::RefCell<Option<Box<[u8]>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `decode` with this thread's scratch of [`MAX_MESSAGE_LEN`] bytes, a
/// ciborium scratch that takes a block's bytes in one piece
/// (`ciborium::de::from_reader_with_buffer`). `decode` must not call it again.
pub(crate) fn with_block_scratch<T>(decode: impl FnOnce(&mut [u8]) -> T) -> T {
    DECODE_SCRATCH.with_borrow_mut(|scratch| {
        decode(scratch.get_or_insert_with(|| vec![0u8; MAX_MESSAGE_LEN].into_boxed_slice()))
    })
}

/// A wire value as CBOR.
fn encode_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_cbor_into(value, &mut out);
    out
}

/// Append `value` as CBOR to `out`.
fn encode_cbor_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every field serializes.
    if let Err(e) = ciborium::ser::into_writer(value, out) {
        unreachable!("encoding a message into memory failed: {e}");
    }
}

/// One CBOR value filling `bytes`: more than `max` bytes are refused before
/// parsing, nesting deeper than `depth` and trailing bytes after. Never panics.
fn decode_cbor<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
    depth: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLong(bytes.len()));
    }
    let mut reader = bytes;
    let value: T = ciborium::de::from_reader_with_recursion_limit(&mut reader, depth)
        .map_err(|e| DecodeError::Malformed(Malformed::from(e)))?;
    if !reader.is_empty() {
        return Err(DecodeError::Malformed(Malformed::TrailingBytes(
            reader.len(),
        )));
    }
    Ok(value)
}

/// What exactly is wrong with bytes that are not a message or a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Malformed {
    #[error("the input ends inside a value")]
    Truncated,
    #[error("invalid CBOR at byte {0}")]
    Syntax(usize),
    #[error("not a message{}: {message}", .offset.map(|o| format!(" (at byte {o})")).unwrap_or_default())]
    Semantic {
        offset: Option<usize>,
        message: String,
    },
    #[error("nested too deeply")]
    TooDeep,
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    #[error("empty frame")]
    EmptyFrame,
    #[error("unknown frame tag {0}")]
    UnknownFrameTag(u8),
    #[error("hello of {0} bytes; a hello carries 8")]
    HelloLength(usize),
    #[error("swap offer lists {0} neighbours (at most {max})", max = swap::MAX_SWAP_NEIGHBOURS)]
    OfferTooLarge(usize),
    #[error("a tree interval {0} wide (at most 2^64, the whole circle)")]
    TreeWidth(u128),
    #[error("a neighbourhood of {0} bytes; it carries a 2-byte count and 8 bytes a location, \
             at most {max} locations", max = MAX_NEIGHBOURS)]
    NeighboursLength(usize),
}

impl From<ciborium::de::Error<std::io::Error>> for Malformed {
    fn from(e: ciborium::de::Error<std::io::Error>) -> Malformed {
        match e {
            // Reading from a slice fails only at its end.
            ciborium::de::Error::Io(_) => Malformed::Truncated,
            ciborium::de::Error::Syntax(offset) => Malformed::Syntax(offset),
            ciborium::de::Error::Semantic(offset, message) => {
                Malformed::Semantic { offset, message }
            }
            ciborium::de::Error::RecursionLimitExceeded => Malformed::TooDeep,
        }
    }
}

mod peer_frame;
pub use peer_frame::{PeerFrame, MAX_NEIGHBOURS, TAG_HELLO, TAG_NEIGHBOURS, TAG_ROUTING, TAG_SWAP};

#[cfg(test)]
mod tests;
