//! What one frame on a link carries: the hello, a routing message, a swap
//! message, or the sender's neighbourhood (its neighbours' locations, for
//! FOAF routing). The first byte says which.

use super::swap::SwapMessage;
use super::{encode_cbor_into, DecodeError, Malformed, Message};
use crate::keys::Location;

/// The most locations a neighbourhood frame carries (the routing core
/// keeps as many, [`crate::routing::MAX_FOAF`]).
pub const MAX_NEIGHBOURS: usize = 64;

/// What one frame on a link carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// The sender's location on the key circle; the first frame each way.
    Hello { location: Location },
    /// A routing message.
    Routing(Message),
    /// A location-swap message ([`super::swap`]).
    Swap(SwapMessage),
    /// The locations of the sender's neighbours, at most
    /// [`MAX_NEIGHBOURS`], sent when they change (FOAF routing, `[router]
    /// lookahead = "foaf"`).
    Neighbours { locations: Vec<Location> },
}

/// The first byte of a frame payload: which [`PeerFrame`] it is.
pub const TAG_HELLO: u8 = 1;
/// See [`TAG_HELLO`].
pub const TAG_ROUTING: u8 = 2;
/// See [`TAG_HELLO`].
pub const TAG_SWAP: u8 = 3;
/// See [`TAG_HELLO`].
pub const TAG_NEIGHBOURS: u8 = 4;

impl PeerFrame {
    /// `TAG_HELLO || location (u64 BE)`, `TAG_ROUTING || CBOR message`,
    /// `TAG_SWAP || CBOR swap message` or `TAG_NEIGHBOURS || count (u16 BE)
    /// || count locations (u64 BE each)`.
    pub fn encode(&self) -> Vec<u8> {
        let capacity = match self {
            PeerFrame::Routing(msg) => 1 + msg.encoded_capacity(),
            PeerFrame::Neighbours { locations } => 3 + 8 * locations.len(),
            _ => 64,
        };
        let mut out = Vec::with_capacity(capacity);
        self.encode_into(&mut out);
        out
    }

    /// Append [`PeerFrame::encode`]'s bytes to `out`: a link writer encodes
    /// straight into the frame it seals, so a block is written once. A
    /// neighbourhood is cut to its first [`MAX_NEIGHBOURS`] locations.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            PeerFrame::Hello { location } => {
                out.push(TAG_HELLO);
                out.extend_from_slice(&location.0.to_be_bytes());
            }
            PeerFrame::Routing(msg) => {
                out.push(TAG_ROUTING);
                encode_cbor_into(msg, out);
            }
            PeerFrame::Swap(msg) => {
                out.push(TAG_SWAP);
                msg.encode_into(out);
            }
            PeerFrame::Neighbours { locations } => {
                let locations = &locations[..locations.len().min(MAX_NEIGHBOURS)];
                out.push(TAG_NEIGHBOURS);
                // At most MAX_NEIGHBOURS (64): fits in a u16.
                out.extend_from_slice(&(locations.len() as u16).to_be_bytes());
                for l in locations {
                    out.extend_from_slice(&l.0.to_be_bytes());
                }
            }
        }
    }

    /// Decode a frame payload; never panics.
    pub fn decode(bytes: &[u8]) -> Result<PeerFrame, DecodeError> {
        match bytes.split_first() {
            Some((&TAG_HELLO, rest)) => {
                let arr: [u8; 8] = rest
                    .try_into()
                    .map_err(|_| DecodeError::Malformed(Malformed::HelloLength(rest.len())))?;
                Ok(PeerFrame::Hello {
                    location: Location(u64::from_be_bytes(arr)),
                })
            }
            Some((&TAG_ROUTING, rest)) => Message::decode(rest).map(PeerFrame::Routing),
            Some((&TAG_SWAP, rest)) => SwapMessage::decode(rest).map(PeerFrame::Swap),
            Some((&TAG_NEIGHBOURS, rest)) => decode_neighbours(rest),
            Some((&tag, _)) => Err(DecodeError::Malformed(Malformed::UnknownFrameTag(tag))),
            None => Err(DecodeError::Malformed(Malformed::EmptyFrame)),
        }
    }
}

/// A count, then exactly that many locations: nothing more, nothing less,
/// at most [`MAX_NEIGHBOURS`] (checked before anything is allocated).
fn decode_neighbours(rest: &[u8]) -> Result<PeerFrame, DecodeError> {
    let bad = || DecodeError::Malformed(Malformed::NeighboursLength(rest.len()));
    let (count, body) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
    let count = usize::from(u16::from_be_bytes(*count));
    if count > MAX_NEIGHBOURS || body.len() != 8 * count {
        return Err(bad());
    }
    let locations = body
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Location(u64::from_be_bytes(b))
        })
        .collect();
    Ok(PeerFrame::Neighbours { locations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbourhood_round_trips_and_a_wrong_one_is_refused() {
        let frame = PeerFrame::Neighbours {
            locations: vec![Location(1), Location(u64::MAX), Location(1 << 40)],
        };
        let bytes = frame.encode();
        assert_eq!(bytes.len(), 3 + 24);
        assert_eq!(PeerFrame::decode(&bytes).unwrap(), frame);
        let empty = PeerFrame::Neighbours { locations: vec![] };
        assert_eq!(PeerFrame::decode(&empty.encode()).unwrap(), empty);
        // A count that does not match the body, a missing count, too many.
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[..2],
            &[TAG_NEIGHBOURS, 0, 65][..],
        ] {
            assert!(matches!(
                PeerFrame::decode(bad),
                Err(DecodeError::Malformed(Malformed::NeighboursLength(_)))
            ));
        }
        let mut many = vec![TAG_NEIGHBOURS, 0, 65];
        many.extend(std::iter::repeat_n(0u8, 8 * 65));
        assert!(PeerFrame::decode(&many).is_err());
    }

    #[test]
    fn a_long_neighbourhood_is_cut_when_encoded() {
        let frame = PeerFrame::Neighbours {
            locations: (0..100).map(Location).collect(),
        };
        let PeerFrame::Neighbours { locations } = PeerFrame::decode(&frame.encode()).unwrap()
        else {
            panic!("not a neighbourhood");
        };
        assert_eq!(locations.len(), MAX_NEIGHBOURS);
    }
}
