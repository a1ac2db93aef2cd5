//! The routing core: a sans-IO state machine for one node.
//!
//! Events go in ([`Event`]: a message from a neighbour, a link coming up or
//! going down, a request from the local client, a clock tick) and actions come
//! out ([`Action`]: send this message to that neighbour, answer the local
//! client, cache or store a block, report a misbehaving peer). The router owns
//! no socket, thread or clock: `now` and the random source are arguments, and
//! the datastore is consulted through [`BlockSource`]. The tokio node, the
//! in-process harness and the simulator all drive this same type.
//!
//! Rooms: this file holds [`Router`], the pool of searches in flight (uid
//! table, loop detection, per-peer and global limits, counters, dispatch);
//! `search.rs` holds one request's state machine (next hop, reading a reply,
//! how it ends); [`htl`] holds the hops-to-live policies; `vocab.rs` holds the
//! driving API's types, re-exported here.
//!
//! The rules (see `docs/protocol.md`):
//! 1. A request for a key the node holds is answered `DataFound` at once.
//!    Otherwise the node keeps a budget `b` from the HTL policy; `b == 0`
//!    answers `DataNotFound`, else the request goes to the best candidate
//!    with `htl = b`.
//! 2. Candidates are the connected neighbours, minus the upstream peer, minus
//!    peers already tried for this uid, minus peers that sent this uid while it
//!    was being handled. Best is the smallest circular distance to the key
//!    (ties: lower location, then lower peer ID).
//! 3. A uid already being handled *for the same key* is answered
//!    `RejectedLoop`; a uid is forgotten as soon as the node has replied.
//!    The same uid with another key is a separate request (uid scoping), so
//!    replaying a foreign or finished uid teaches the prober nothing.
//! 4. `RouteNotFound(h)` sets `b = min(b, h)`; `RejectedLoop`, an overload
//!    reply or a bad block cost one hop; then the next
//!    candidate is tried, `DataNotFound` is answered at `b == 0` and
//!    `RouteNotFound(b)` when no candidate is left. `DataNotFound` from
//!    downstream is passed up at once.
//! 5. `DataFound` is verified, cached and passed back to the upstream peer.
//! 6. A silent peer times out after `timeout_base + timeout_per_hop * htl`;
//!    since the node cannot know how much budget the silent peer spent, it
//!    ends the search (`DataNotFound` / `InsertFailed`). Losing the link to
//!    the peer being waited on ends it the same way. A search whose upstream
//!    link is gone runs to its end but sends no answer.
//! 7. Inserts follow the same rules; every node that accepts one caches the
//!    block, a node whose budget reaches zero stores it and answers
//!    `InsertSucceeded`, and a node that runs out of candidates stores it and
//!    answers `RouteNotFound`. Every node that accepted the insert with an
//!    HTL at or below `replicate_htl` also stores it when the insert ends
//!    (replication, [`htl::stores_replica`]).
//! 8. With `insert_end = "sink"`, a sink (closer to the key than every
//!    neighbour) caps an insert at `replicate_htl` and keeps a replica; a
//!    replicating node ends the insert at its first loop (`flows.rs`).

mod flows;
pub mod htl;
mod neighbours;
pub use neighbours::MAX_FOAF;
pub mod embed;
mod pool;
mod repeats;
mod search;
pub mod swap;
pub mod tunnel;
mod vocab;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::RngCore;

use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Htl, Message, Uid};
pub use crate::routing::htl::{Anonymity, LinkCoins};
use crate::routing::htl::{DeterministicHtl, HtlPolicy};
use crate::routing::neighbours::Neighbours;
use crate::routing::pool::Searches;
use crate::routing::repeats::Repeats;
use crate::routing::search::{OnReply, Origin, Request, Search, View};
use crate::routing::tunnel::Tunnels;
pub use crate::routing::vocab::{
    Action, BlockSource, ClientOutcome, ClientToken, Event, Failure, HtlRule, InsertEnd, Lookahead,
    Misbehaviour, Op, PeerId, RouterConfig, RouterStats, SessionRequest, Time, TunnelConfig,
    DEFAULT_MAX_HTL, DEFAULT_REPLICATE_HTL,
};

/// One search's identity at a node: its uid *and* its key (uid scoping).
type Flow = (Uid, RoutingKey);

/// What one call to [`Router::handle`] works with: the driver's clock,
/// random source and datastore, and the actions produced so far.
struct Ctx<'a, P> {
    now: Time,
    rng: &'a mut dyn RngCore,
    store: &'a dyn BlockSource,
    out: &'a mut Vec<Action<P>>,
}

/// One node's routing state: the pool of searches in flight, keyed by uid.
///
/// The pool owns what is shared between searches (the neighbour table, loop
/// detection, per-peer and global limits, counters) and carries out what each
/// search (`routing/search.rs`) decides.
///
/// Its layout is kept small (about 200 bytes, the rest behind pointers that
/// stay null while unused): `veil sim` holds 100,000 of them, and every hop
/// of every request touches one at random, so what does not fit in the
/// cache is paid for on each.
pub struct Router<P: PeerId> {
    /// Shared: the simulator's routers all point at one copy.
    config: Arc<RouterConfig>,
    location: Location,
    policy: Box<dyn HtlPolicy>,
    /// Each neighbour's location, link coins (as the driver gave them at
    /// `LinkUp`) and requests in flight here.
    neighbours: Neighbours<P>,
    searches: Searches<P>,
    stats: RouterStats,
    /// Tunnels this node originates, relays or exits (`routing/tunnel/`).
    tunnels: Box<Tunnels<P>>,
    /// Has any tunnel event reached this router? Until then its tunnel
    /// state is empty and has no deadline (the `none` and `freenet` modes
    /// never look at it).
    tunnels_used: bool,
    /// The simulator's short stand-in blocks are inserted as exits' puts
    /// (never set outside `sim`).
    stand_in_blocks: bool,
    /// Flows that share a uid with a flow waiting on the same peer go to
    /// that peer under a fresh alias uid: (peer, alias) -> flow, and back.
    /// (Trees: empty, they allocate nothing; they are nearly always empty.)
    aliases: BTreeMap<(P, Uid), Flow>,
    alias_of: BTreeMap<Flow, (P, Uid)>,
    /// The local client's failed gets and ended inserts per key, so a
    /// repeat starts on another first hop (`repeats.rs`); null until then.
    repeats: Option<Box<Repeats>>,
}

impl<P: PeerId> Router<P> {
    /// A router with the deterministic HTL policy.
    pub fn new(config: RouterConfig, location: Location) -> Self {
        Self::with_policy(config, location, Box::new(DeterministicHtl))
    }

    /// A router with `policy`; `config` may be shared between routers.
    pub fn with_policy(
        config: impl Into<Arc<RouterConfig>>,
        location: Location,
        policy: Box<dyn HtlPolicy>,
    ) -> Self {
        Router {
            config: config.into(),
            location,
            policy,
            neighbours: Neighbours::default(),
            searches: Searches::default(),
            stats: RouterStats::default(),
            tunnels: Box::default(),
            tunnels_used: false,
            stand_in_blocks: false,
            aliases: BTreeMap::new(),
            alias_of: BTreeMap::new(),
            repeats: None,
        }
    }

    /// Route the local client's `ClientGet` / `ClientPut` through tunnels
    /// (the `tunnel` mode) instead of from this node.
    pub fn set_client_tunnels(&mut self, on: bool) {
        self.tunnels.client_mode = on;
        self.tunnels_used |= on;
    }

    pub fn location(&self) -> Location {
        self.location
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    pub fn neighbours(&self) -> impl Iterator<Item = (&P, &Location)> {
        self.neighbours.iter()
    }

    /// Neighbour `peer` announced the locations of its own neighbours (for
    /// FOAF routing, [`crate::routing::Lookahead::Foaf`]): at most
    /// [`MAX_FOAF`] are kept, this node's own
    /// location left out (a request sent back here would only loop).
    /// Unknown peers are ignored.
    pub fn set_neighbour_view(&mut self, peer: &P, locations: &[Location]) {
        let own = self.location;
        if let Some(n) = self.neighbours.get_mut(peer) {
            n.foaf = locations
                .iter()
                .copied()
                .filter(|l| *l != own)
                .take(MAX_FOAF)
                .collect();
        }
    }

    /// How many of its neighbours' locations `peer` announced (kept).
    pub fn neighbour_view_len(&self, peer: &P) -> usize {
        self.neighbours.get(peer).map_or(0, |n| n.foaf.len())
    }

    /// Requests in flight through this node.
    pub fn pending_count(&self) -> usize {
        self.searches.len()
    }

    /// Is this uid being handled right now (for any key)?
    pub fn is_handling(&self, uid: Uid) -> bool {
        self.flows_of(uid).next().is_some()
    }

    /// The earliest time at which a [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        let searches = self.searches.values().filter_map(Search::deadline).min();
        if !self.tunnels_used {
            return searches;
        }
        let tunnels = self.tunnels.next_deadline(&self.config.tunnel);
        searches.into_iter().chain(tunnels).min()
    }

    /// The searches of one uid, in key order.
    fn flows_of(&self, uid: Uid) -> impl Iterator<Item = (&Flow, &Search<P>)> {
        self.searches.of_uid(uid)
    }

    /// Feed one event; the actions come back in the order they must happen.
    pub fn handle(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        event: Event<P>,
    ) -> Vec<Action<P>> {
        let mut out = Vec::new();
        self.handle_into(now, rng, store, event, &mut out);
        out
    }

    /// [`Router::handle`] into a buffer the caller reuses between events:
    /// the actions are appended to `out` (which is not cleared first).
    pub fn handle_into(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        event: Event<P>,
        out: &mut Vec<Action<P>>,
    ) {
        let first = out.len();
        let mut cx = Ctx {
            now,
            rng,
            store,
            out,
        };
        match event {
            Event::LinkUp {
                peer,
                location,
                coins,
            } => {
                self.neighbours.insert(peer, location, coins);
            }
            Event::LinkDown { peer } => self.on_link_down(&mut cx, peer),
            Event::Message { from, msg } => {
                if self.neighbours.contains_key(&from) {
                    if msg.message_kind().is_tunnel() {
                        self.tunnels_used = true;
                        self.on_tunnel_message(&mut cx, from, msg);
                    } else {
                        self.on_message(&mut cx, from, msg);
                    }
                }
            }
            Event::ClientGet { token, key } if self.tunnels.client_mode => {
                let request = SessionRequest::Get(vec![key]);
                self.on_session(&mut cx, token, request, true)
            }
            Event::ClientPut { token, block } if self.tunnels.client_mode => {
                let request = SessionRequest::Put(vec![block]);
                self.on_session(&mut cx, token, request, true)
            }
            Event::ClientGet { token, key } => self.on_client(&mut cx, token, Request::Get { key }),
            Event::ClientPut { token, block } => {
                self.on_client(&mut cx, token, Request::Put { block })
            }
            Event::ClientSession { token, request } => {
                self.tunnels_used = true;
                self.on_session(&mut cx, token, request, false)
            }
            Event::Tick => {
                self.on_tick(&mut cx);
                if self.tunnels_used {
                    self.on_tunnel_tick(&mut cx);
                }
            }
        }
        let breaches = cx.out[first..]
            .iter()
            .filter(|a| matches!(a, Action::Misbehaved { .. }));
        self.stats.misbehaviours += breaches.count() as u64;
    }

    fn on_client(&mut self, cx: &mut Ctx<'_, P>, token: ClientToken, request: Request) {
        let failed = |failure| Action::ClientDone {
            token,
            outcome: ClientOutcome::Failed(failure),
        };
        if let Request::Get { key } = &request {
            if let Some(found) = cx.store.lookup(key) {
                cx.out.push(Action::ClientDone {
                    token,
                    outcome: ClientOutcome::Found(found),
                });
                return;
            }
        }
        if let Some(refused) = self.refuse_put(cx, &request) {
            cx.out.push(failed(refused));
            return;
        }
        if self.searches.len() >= self.config.max_pending {
            cx.out.push(failed(Failure::Overloaded));
            return;
        }
        if self.neighbours.is_empty() {
            cx.out.push(failed(Failure::NoPeers));
            return;
        }
        let uid = self.fresh_uid(cx);
        let budget = self.originate_budget(cx);
        self.stats.requests_originated += 1;
        let op = match request {
            Request::Get { .. } => Op::Get,
            Request::Put { .. } => Op::Put,
        };
        let mut search = Search::new(uid, request, Origin::Client(token), budget);
        // A repeat passes over as many of its best first hops as went before.
        let skip = self
            .repeats
            .as_ref()
            .map_or(0, |r| r.skip(op, search.key()));
        if skip > 0 {
            let mut first: Vec<(&P, &Location)> = self.neighbours.iter().collect();
            let target = search.key().location();
            first.sort_by(|(pa, la), (pb, lb)| {
                (la.distance(target), **la, *pa).cmp(&(lb.distance(target), **lb, *pb))
            });
            let skip = usize::from(skip) % first.len();
            for (peer, _) in first.into_iter().take(skip) {
                search.exclude(peer.clone());
            }
        }
        cx.out.push(Action::Originated {
            token,
            uid,
            key: search.key(),
            op,
        });
        self.start(cx, uid, search);
    }

    /// A uid no search here uses.
    fn fresh_uid(&self, cx: &mut Ctx<'_, P>) -> Uid {
        let mut uid = cx.rng.next_u64();
        while self.is_handling(uid) {
            uid = cx.rng.next_u64();
        }
        uid
    }

    /// The budget of a request this node starts (for its client or as an exit).
    fn originate_budget(&mut self, cx: &mut Ctx<'_, P>) -> Htl {
        self.policy
            .originate(self.config.max_htl, cx.rng)
            .min(self.config.max_htl)
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        match msg {
            Message::DataRequest { uid, key, htl } => {
                self.on_request(cx, from, uid, htl, key, Request::Get { key })
            }
            Message::InsertRequest {
                uid,
                key,
                htl,
                block,
            } => {
                if block.verify(&key).is_err() {
                    cx.out.push(Action::Misbehaved {
                        peer: from,
                        reason: Misbehaviour::BadBlock,
                    });
                    return;
                }
                // Verified: `key` is the block's own key.
                self.on_request(cx, from, uid, htl, key, Request::Put { block })
            }
            reply => self.on_reply(cx, from, reply),
        }
    }

    /// The signed-key collision rule: an insert of a signed block under a
    /// key this node already holds a different (valid) block for collides;
    /// the original is returned and kept. Content-hash blocks cannot collide.
    fn collides(&mut self, cx: &mut Ctx<'_, P>, block: &Block) -> Option<Block> {
        if !block.is_signed() {
            return None;
        }
        let held = cx.store.lookup(&block.routing_key())?;
        (held != *block).then(|| {
            self.stats.collisions += 1;
            held
        })
    }

    /// Why an insert this node originates (for its client or as a tunnel's
    /// exit) is refused before any search: its block does not verify, or
    /// it collides here. The originator checks a block as every hop will.
    fn refuse_put(&mut self, cx: &mut Ctx<'_, P>, request: &Request) -> Option<Failure> {
        let Request::Put { block } = request else {
            return None;
        };
        // A content-hash block always hashes to its own key.
        if block.is_signed() && block.verify(&block.routing_key()).is_err() {
            return Some(Failure::BadBlock);
        }
        self.collides(cx, block).map(|_| Failure::Collision)
    }

    /// A request for `key` (a put's block verified against it).
    fn on_request(
        &mut self,
        cx: &mut Ctx<'_, P>,
        from: P,
        uid: Uid,
        htl: Htl,
        key: RoutingKey,
        request: Request,
    ) {
        if htl == 0 {
            cx.out.push(Action::Misbehaved {
                peer: from,
                reason: Misbehaviour::ZeroHtl,
            });
            return;
        }
        self.stats.requests_received += 1;

        // Rule 3: a uid in flight here for the same key is a loop.
        if let Some(search) = self.searches.get_mut(&(uid, key)) {
            search.exclude(from.clone());
            self.stats.loops_rejected += 1;
            cx.out.push(Action::Send {
                to: from,
                msg: Message::RejectedLoop { uid },
            });
            return;
        }

        let inflight = self.neighbours.get(&from).map_or(0, |n| n.inflight);
        if inflight >= self.config.max_inflight_per_peer
            || self.searches.len() >= self.config.max_pending
        {
            self.stats.overloads_sent += 1;
            cx.out.push(Action::Send {
                to: from,
                msg: Message::RejectedOverload { uid },
            });
            return;
        }

        let htl = htl.min(self.config.max_htl);
        let max = self.config.max_htl;
        let op = match &request {
            Request::Get { .. } => Op::Get,
            Request::Put { .. } => Op::Put,
        };
        let may_cache = self.policy.may_cache(op, htl, max);
        if let Request::Put { block } = &request {
            if let Some(held) = self.collides(cx, block) {
                cx.out.push(Action::Send {
                    to: from,
                    msg: Message::InsertCollision { uid, block: held },
                });
                return;
            }
        }
        match &request {
            Request::Get { key } => {
                if let Some(found) = cx.store.lookup(key) {
                    self.stats.answered_from_store += 1;
                    cx.out.push(Action::Send {
                        to: from,
                        msg: Message::DataFound { uid, block: found },
                    });
                    return;
                }
            }
            // Every node that accepts an insert caches the block (unless
            // the policy forbids it at this HTL).
            Request::Put { block } if may_cache => cx.out.push(Action::CacheBlock {
                block: block.clone(),
            }),
            Request::Put { .. } => {}
        }
        // A budget of zero ends the search at once, with the answer rule 1
        // (get) or rule 7 (put, this node is the sink) prescribe.
        let coins = self.neighbours.get(&from).map(|n| n.coins);
        let mut budget = self
            .policy
            .accept(htl, max, coins.unwrap_or_default(), cx.rng)
            .min(htl);
        // Under the progress rule a hop towards the key is free (paid back
        // on a retry below).
        let sender = self.neighbours.get(&from).map(|n| n.location);
        if htl::progress_is_free(self.config.htl_rule, self.location, sender, key.location()) {
            budget = htl;
        }
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.inflight += 1;
        }
        let mut search = Search::with_key(uid, request, key, Origin::Peer(from), budget);
        search.set_may_cache(may_cache);
        if op == Op::Put {
            search.set_replica(htl::stores_replica(htl, self.config.replicate_htl));
        }
        if budget == htl {
            // A free hop (freenet mode at max or at 1): paid back on retry.
            search.set_retry_cap(htl - 1);
        }
        self.start(cx, uid, search);
    }

    fn on_reply(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        let (flow, msg) = match self.aliases.get(&(from.clone(), msg.uid())) {
            Some(flow) => (Some(*flow), msg.with_uid(flow.0)),
            None => (self.reply_flow(&from, &msg), msg),
        };
        let Some(search) = flow.and_then(|f| self.searches.get_mut(&f)) else {
            self.stats.ignored_replies += 1;
            return;
        };
        let flow = (msg.uid(), search.key());
        let view = View {
            now: cx.now,
            neighbours: &self.neighbours,
            config: &self.config,
        };
        match search.on_reply(&from, msg, &view) {
            OnReply::Ignored => self.stats.ignored_replies += 1,
            OnReply::Step { misbehaved, step } => {
                if let Some(reason) = misbehaved {
                    cx.out.push(Action::Misbehaved { peer: from, reason });
                }
                self.take(cx, flow, step);
            }
        }
    }

    /// The flow a reply under its real uid is for: the one waiting on the
    /// sender (not through an alias); a block names its own key.
    fn reply_flow(&self, from: &P, msg: &Message) -> Option<Flow> {
        let uid = msg.uid();
        // A uid with one flow here (nearly always) names it, whoever waits:
        // no need to hash the block for its key.
        let mut flows = self.flows_of(uid);
        let first = flows.next();
        if flows.next().is_none() {
            return first.map(|(f, _)| *f);
        }
        // The flow of this uid that waits on the sender (a block names its
        // own key); failing that, the first flow, which will ignore it.
        let found_key = match &msg {
            Message::DataFound { block, .. } | Message::InsertCollision { block, .. } => {
                Some(block.routing_key())
            }
            _ => None,
        };
        let waiting = |f: &Flow, s: &Search<P>| {
            s.waiting_on() == Some(from) && !self.alias_of.contains_key(f)
        };
        self.flows_of(uid)
            .filter(|(f, s)| waiting(f, s))
            .find(|(f, _)| found_key.is_none_or(|k| f.1 == k))
            .or_else(|| self.flows_of(uid).find(|(f, s)| waiting(f, s)))
            .or_else(|| self.flows_of(uid).next())
            .map(|(f, _)| *f)
    }
}

#[cfg(test)]
mod tests;
