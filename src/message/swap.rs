//! Location-swap messages (see `docs/protocol.md`, "Location swapping").
//!
//! They travel in their own link frame ([`PeerFrame::Swap`]), never inside
//! a routing [`Message`](super::Message): swap traffic is not a request, has
//! no routing key, and the audit's request checks never see it.
//!
//! A swap between the initiator A and a partner B found by a random walk:
//!
//! ```text
//! A ─SwapRequest{uid, htl, H(nA, A's offer)}─> relay … ─> B   (random walk)
//! A <──────SwapReply{uid, nB, B's offer}──────────────  B   (B reveals)
//! A ─SwapCommit{uid, nA, A's offer}──────────────────>  B   (A reveals)
//! A <──────SwapComplete{uid}──────────────────────────  B   (both decided)
//! any hop <─SwapRejected{uid}── (busy, refused, timed out): the attempt ends
//! A ─LocationChanged{location}─> each neighbour (after a swap; not relayed)
//! ```
//!
//! `H` is SHA-256 over the nonce and the offer
//! ([`offer_commitment`](crate::routing::swap::offer_commitment)); both
//! sides draw the same coin from `SHA-256(nA ‖ nB)`. A committed before it
//! saw anything of B, and B revealed before it saw anything of A, so
//! neither can shape its nonce or its offer to the other's. Either may
//! refuse (`SwapRejected`) before `SwapComplete`; nothing moves until then.
//!
//! [`PeerFrame::Swap`]: super::PeerFrame::Swap

use serde::{Deserialize, Serialize};

use super::{DecodeError, Malformed, Uid};

/// Hops-to-live of a swap request's random walk.
pub type WalkHtl = u8;

/// At most this many neighbour locations in one offer: checked when a
/// message is decoded, so an oversized offer is refused on the first link.
pub const MAX_SWAP_NEIGHBOURS: usize = 1024;

/// The largest encoded swap message: an offer of [`MAX_SWAP_NEIGHBOURS`]
/// locations (at most 9 bytes each in CBOR) plus the other fields.
pub const MAX_SWAP_MESSAGE_LEN: usize = 9 * MAX_SWAP_NEIGHBOURS + 512;

/// The widest interval a `TreeInterval` may carry: the whole circle.
pub const MAX_TREE_WIDTH: u128 = 1 << 64;

// A swap message always fits a link frame's payload.
const _: () = assert!(MAX_SWAP_MESSAGE_LEN < super::MAX_MESSAGE_LEN);

/// A random 32-byte nonce, or its SHA-256 commitment.
pub type Nonce = [u8; 32];

/// What one side shows the other: its location and its neighbours'
/// (64-bit fixed-point fractions of the circle, as [`crate::keys::Location`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOffer {
    pub location: u64,
    pub neighbours: Vec<u64>,
}

/// One swap message between neighbours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapMessage {
    /// Find a partner: a random walk of `htl` hops carrying the initiator's
    /// commitment to its nonce and offer. Originated and relayed requests
    /// look the same.
    SwapRequest {
        uid: Uid,
        htl: WalkHtl,
        commit: Nonce,
    },
    /// The partner's nonce and offer, back along the walk.
    SwapReply {
        uid: Uid,
        nonce: Nonce,
        offer: WireOffer,
    },
    /// The initiator's nonce and offer, towards the partner.
    SwapCommit {
        uid: Uid,
        nonce: Nonce,
        offer: WireOffer,
    },
    /// The partner checked and decided: both take the decision now.
    SwapComplete { uid: Uid },
    /// The attempt ends without a swap (a busy or refusing node, a broken
    /// link or a timeout on the walk).
    SwapRejected { uid: Uid },
    /// The sender's location is now `location` (sent to every neighbour
    /// after a swap or when the tree embedding moves it).
    LocationChanged { location: u64 },
    /// Tree embedding (`routing/embed/`): the smallest root ticket the
    /// sender knows and its depth below it.
    TreeRoot { root: u64, depth: u32 },
    /// Tree embedding: the sender's subtree size under `root`, and whether
    /// the receiver is its parent.
    TreeSize { root: u64, size: u64, child: bool },
    /// Tree embedding: the receiver's interval of the circle under `root`,
    /// `[start, start + width)` in 2^-64 of a turn (`width` up to 2^64).
    TreeInterval { root: u64, start: u64, width: u128 },
}

impl SwapMessage {
    /// The attempt a message belongs to (`None` for `LocationChanged`).
    pub fn uid(&self) -> Option<Uid> {
        match *self {
            SwapMessage::SwapRequest { uid, .. }
            | SwapMessage::SwapReply { uid, .. }
            | SwapMessage::SwapCommit { uid, .. }
            | SwapMessage::SwapComplete { uid, .. }
            | SwapMessage::SwapRejected { uid } => Some(uid),
            SwapMessage::LocationChanged { .. }
            | SwapMessage::TreeRoot { .. }
            | SwapMessage::TreeSize { .. }
            | SwapMessage::TreeInterval { .. } => None,
        }
    }

    /// The message's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SwapMessage::SwapRequest { .. } => "SwapRequest",
            SwapMessage::SwapReply { .. } => "SwapReply",
            SwapMessage::SwapCommit { .. } => "SwapCommit",
            SwapMessage::SwapComplete { .. } => "SwapComplete",
            SwapMessage::SwapRejected { .. } => "SwapRejected",
            SwapMessage::LocationChanged { .. } => "LocationChanged",
            SwapMessage::TreeRoot { .. } => "TreeRoot",
            SwapMessage::TreeSize { .. } => "TreeSize",
            SwapMessage::TreeInterval { .. } => "TreeInterval",
        }
    }

    /// Encode as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        super::encode_cbor(self)
    }

    /// Append [`SwapMessage::encode`]'s bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        super::encode_cbor_into(self, out)
    }

    /// Decode CBOR: oversized input is refused before parsing, an offer
    /// listing more than [`MAX_SWAP_NEIGHBOURS`] after. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SwapMessage, DecodeError> {
        let msg: SwapMessage = super::decode_cbor(bytes, MAX_SWAP_MESSAGE_LEN, 8)?;
        if let SwapMessage::SwapReply { offer, .. } | SwapMessage::SwapCommit { offer, .. } = &msg {
            if offer.neighbours.len() > MAX_SWAP_NEIGHBOURS {
                return Err(DecodeError::Malformed(Malformed::OfferTooLarge(
                    offer.neighbours.len(),
                )));
            }
        }
        if let SwapMessage::TreeInterval { width, .. } = msg {
            if width > MAX_TREE_WIDTH {
                return Err(DecodeError::Malformed(Malformed::TreeWidth(width)));
            }
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<SwapMessage> {
        let offer = WireOffer {
            location: u64::MAX,
            neighbours: vec![u64::MAX; MAX_SWAP_NEIGHBOURS],
        };
        vec![
            SwapMessage::SwapRequest {
                uid: 1,
                htl: 10,
                commit: [7; 32],
            },
            SwapMessage::SwapReply {
                uid: u64::MAX,
                nonce: [0xff; 32],
                offer: offer.clone(),
            },
            SwapMessage::SwapCommit {
                uid: 3,
                nonce: [0xff; 32],
                offer: offer.clone(),
            },
            SwapMessage::SwapComplete { uid: 4 },
            SwapMessage::SwapRejected { uid: 5 },
            SwapMessage::LocationChanged { location: 42 },
            SwapMessage::TreeRoot {
                root: u64::MAX,
                depth: u32::MAX,
            },
            SwapMessage::TreeSize {
                root: 9,
                size: u64::MAX,
                child: true,
            },
            SwapMessage::TreeInterval {
                root: 9,
                start: u64::MAX,
                width: MAX_TREE_WIDTH,
            },
            SwapMessage::TreeInterval {
                root: 9,
                start: 0,
                width: 12345,
            },
        ]
    }

    #[test]
    fn a_tree_interval_wider_than_the_circle_is_refused() {
        let m = SwapMessage::TreeInterval {
            root: 1,
            start: 0,
            width: MAX_TREE_WIDTH + 1,
        };
        assert!(matches!(
            SwapMessage::decode(&m.encode()),
            Err(DecodeError::Malformed(Malformed::TreeWidth(_)))
        ));
    }

    #[test]
    fn every_swap_kind_round_trips_within_the_bound() {
        for m in samples() {
            let bytes = m.encode();
            assert!(bytes.len() <= MAX_SWAP_MESSAGE_LEN, "{}", m.kind());
            assert_eq!(SwapMessage::decode(&bytes).unwrap(), m);
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                assert!(SwapMessage::decode(&bytes[..cut]).is_err(), "{}", m.kind());
            }
        }
    }

    #[test]
    fn swap_frames_round_trip_and_garbage_is_refused() {
        use crate::message::{PeerFrame, TAG_SWAP};
        for m in samples() {
            let frame = PeerFrame::Swap(m);
            assert_eq!(PeerFrame::decode(&frame.encode()).unwrap(), frame);
        }
        for garbage in [
            &[TAG_SWAP][..],
            &[TAG_SWAP, 0xff],
            &[TAG_SWAP, 0xa1, 0x61, b'x', 0],
        ] {
            assert!(matches!(
                PeerFrame::decode(garbage),
                Err(DecodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn oversized_offers_and_input_are_refused() {
        let big = SwapMessage::SwapCommit {
            uid: 1,
            nonce: [0; 32],
            offer: WireOffer {
                location: 0,
                neighbours: vec![1; MAX_SWAP_NEIGHBOURS + 1],
            },
        };
        assert_eq!(
            SwapMessage::decode(&big.encode()),
            Err(DecodeError::Malformed(Malformed::OfferTooLarge(
                MAX_SWAP_NEIGHBOURS + 1
            )))
        );
        let long = vec![0u8; MAX_SWAP_MESSAGE_LEN + 1];
        assert_eq!(
            SwapMessage::decode(&long),
            Err(DecodeError::TooLong(MAX_SWAP_MESSAGE_LEN + 1))
        );
        let mut trailing = SwapMessage::SwapRejected { uid: 1 }.encode();
        trailing.push(0);
        assert!(SwapMessage::decode(&trailing).is_err());
    }
}
