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
//! The rules (see `docs/protocol.md`):
//! 1. A request for a key the node holds is answered `DataFound` at once.
//!    Otherwise the node keeps a budget `b` from the HTL policy; `b == 0`
//!    answers `DataNotFound`, else the request goes to the best candidate
//!    with `htl = b`.
//! 2. Candidates are the connected neighbours, minus the upstream peer, minus
//!    peers already tried for this uid, minus peers that sent this uid while it
//!    was being handled. Best is the smallest circular distance to the key
//!    (ties: lower location, then lower peer ID).
//! 3. A uid already being handled is answered `RejectedLoop`; a uid is
//!    forgotten as soon as the node has replied.
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
//!    answers `RouteNotFound`.

pub mod htl;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;

use rand::RngCore;

use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Htl, Message, Uid};
use crate::routing::htl::{DeterministicHtl, HtlPolicy};

/// Milliseconds on whatever clock the driver uses. Only differences matter.
pub type Time = u64;

/// Identifies one request of the local client, chosen by the driver.
pub type ClientToken = u64;

/// What a peer identifier must offer: a total order (for tie-breaks) and
/// hashing. The harness uses node indices, the node runtime public keys.
pub trait PeerId: Clone + Ord + Hash + Debug {}
impl<T: Clone + Ord + Hash + Debug> PeerId for T {}

/// Read access to the node's datastore (store and cache together).
pub trait BlockSource {
    fn lookup(&self, key: &RoutingKey) -> Option<Block>;
}

/// The hops-to-live budget of a request, unless configured otherwise.
pub const DEFAULT_MAX_HTL: Htl = 18;

/// Tunables of the routing core (`[router]` in `node.toml`; every field has a default).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Largest HTL accepted; larger values are clamped. Also the budget a
    /// deterministic originator starts with.
    pub max_htl: Htl,
    /// Fixed part of the time to wait on a peer.
    pub timeout_base_ms: u64,
    /// Added per hop of HTL handed to the peer.
    pub timeout_per_hop_ms: u64,
    /// Requests one upstream peer may have in flight through this node.
    pub max_inflight_per_peer: usize,
    /// Requests this node handles at once, all sources together.
    pub max_pending: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_htl: DEFAULT_MAX_HTL,
            timeout_base_ms: 5_000,
            timeout_per_hop_ms: 2_000,
            max_inflight_per_peer: 64,
            max_pending: 4_096,
        }
    }
}

impl RouterConfig {
    /// How long to wait for a peer to which a request went with `htl`.
    pub fn timeout_for(&self, htl: Htl) -> u64 {
        self.timeout_base_ms + self.timeout_per_hop_ms * u64::from(htl)
    }
}

/// Whether a request fetches or inserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    Put,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }
}

/// An input to the router.
#[derive(Clone, Debug)]
pub enum Event<P> {
    /// An authenticated link to a neighbour is up.
    LinkUp { peer: P, location: Location },
    /// The link to a neighbour is gone.
    LinkDown { peer: P },
    /// A decoded message arrived from a neighbour.
    Message { from: P, msg: Message },
    /// The local client asks for a key.
    ClientGet { token: ClientToken, key: RoutingKey },
    /// The local client inserts a block.
    ClientPut { token: ClientToken, block: Block },
    /// Time passed; expire whatever is due.
    Tick,
}

/// Why a local request did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Failure {
    /// The hops-to-live ran out somewhere along the way.
    DataNotFound,
    /// Every reachable route was exhausted first.
    RouteNotFound,
    /// A peer did not answer in time.
    Timeout,
    /// This node is handling too many requests, or no peer took the insert.
    Overloaded,
    /// The node has no connected neighbour to ask.
    NoPeers,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::DataNotFound => "data not found",
            Failure::RouteNotFound => "route not found",
            Failure::Timeout => "timed out",
            Failure::Overloaded => "overloaded",
            Failure::NoPeers => "no connected peers",
        }
    }
}

/// The answer to a local client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    Found(Block),
    Inserted,
    Failed(Failure),
}

/// Ways a neighbour broke the protocol. The driver should drop the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A request with hops-to-live zero.
    ZeroHtl,
    /// A block that does not hash to the key it was sent for.
    BadBlock,
    /// A reply whose kind does not fit the request (e.g. `DataFound` for an insert).
    WrongReply,
}

/// An output of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send a message to a connected neighbour.
    Send { to: P, msg: Message },
    /// A local client request got this uid (the driver's ground-truth log).
    Originated {
        token: ClientToken,
        uid: Uid,
        key: RoutingKey,
        op: Op,
    },
    /// Answer the local client.
    ClientDone {
        token: ClientToken,
        outcome: ClientOutcome,
    },
    /// A verified block passed through this node: keep it in the cache.
    CacheBlock { block: Block },
    /// This node is a sink for an insert: keep the block in the store.
    StoreBlock { block: Block },
    /// A neighbour broke the protocol.
    Misbehaved { peer: P, reason: Misbehaviour },
}

/// Counters for status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub requests_received: u64,
    pub requests_originated: u64,
    pub answered_from_store: u64,
    pub loops_rejected: u64,
    pub overloads_sent: u64,
    pub timeouts: u64,
    pub ignored_replies: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Upstream<P> {
    Peer(P),
    Client(ClientToken),
}

#[derive(Clone, Debug)]
struct Waiting<P> {
    peer: P,
    deadline: Time,
}

#[derive(Clone, Debug)]
struct Pending<P> {
    op: Op,
    key: RoutingKey,
    /// Only for inserts.
    block: Option<Block>,
    upstream: Upstream<P>,
    budget: Htl,
    /// Upstream, peers tried, and peers that sent this uid while in flight.
    excluded: BTreeSet<P>,
    waiting: Option<Waiting<P>>,
    /// For inserts from the local client: did any peer accept it?
    accepted_downstream: bool,
}

/// How a pending request ends.
enum Ending {
    Found(Block),
    DataNotFound,
    RouteNotFound(Htl),
    InsertSucceeded,
    Timeout,
}

/// One node's routing state.
pub struct Router<P: PeerId> {
    config: RouterConfig,
    location: Location,
    policy: Box<dyn HtlPolicy>,
    neighbours: BTreeMap<P, Location>,
    pending: HashMap<Uid, Pending<P>>,
    inflight_per_peer: HashMap<P, usize>,
    stats: RouterStats,
}

impl<P: PeerId> Router<P> {
    /// A router with the deterministic HTL policy.
    pub fn new(config: RouterConfig, location: Location) -> Self {
        Self::with_policy(config, location, Box::new(DeterministicHtl))
    }

    pub fn with_policy(
        config: RouterConfig,
        location: Location,
        policy: Box<dyn HtlPolicy>,
    ) -> Self {
        Router {
            config,
            location,
            policy,
            neighbours: BTreeMap::new(),
            pending: HashMap::new(),
            inflight_per_peer: HashMap::new(),
            stats: RouterStats::default(),
        }
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

    /// Requests in flight through this node.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Is this uid being handled right now?
    pub fn is_handling(&self, uid: Uid) -> bool {
        self.pending.contains_key(&uid)
    }

    /// The earliest time at which a [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        self.pending
            .values()
            .filter_map(|p| p.waiting.as_ref().map(|w| w.deadline))
            .min()
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
        match event {
            Event::LinkUp { peer, location } => {
                self.neighbours.insert(peer, location);
            }
            Event::LinkDown { peer } => self.on_link_down(now, peer, &mut out),
            Event::Message { from, msg } => {
                if self.neighbours.contains_key(&from) {
                    self.on_message(now, rng, store, from, msg, &mut out);
                }
            }
            Event::ClientGet { token, key } => {
                self.on_client(now, rng, store, token, key, None, &mut out)
            }
            Event::ClientPut { token, block } => {
                let key = block.routing_key();
                self.on_client(now, rng, store, token, key, Some(block), &mut out)
            }
            Event::Tick => self.on_tick(now, &mut out),
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn on_client(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        token: ClientToken,
        key: RoutingKey,
        block: Option<Block>,
        out: &mut Vec<Action<P>>,
    ) {
        let op = if block.is_some() { Op::Put } else { Op::Get };
        if op == Op::Get {
            if let Some(found) = store.lookup(&key) {
                out.push(Action::ClientDone {
                    token,
                    outcome: ClientOutcome::Found(found),
                });
                return;
            }
        }
        if self.pending.len() >= self.config.max_pending {
            out.push(Action::ClientDone {
                token,
                outcome: ClientOutcome::Failed(Failure::Overloaded),
            });
            return;
        }
        if self.neighbours.is_empty() {
            out.push(Action::ClientDone {
                token,
                outcome: ClientOutcome::Failed(Failure::NoPeers),
            });
            return;
        }
        let mut uid = rng.next_u64();
        while self.pending.contains_key(&uid) {
            uid = rng.next_u64();
        }
        let budget = self
            .policy
            .originate(self.config.max_htl, rng)
            .min(self.config.max_htl);
        self.stats.requests_originated += 1;
        out.push(Action::Originated {
            token,
            uid,
            key,
            op,
        });
        self.pending.insert(
            uid,
            Pending {
                op,
                key,
                block,
                upstream: Upstream::Client(token),
                budget,
                excluded: BTreeSet::new(),
                waiting: None,
                accepted_downstream: false,
            },
        );
        self.route_next(now, uid, out);
    }

    fn on_message(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        from: P,
        msg: Message,
        out: &mut Vec<Action<P>>,
    ) {
        match msg {
            Message::DataRequest { uid, key, htl } => {
                self.on_request(now, rng, store, from, uid, key, htl, None, out)
            }
            Message::InsertRequest {
                uid,
                key,
                htl,
                block,
            } => {
                if block.verify(&key).is_err() {
                    out.push(Action::Misbehaved {
                        peer: from,
                        reason: Misbehaviour::BadBlock,
                    });
                    return;
                }
                self.on_request(now, rng, store, from, uid, key, htl, Some(block), out)
            }
            reply => self.on_reply(now, from, reply, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        from: P,
        uid: Uid,
        key: RoutingKey,
        htl: Htl,
        block: Option<Block>,
        out: &mut Vec<Action<P>>,
    ) {
        if htl == 0 {
            out.push(Action::Misbehaved {
                peer: from,
                reason: Misbehaviour::ZeroHtl,
            });
            return;
        }
        self.stats.requests_received += 1;
        let op = if block.is_some() { Op::Put } else { Op::Get };

        // Rule 3: a uid in flight here is a loop.
        if let Some(p) = self.pending.get_mut(&uid) {
            p.excluded.insert(from.clone());
            self.stats.loops_rejected += 1;
            out.push(Action::Send {
                to: from,
                msg: Message::RejectedLoop { uid },
            });
            return;
        }

        // Per-peer and global limits.
        let inflight = self.inflight_per_peer.get(&from).copied().unwrap_or(0);
        if inflight >= self.config.max_inflight_per_peer
            || self.pending.len() >= self.config.max_pending
        {
            self.stats.overloads_sent += 1;
            out.push(Action::Send {
                to: from,
                msg: Message::RejectedOverload { uid },
            });
            return;
        }

        let htl = htl.min(self.config.max_htl);
        if op == Op::Get {
            if let Some(found) = store.lookup(&key) {
                self.stats.answered_from_store += 1;
                out.push(Action::Send {
                    to: from,
                    msg: Message::DataFound { uid, block: found },
                });
                return;
            }
        }
        let budget = self.policy.accept(htl, self.config.max_htl, rng);
        if let Some(b) = &block {
            out.push(Action::CacheBlock { block: b.clone() });
        }
        if budget == 0 {
            match block {
                None => out.push(Action::Send {
                    to: from,
                    msg: Message::DataNotFound { uid },
                }),
                Some(b) => {
                    out.push(Action::StoreBlock { block: b });
                    out.push(Action::Send {
                        to: from,
                        msg: Message::InsertSucceeded { uid },
                    });
                }
            }
            return;
        }
        *self.inflight_per_peer.entry(from.clone()).or_insert(0) += 1;
        let mut excluded = BTreeSet::new();
        excluded.insert(from.clone());
        self.pending.insert(
            uid,
            Pending {
                op,
                key,
                block,
                upstream: Upstream::Peer(from),
                budget,
                excluded,
                waiting: None,
                accepted_downstream: false,
            },
        );
        self.route_next(now, uid, out);
    }

    fn on_reply(&mut self, now: Time, from: P, msg: Message, out: &mut Vec<Action<P>>) {
        let uid = msg.uid();
        let Some(p) = self.pending.get_mut(&uid) else {
            self.stats.ignored_replies += 1;
            return;
        };
        if p.waiting.as_ref().map(|w| &w.peer) != Some(&from) {
            self.stats.ignored_replies += 1;
            return;
        }
        p.waiting = None;
        let op = p.op;
        match (op, msg) {
            (Op::Get, Message::DataFound { block, .. }) => {
                if block.verify(&p.key).is_ok() {
                    if matches!(p.upstream, Upstream::Peer(_)) {
                        out.push(Action::CacheBlock {
                            block: block.clone(),
                        });
                    }
                    self.finish(uid, Ending::Found(block), out);
                } else {
                    out.push(Action::Misbehaved {
                        peer: from,
                        reason: Misbehaviour::BadBlock,
                    });
                    p.budget = p.budget.saturating_sub(1);
                    self.route_next(now, uid, out);
                }
            }
            (Op::Get, Message::DataNotFound { .. }) => self.finish(uid, Ending::DataNotFound, out),
            (Op::Put, Message::InsertSucceeded { .. }) => {
                self.finish(uid, Ending::InsertSucceeded, out)
            }
            (Op::Put, Message::InsertFailed { .. }) => self.finish(uid, Ending::Timeout, out),
            (_, Message::RouteNotFound { htl, .. }) => {
                p.accepted_downstream = true;
                p.budget = p.budget.min(htl);
                self.route_next(now, uid, out);
            }
            (_, Message::RejectedLoop { .. }) | (_, Message::RejectedOverload { .. }) => {
                p.budget = p.budget.saturating_sub(1);
                self.route_next(now, uid, out);
            }
            (_, _) => {
                out.push(Action::Misbehaved {
                    peer: from,
                    reason: Misbehaviour::WrongReply,
                });
                p.budget = p.budget.saturating_sub(1);
                self.route_next(now, uid, out);
            }
        }
    }

    fn on_link_down(&mut self, _now: Time, peer: P, out: &mut Vec<Action<P>>) {
        self.neighbours.remove(&peer);
        // A search waiting on the lost peer ends as a timeout would: the
        // subtree behind that peer may have spent any part of the budget it
        // was given and may still be running, so continuing could overspend
        // the HTL.
        let mut stalled: Vec<Uid> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waiting.as_ref().map(|w| &w.peer) == Some(&peer))
            .map(|(uid, _)| *uid)
            .collect();
        stalled.sort_unstable();
        for uid in stalled {
            self.finish(uid, Ending::Timeout, out);
        }
    }

    fn on_tick(&mut self, now: Time, out: &mut Vec<Action<P>>) {
        let mut expired: Vec<Uid> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waiting.as_ref().is_some_and(|w| w.deadline <= now))
            .map(|(uid, _)| *uid)
            .collect();
        expired.sort_unstable();
        for uid in expired {
            self.stats.timeouts += 1;
            self.finish(uid, Ending::Timeout, out);
        }
    }

    /// Try the best remaining candidate, or end the search.
    fn route_next(&mut self, now: Time, uid: Uid, out: &mut Vec<Action<P>>) {
        let Some(p) = self.pending.get_mut(&uid) else {
            return;
        };
        if p.budget == 0 {
            let ending = match p.op {
                Op::Get => Ending::DataNotFound,
                Op::Put => match (&p.upstream, &p.block) {
                    (Upstream::Peer(_), Some(b)) => {
                        out.push(Action::StoreBlock { block: b.clone() });
                        Ending::InsertSucceeded
                    }
                    // The local client's budget went on rejections alone.
                    _ if !p.accepted_downstream => Ending::DataNotFound,
                    _ => Ending::InsertSucceeded,
                },
            };
            self.finish(uid, ending, out);
            return;
        }
        let target = p.key.location();
        let best = self
            .neighbours
            .iter()
            .filter(|(peer, _)| !p.excluded.contains(*peer))
            .min_by(|(pa, la), (pb, lb)| {
                (la.distance(target), **la, *pa).cmp(&(lb.distance(target), **lb, *pb))
            })
            .map(|(peer, _)| peer.clone());
        match best {
            Some(peer) => {
                p.excluded.insert(peer.clone());
                p.waiting = Some(Waiting {
                    peer: peer.clone(),
                    deadline: now + self.config.timeout_for(p.budget),
                });
                let msg = match &p.block {
                    None => Message::DataRequest {
                        uid,
                        key: p.key,
                        htl: p.budget,
                    },
                    Some(block) => Message::InsertRequest {
                        uid,
                        key: p.key,
                        htl: p.budget,
                        block: block.clone(),
                    },
                };
                out.push(Action::Send { to: peer, msg });
            }
            None => {
                if let (Op::Put, Upstream::Peer(_), Some(b)) = (p.op, &p.upstream, &p.block) {
                    out.push(Action::StoreBlock { block: b.clone() });
                }
                let budget = p.budget;
                self.finish(uid, Ending::RouteNotFound(budget), out);
            }
        }
    }

    /// Reply upstream and forget the uid.
    fn finish(&mut self, uid: Uid, ending: Ending, out: &mut Vec<Action<P>>) {
        let Some(p) = self.pending.remove(&uid) else {
            return;
        };
        match p.upstream {
            Upstream::Peer(peer) => {
                if let Some(n) = self.inflight_per_peer.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.inflight_per_peer.remove(&peer);
                    }
                }
                if !self.neighbours.contains_key(&peer) {
                    // The upstream link is gone: there is no one to answer.
                    return;
                }
                let msg = match (p.op, ending) {
                    (_, Ending::Found(block)) => Message::DataFound { uid, block },
                    (Op::Get, Ending::DataNotFound | Ending::Timeout) => {
                        Message::DataNotFound { uid }
                    }
                    (_, Ending::RouteNotFound(htl)) => Message::RouteNotFound { uid, htl },
                    (Op::Put, Ending::InsertSucceeded) => Message::InsertSucceeded { uid },
                    (Op::Put, Ending::DataNotFound | Ending::Timeout) => {
                        Message::InsertFailed { uid }
                    }
                    (Op::Get, Ending::InsertSucceeded) => Message::DataNotFound { uid },
                };
                out.push(Action::Send { to: peer, msg });
            }
            Upstream::Client(token) => {
                let outcome = match (p.op, ending) {
                    (_, Ending::Found(block)) => ClientOutcome::Found(block),
                    (Op::Get, Ending::DataNotFound) => ClientOutcome::Failed(Failure::DataNotFound),
                    (Op::Get, Ending::RouteNotFound(_)) => {
                        ClientOutcome::Failed(Failure::RouteNotFound)
                    }
                    (_, Ending::Timeout) => ClientOutcome::Failed(Failure::Timeout),
                    (Op::Put, Ending::InsertSucceeded) => ClientOutcome::Inserted,
                    (Op::Put, Ending::RouteNotFound(_)) if p.accepted_downstream => {
                        ClientOutcome::Inserted
                    }
                    (Op::Put, Ending::RouteNotFound(_)) => {
                        ClientOutcome::Failed(Failure::Overloaded)
                    }
                    (Op::Put, Ending::DataNotFound) => ClientOutcome::Failed(Failure::DataNotFound),
                    (Op::Get, Ending::InsertSucceeded) => {
                        ClientOutcome::Failed(Failure::DataNotFound)
                    }
                };
                out.push(Action::ClientDone { token, outcome });
            }
        }
    }
}
