//! The swap protocol, sans-IO: one node's side of every swap it starts,
//! relays or answers, beside its [`Router`].
//!
//! A [`Swapper`] takes [`SwapEvent`]s (a swap message from a neighbour, a
//! lost link, a tick) with the driver's clock, random source and the node's
//! [`Router`], and returns [`SwapAction`]s. The router is read for the
//! node's location and its neighbours' locations, and written when this
//! node swaps ([`Router::set_location`]) or a neighbour announces its new
//! location ([`Router::move_neighbour`]). The messages and the steps are in
//! [`crate::message::swap`]; the decision is [`decide_with_coin`], the same
//! rule the simulator applies with [`decide`](super::decide).
//!
//! A node is in at most one swap at a time (as initiator or partner), so
//! the offer it shows is the location it gives away. Every step has a
//! deadline; a relay forgets a walk after [`SwapConfig::step_timeout_ms`]
//! without traffic, and at most [`SwapConfig::max_relays`] walks at once.

use std::collections::BTreeMap;

use rand::{Rng, RngCore};

use super::guard::SwapGuard;
use super::offers::{from_wire, offer_commitment, own_offer, pick, reject, revealed, to_wire};
use super::vocab::{SwapAction, SwapConfig, SwapEvent, SwapStats};
use super::{coin_of, decide_with_coin, SwapOffer, SwapSchedule};
use crate::keys::Location;
use crate::message::swap::{Nonce, SwapMessage, WalkHtl, WireOffer};
use crate::message::Uid;
use crate::routing::{PeerId, Router, Time};

/// The one swap this node is in.
#[derive(Clone, Debug)]
enum Busy<P> {
    Initiator {
        uid: Uid,
        via: P,
        nonce: Nonce,
        /// The offer this node committed to (with its nonce) in its request.
        offer: SwapOffer,
        /// Once the partner's `SwapReply` came: swap or not, and to where.
        decided: Option<(bool, Location)>,
        deadline: Time,
    },
    Partner {
        uid: Uid,
        upstream: P,
        their_commit: Nonce,
        nonce: Nonce,
        /// The offer this node revealed in its reply.
        offer: SwapOffer,
        deadline: Time,
    },
}

impl<P> Busy<P> {
    fn uid(&self) -> Uid {
        match self {
            Busy::Initiator { uid, .. } | Busy::Partner { uid, .. } => *uid,
        }
    }

    fn deadline(&self) -> Time {
        match self {
            Busy::Initiator { deadline, .. } | Busy::Partner { deadline, .. } => *deadline,
        }
    }

    /// The neighbour this swap's messages come from and go to.
    fn peer(&self) -> &P {
        match self {
            Busy::Initiator { via, .. } => via,
            Busy::Partner { upstream, .. } => upstream,
        }
    }
}

/// A walk this node relays.
#[derive(Clone, Debug)]
struct Relay<P> {
    upstream: P,
    downstream: P,
    deadline: Time,
}

/// One node's swap state: its own attempt or answer, the walks it relays,
/// its schedule and counters.
pub struct Swapper<P: PeerId> {
    config: SwapConfig,
    /// `swap = true`: attempt, relay and answer; otherwise refuse every walk
    /// (neighbours' `LocationChanged` is followed either way).
    active: bool,
    schedule: SwapSchedule,
    busy: Option<Busy<P>>,
    relays: BTreeMap<Uid, Relay<P>>,
    guard: SwapGuard<P>,
    stats: SwapStats,
}

impl<P: PeerId> Swapper<P> {
    pub fn new(config: SwapConfig, active: bool, now: Time, rng: &mut dyn RngCore) -> Self {
        let schedule = SwapSchedule::new(now, config.interval_ms, rng);
        Swapper {
            config,
            active,
            schedule,
            busy: None,
            relays: BTreeMap::new(),
            guard: SwapGuard::new(),
            stats: SwapStats::default(),
        }
    }

    pub fn stats(&self) -> &SwapStats {
        &self.stats
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn is_paused(&self) -> bool {
        self.config.paused
    }

    /// Pause or resume this node's own attempts.
    pub fn set_paused(&mut self, paused: bool) {
        self.config.paused = paused;
    }

    /// Walks relayed right now.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// When a [`SwapEvent::Tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        let relays = self.relays.values().map(|r| r.deadline).min();
        let own = match &self.busy {
            Some(b) => Some(b.deadline()),
            None if self.active && !self.config.paused => Some(self.schedule.next()),
            None => None,
        };
        relays.into_iter().chain(own).min()
    }

    /// Feed one event; the actions come back in the order they must happen.
    pub fn handle(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        router: &mut Router<P>,
        event: SwapEvent<P>,
    ) -> Vec<SwapAction<P>> {
        let mut out = Vec::new();
        match event {
            SwapEvent::Tick => self.on_tick(now, rng, router, &mut out),
            SwapEvent::LinkDown { peer } => self.on_link_down(&peer, &mut out),
            SwapEvent::Message { from, msg } => {
                // Only neighbours the router knows take part.
                if router.neighbours.contains_key(&from) {
                    self.on_message(now, rng, router, from, msg, &mut out);
                }
            }
        }
        out
    }

    fn on_tick(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        router: &mut Router<P>,
        out: &mut Vec<SwapAction<P>>,
    ) {
        let expired: Vec<Uid> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(uid, _)| *uid)
            .collect();
        for uid in expired {
            if let Some(r) = self.relays.remove(&uid) {
                self.stats.timed_out += 1;
                reject(out, r.upstream, uid);
                reject(out, r.downstream, uid);
            }
        }
        if let Some(busy) = self.busy.take_if(|b| b.deadline() <= now) {
            self.stats.timed_out += 1;
            reject(out, busy.peer().clone(), busy.uid());
        }
        if !self.active || self.config.paused || self.busy.is_some() {
            return;
        }
        if !self.schedule.due(now, rng) || router.neighbours.is_empty() {
            return;
        }
        if self.config.crowding_check && self.guard.crowded(router.location()) {
            // This node holds a location from a crowded part of the circle
            // (a dishonest swapper's, most likely): it draws a fresh one
            // instead of attempting, which gives the circle back what the
            // cluster took.
            self.stats.relocated += 1;
            let fresh = Location(rng.next_u64());
            return self.move_to(router, fresh, out);
        }
        self.stats.attempts += 1;
        let Some(via) = pick(router.neighbours.keys(), None, rng) else {
            return;
        };
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let uid = self.fresh_uid(rng);
        let offer = own_offer(router);
        out.push(SwapAction::Send {
            to: via.clone(),
            msg: SwapMessage::SwapRequest {
                uid,
                htl: self.config.walk_htl,
                commit: offer_commitment(&nonce, &offer),
            },
        });
        self.busy = Some(Busy::Initiator {
            uid,
            via,
            nonce,
            offer,
            decided: None,
            deadline: now + self.walk_timeout(),
        });
    }

    /// The whole walk and its answer may take one step timeout per hop.
    fn walk_timeout(&self) -> Time {
        self.config.step_timeout_ms * Time::from(self.config.walk_htl.max(1))
    }

    fn fresh_uid(&self, rng: &mut dyn RngCore) -> Uid {
        let mut uid = rng.next_u64();
        while self.relays.contains_key(&uid) {
            uid = rng.next_u64();
        }
        uid
    }

    fn on_link_down(&mut self, peer: &P, out: &mut Vec<SwapAction<P>>) {
        self.guard.forget(peer);
        let broken: Vec<Uid> = self
            .relays
            .iter()
            .filter(|(_, r)| &r.upstream == peer || &r.downstream == peer)
            .map(|(uid, _)| *uid)
            .collect();
        for uid in broken {
            if let Some(r) = self.relays.remove(&uid) {
                let other = if &r.upstream == peer {
                    r.downstream
                } else {
                    r.upstream
                };
                reject(out, other, uid);
            }
        }
        if let Some(busy) = self.busy.take_if(|b| b.peer() == peer) {
            if matches!(busy, Busy::Initiator { .. }) {
                self.stats.failed += 1;
            }
        }
    }

    fn on_message(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        router: &mut Router<P>,
        from: P,
        msg: SwapMessage,
        out: &mut Vec<SwapAction<P>>,
    ) {
        if let SwapMessage::LocationChanged { location } = msg {
            let location = Location(location);
            router.move_neighbour(&from, location);
            out.push(SwapAction::NeighbourMoved {
                peer: from,
                location,
            });
            return;
        }
        if let SwapMessage::SwapRequest { uid, htl, commit } = msg {
            return self.on_request(now, rng, router, from, (uid, htl, commit), out);
        }
        let Some(uid) = msg.uid() else { return };
        // A walk this node relays: pass the message on, the way it goes.
        if let Some(relay) = self.relays.get_mut(&uid) {
            let to = if from == relay.downstream {
                match msg {
                    SwapMessage::SwapReply { .. }
                    | SwapMessage::SwapComplete { .. }
                    | SwapMessage::SwapRejected { .. } => relay.upstream.clone(),
                    _ => return,
                }
            } else if from == relay.upstream {
                match msg {
                    SwapMessage::SwapCommit { .. } | SwapMessage::SwapRejected { .. } => {
                        relay.downstream.clone()
                    }
                    _ => return,
                }
            } else {
                return;
            };
            relay.deadline = now + self.config.step_timeout_ms;
            if let SwapMessage::SwapReply { offer, .. } | SwapMessage::SwapCommit { offer, .. } =
                &msg
            {
                self.guard.saw(Location(offer.location));
            }
            if matches!(
                msg,
                SwapMessage::SwapComplete { .. } | SwapMessage::SwapRejected { .. }
            ) {
                self.relays.remove(&uid);
            }
            out.push(SwapAction::Send { to, msg });
            return;
        }
        // This node's own swap: only its one neighbour on the walk may speak.
        if self
            .busy
            .as_ref()
            .is_none_or(|b| b.uid() != uid || *b.peer() != from)
        {
            return;
        }
        match msg {
            SwapMessage::SwapRejected { .. } => {
                if let Some(Busy::Initiator { .. }) = self.busy.take() {
                    self.stats.failed += 1;
                }
            }
            SwapMessage::SwapReply { nonce, offer, .. } => self.on_reply(now, nonce, offer, out),
            SwapMessage::SwapCommit { nonce, offer, .. } => {
                self.on_commit(router, nonce, offer, out)
            }
            SwapMessage::SwapComplete { .. } => self.on_complete(router, out),
            // The tree embedding's messages go to the embedder, not here.
            SwapMessage::SwapRequest { .. }
            | SwapMessage::LocationChanged { .. }
            | SwapMessage::TreeRoot { .. }
            | SwapMessage::TreeSize { .. }
            | SwapMessage::TreeInterval { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        router: &Router<P>,
        from: P,
        (uid, htl, commit): (Uid, WalkHtl, Nonce),
        out: &mut Vec<SwapAction<P>>,
    ) {
        if htl == 0 {
            out.push(SwapAction::Misbehaved {
                peer: from,
                reason: "swap request with hops-to-live zero",
            });
            return;
        }
        let known =
            self.relays.contains_key(&uid) || self.busy.as_ref().is_some_and(|b| b.uid() == uid);
        if !self.active || known {
            return reject(out, from, uid);
        }
        let (interval, limit) = (self.config.interval_ms, self.config.walks_per_peer);
        if !self.guard.take_walk(&from, now, interval, limit) {
            self.stats.limited += 1;
            return reject(out, from, uid);
        }
        // At the maximum the walk's budget falls only on a coin, so the
        // first relay cannot tell an originated walk from a relayed one.
        let max = self.config.walk_htl.max(1);
        let htl = htl.min(max);
        let left = if htl == max {
            htl - WalkHtl::from(rng.gen_bool(0.5))
        } else {
            htl - 1
        };
        let next = pick(router.neighbours.keys(), Some(&from), rng);
        match next {
            Some(to) if left > 0 => {
                if self.relays.len() >= self.config.max_relays {
                    return reject(out, from, uid);
                }
                self.stats.relayed += 1;
                self.relays.insert(
                    uid,
                    Relay {
                        upstream: from,
                        downstream: to.clone(),
                        deadline: now + self.config.step_timeout_ms,
                    },
                );
                out.push(SwapAction::Send {
                    to,
                    msg: SwapMessage::SwapRequest {
                        uid,
                        htl: left,
                        commit,
                    },
                });
            }
            // The walk ends here: answer it, unless already in a swap.
            _ if self.busy.is_some() => reject(out, from, uid),
            _ => {
                let mut nonce = [0u8; 32];
                rng.fill_bytes(&mut nonce);
                self.stats.answered += 1;
                // Revealed at once: the initiator is bound to the nonce and
                // offer it committed to, so neither side can shape its
                // offer or its nonce to the other's.
                let offer = own_offer(router);
                out.push(SwapAction::Send {
                    to: from.clone(),
                    msg: SwapMessage::SwapReply {
                        uid,
                        nonce,
                        offer: to_wire(&offer),
                    },
                });
                self.busy = Some(Busy::Partner {
                    uid,
                    upstream: from,
                    their_commit: commit,
                    nonce,
                    offer,
                    deadline: now + self.walk_timeout(),
                });
            }
        }
    }

    /// The initiator has the partner's nonce and offer: decide, and reveal
    /// its own (or refuse a crowded location before anything moved).
    fn on_reply(
        &mut self,
        now: Time,
        their_nonce: Nonce,
        offer: WireOffer,
        out: &mut Vec<SwapAction<P>>,
    ) {
        let step = self.config.step_timeout_ms * Time::from(self.config.walk_htl.max(1));
        let Some(Busy::Initiator {
            uid,
            via,
            nonce,
            offer: mine,
            decided: None,
            ..
        }) = &self.busy
        else {
            return; // a second reply: ignored
        };
        let (uid, via) = (*uid, via.clone());
        let Some(theirs) = from_wire(offer) else {
            self.busy = None;
            self.stats.failed += 1;
            return reject(out, via, uid);
        };
        let swap = Self::decide(mine, nonce, &theirs, &their_nonce);
        let msg = SwapMessage::SwapCommit {
            uid,
            nonce: *nonce,
            offer: to_wire(mine),
        };
        if self.refuses(swap, theirs.location()) {
            self.busy = None;
            self.stats.failed += 1;
            return reject(out, via, uid);
        }
        out.push(SwapAction::Send { to: via, msg });
        if let Some(Busy::Initiator {
            decided, deadline, ..
        }) = &mut self.busy
        {
            *decided = Some((swap, theirs.location()));
            *deadline = now + step;
        }
    }

    /// The partner has the initiator's nonce and offer: check them against
    /// the commitment, decide, and confirm (or refuse a crowded location).
    fn on_commit(
        &mut self,
        router: &mut Router<P>,
        their_nonce: Nonce,
        offer: WireOffer,
        out: &mut Vec<SwapAction<P>>,
    ) {
        let Some(Busy::Partner {
            uid,
            upstream,
            their_commit,
            nonce,
            offer: mine,
            ..
        }) = self.busy.take_if(|b| matches!(b, Busy::Partner { .. }))
        else {
            return;
        };
        let Some(theirs) = revealed(offer, &their_nonce, &their_commit) else {
            // A reveal that does not match its commitment (the initiator,
            // not the neighbour that relayed it, is at fault): no swap.
            return reject(out, upstream, uid);
        };
        let swap = Self::decide(&theirs, &their_nonce, &mine, &nonce);
        if self.refuses(swap, theirs.location()) {
            return reject(out, upstream, uid);
        }
        out.push(SwapAction::Send {
            to: upstream,
            msg: SwapMessage::SwapComplete { uid },
        });
        if swap {
            self.swap_to(router, theirs.location(), out);
        }
    }

    /// The partner confirmed: the initiator swaps if the rule said so.
    fn on_complete(&mut self, router: &mut Router<P>, out: &mut Vec<SwapAction<P>>) {
        if let Some(Busy::Initiator {
            decided: Some((swap, to)),
            ..
        }) = self.busy.take_if(|b| {
            matches!(
                b,
                Busy::Initiator {
                    decided: Some(_),
                    ..
                }
            )
        }) {
            if swap {
                self.swap_to(router, to, out);
            }
        }
    }

    /// The rule, the initiator's offer and nonce first on both sides (the
    /// same numbers in the same order, so both agree).
    fn decide(a: &SwapOffer, na: &Nonce, b: &SwapOffer, nb: &Nonce) -> bool {
        let (a_rest, b_rest) = SwapOffer::without_link(a, b);
        decide_with_coin(&a_rest, &b_rest, coin_of(na, nb))
    }

    /// Does this node refuse to take `location` (a crowded part of the
    /// circle) when the rule says `swap`? The location joins the sample.
    fn refuses(&mut self, swap: bool, location: Location) -> bool {
        let crowded = swap && self.config.crowding_check && self.guard.crowded(location);
        self.guard.saw(location);
        self.stats.refused_crowded += u64::from(crowded);
        crowded
    }

    /// Take `location` by a swap, tell every neighbour, count it.
    fn swap_to(
        &mut self,
        router: &mut Router<P>,
        location: Location,
        out: &mut Vec<SwapAction<P>>,
    ) {
        self.stats.swaps += 1;
        self.schedule.record(true);
        self.move_to(router, location, out);
    }

    /// Take `location` and tell every neighbour.
    fn move_to(
        &mut self,
        router: &mut Router<P>,
        location: Location,
        out: &mut Vec<SwapAction<P>>,
    ) {
        let from = router.location();
        router.set_location(location);
        for peer in router.neighbours.keys() {
            out.push(SwapAction::Send {
                to: peer.clone(),
                msg: SwapMessage::LocationChanged {
                    location: location.0,
                },
            });
        }
        out.push(SwapAction::Swapped { from, to: location });
    }
}
