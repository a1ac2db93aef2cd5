//! What a swap shows of a node, and how: its offer (its location and its
//! neighbours'), the offer on the wire, the commitment to a nonce, and the
//! router's side of a swap (a new location for this node or a neighbour).

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use super::vocab::SwapAction;
use super::SwapOffer;
use crate::keys::Location;
use crate::message::swap::{Nonce, SwapMessage, WireOffer};
use crate::message::Uid;
use crate::routing::{PeerId, Router};

/// `SHA-256(nonce)`: the commitment to a nonce.
pub fn commitment(nonce: &Nonce) -> Nonce {
    Sha256::digest(nonce).into()
}

impl<P: PeerId> Router<P> {
    /// This node's location is now `location` (it swapped).
    pub fn set_location(&mut self, location: Location) {
        self.location = location;
    }

    /// Neighbour `peer` announced a new location; unknown peers are ignored.
    pub fn move_neighbour(&mut self, peer: &P, location: Location) {
        if let Some(n) = self.neighbours.get_mut(peer) {
            n.location = location;
        }
    }
}

pub(super) fn reject<P>(out: &mut Vec<SwapAction<P>>, to: P, uid: Uid) {
    out.push(SwapAction::Send {
        to,
        msg: SwapMessage::SwapRejected { uid },
    });
}

/// A uniformly random peer among `peers`, other than `except`.
pub(super) fn pick<'a, P: PeerId + 'a>(
    peers: impl Iterator<Item = &'a P>,
    except: Option<&P>,
    rng: &mut dyn RngCore,
) -> Option<P> {
    let candidates: Vec<&P> = peers.filter(|p| Some(*p) != except).collect();
    if candidates.is_empty() {
        return None;
    }
    Some(candidates[rng.gen_range(0..candidates.len())].clone())
}

/// This node's offer: its location and every neighbour's.
pub(super) fn own_offer<P: PeerId>(router: &Router<P>) -> SwapOffer {
    SwapOffer::own(
        router.location(),
        router.neighbours.values().copied().collect(),
    )
}

pub(super) fn to_wire(offer: &SwapOffer) -> WireOffer {
    WireOffer {
        location: offer.location().0,
        neighbours: offer.neighbours().iter().map(|l| l.0).collect(),
    }
}

/// The other side's offer, if its nonce matches its commitment.
pub(super) fn revealed(offer: WireOffer, nonce: &Nonce, commit: &Nonce) -> Option<SwapOffer> {
    from_wire(offer).filter(|_| commitment(nonce) == *commit)
}

pub(super) fn from_wire(offer: WireOffer) -> Option<SwapOffer> {
    let neighbours = offer.neighbours.into_iter().map(Location).collect();
    SwapOffer::new(Location(offer.location), neighbours).ok()
}
