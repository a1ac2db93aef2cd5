//! What a swap shows of a node, and how: its offer (its location and its
//! neighbours'), the offer on the wire, the commitment to a nonce and offer, and the
//! router's side of a swap (a new location for this node or a neighbour).

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use super::vocab::SwapAction;
use super::SwapOffer;
use crate::keys::Location;
use crate::message::swap::{Nonce, SwapMessage, WireOffer};
use crate::message::Uid;
use crate::routing::{PeerId, Router};

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

/// `SHA-256("veil swap offer" ‖ nonce ‖ location ‖ count ‖ neighbours…)`,
/// integers big-endian: the initiator's commitment to its nonce and offer
/// together, so that it cannot choose either after seeing the partner's.
pub fn offer_commitment(nonce: &Nonce, offer: &SwapOffer) -> Nonce {
    let mut h = Sha256::new()
        .chain_update(b"veil swap offer")
        .chain_update(nonce)
        .chain_update(offer.location().0.to_be_bytes())
        .chain_update((offer.neighbours().len() as u64).to_be_bytes());
    for n in offer.neighbours() {
        h.update(n.0.to_be_bytes());
    }
    h.finalize().into()
}

/// The initiator's offer, if it and its nonce match its commitment.
pub(super) fn revealed(offer: WireOffer, nonce: &Nonce, commit: &Nonce) -> Option<SwapOffer> {
    from_wire(offer).filter(|o| offer_commitment(nonce, o) == *commit)
}

pub(super) fn from_wire(offer: WireOffer) -> Option<SwapOffer> {
    let neighbours = offer.neighbours.into_iter().map(Location).collect();
    SwapOffer::new(Location(offer.location), neighbours).ok()
}
