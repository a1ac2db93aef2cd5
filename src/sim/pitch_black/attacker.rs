//! A dishonest swapper (the Pitch Black attack, Evans, GauthierDickey and
//! Grothoff, ACSAC 2007), for the simulator only: it speaks the swap
//! protocol's messages so that honest nodes cannot tell it from a peer,
//! but it
//!
//! - answers every walk that reaches it as the partner, never relaying;
//! - starts walks as fast as its neighbours accept them
//!   ([`SwapConfig::walks_per_peer`] per neighbour per interval);
//! - always offers a location next to its attack point, with neighbours
//!   claimed at the opposite side of the circle, so that by the swap rule
//!   it looks badly placed and an honest node gains by taking its place;
//! - never takes the location it is given, so every swap with it moves one
//!   honest location to its attack point for good.
//!
//! It cannot shape its offer to the other side's: as initiator it commits
//! to nonce and offer together ([`offer_commitment`]) before it sees the
//! partner's, and as partner it reveals before it sees the initiator's.

use std::collections::BTreeMap;

use rand::{Rng, RngCore};

use crate::keys::Location;
use crate::message::swap::{Nonce, SwapMessage, WireOffer};
use crate::message::Uid;
use crate::routing::swap::{offer_commitment, SwapAction, SwapConfig, SwapEvent, SwapOffer};
use crate::routing::{PeerId, Router, Time};

/// How far from its point an attacker's offered locations fall (a
/// 2^-40 of the circle).
pub const ATTACK_REACH: u64 = 1 << 24;

/// Neighbours an attacker claims in an offer: an honest node's degree.
pub const CLAIMED_NEIGHBOURS: usize = 10;

/// One attacker's state.
pub struct Attacker<P> {
    point: Location,
    config: SwapConfig,
    next: Time,
    /// Walks it started: uid → (first hop, nonce, offer, deadline).
    started: BTreeMap<Uid, (P, Nonce, SwapOffer, Time)>,
    /// Walks it answered: uid → (upstream, deadline).
    answering: BTreeMap<Uid, (P, Time)>,
    /// Offers it revealed (each one a location an honest node may take).
    pub offers: u64,
}

impl<P: PeerId> Attacker<P> {
    pub fn new(point: Location, config: SwapConfig, now: Time, rng: &mut dyn RngCore) -> Self {
        let spacing = Self::spacing(&config);
        Attacker {
            point,
            next: now + rng.gen_range(0..spacing),
            config,
            started: BTreeMap::new(),
            answering: BTreeMap::new(),
            offers: 0,
        }
    }

    /// Time between its rounds of walks (one to each neighbour each).
    fn spacing(config: &SwapConfig) -> Time {
        (config.interval_ms / Time::from(config.walks_per_peer.max(1))).max(1)
    }

    pub fn next_deadline(&self) -> Option<Time> {
        Some(self.next)
    }

    /// Its offer: a location a hair from its point, neighbours opposite.
    fn offer(&self, rng: &mut dyn RngCore) -> SwapOffer {
        let jitter = |rng: &mut dyn RngCore| rng.gen_range(0..ATTACK_REACH);
        let at = Location(self.point.0.wrapping_add(jitter(rng)));
        let opposite = self.point.0.wrapping_add(1 << 63);
        let neighbours = (0..CLAIMED_NEIGHBOURS)
            .map(|_| Location(opposite.wrapping_add(jitter(rng))))
            .collect();
        SwapOffer::own(at, neighbours)
    }

    fn wire(offer: &SwapOffer) -> WireOffer {
        WireOffer {
            location: offer.location().0,
            neighbours: offer.neighbours().iter().map(|l| l.0).collect(),
        }
    }

    pub fn handle(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        router: &mut Router<P>,
        event: SwapEvent<P>,
    ) -> Vec<SwapAction<P>> {
        let mut out = Vec::new();
        let send =
            |out: &mut Vec<SwapAction<P>>, to: P, msg| out.push(SwapAction::Send { to, msg });
        match event {
            SwapEvent::Tick => {
                self.started.retain(|_, s| s.3 > now);
                self.answering.retain(|_, s| s.1 > now);
                if now >= self.next {
                    self.next = now + Self::spacing(&self.config);
                    let deadline = now + self.config.step_timeout_ms * 2;
                    for (peer, _) in router.neighbours() {
                        let mut nonce = [0u8; 32];
                        rng.fill_bytes(&mut nonce);
                        let uid = rng.next_u64();
                        let offer = self.offer(rng);
                        let commit = offer_commitment(&nonce, &offer);
                        self.started
                            .insert(uid, (peer.clone(), nonce, offer, deadline));
                        let msg = SwapMessage::SwapRequest {
                            uid,
                            htl: self.config.walk_htl,
                            commit,
                        };
                        send(&mut out, peer.clone(), msg);
                    }
                }
            }
            SwapEvent::LinkDown { .. } => {}
            SwapEvent::Message { from, msg } => match msg {
                SwapMessage::LocationChanged { location } => {
                    router.move_neighbour(&from, Location(location));
                }
                SwapMessage::SwapRequest { uid, .. } => {
                    let mut nonce = [0u8; 32];
                    rng.fill_bytes(&mut nonce);
                    let offer = Self::wire(&self.offer(rng));
                    let deadline = now + self.config.step_timeout_ms * 2;
                    self.answering.insert(uid, (from.clone(), deadline));
                    self.offers += 1;
                    send(&mut out, from, SwapMessage::SwapReply { uid, nonce, offer });
                }
                SwapMessage::SwapReply { uid, .. } => {
                    if let Some((via, nonce, offer, _)) = self.started.remove(&uid) {
                        self.offers += 1;
                        let offer = Self::wire(&offer);
                        send(&mut out, via, SwapMessage::SwapCommit { uid, nonce, offer });
                    }
                }
                SwapMessage::SwapCommit { uid, .. } => {
                    // "Swapped": it confirms, and keeps its own location.
                    if let Some((up, _)) = self.answering.remove(&uid) {
                        send(&mut out, up, SwapMessage::SwapComplete { uid });
                    }
                }
                SwapMessage::SwapComplete { .. } | SwapMessage::SwapRejected { .. } => {
                    if let Some(uid) = msg.uid() {
                        self.started.remove(&uid);
                        self.answering.remove(&uid);
                    }
                }
                SwapMessage::TreeRoot { .. }
                | SwapMessage::TreeSize { .. }
                | SwapMessage::TreeInterval { .. } => {}
            },
        }
        out
    }
}
