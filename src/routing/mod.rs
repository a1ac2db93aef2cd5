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
mod search;
mod vocab;

use std::collections::{BTreeMap, HashMap};

use rand::RngCore;

use crate::keys::Location;
use crate::message::{Htl, Message, Uid};
pub use crate::routing::htl::{Anonymity, LinkCoins};
use crate::routing::htl::{DeterministicHtl, HtlPolicy};
use crate::routing::search::{Answer, Keep, OnReply, Origin, Request, Search, Step, View};
pub use crate::routing::vocab::{
    Action, BlockSource, ClientOutcome, ClientToken, Event, Failure, Misbehaviour, Op, PeerId,
    RouterConfig, RouterStats, Time, DEFAULT_MAX_HTL,
};

/// What one call to [`Router::handle`] works with: the driver's clock,
/// random source and datastore, and the actions produced so far.
struct Ctx<'a, P> {
    now: Time,
    rng: &'a mut dyn RngCore,
    store: &'a dyn BlockSource,
    out: Vec<Action<P>>,
}

/// One node's routing state: the pool of searches in flight, keyed by uid.
///
/// The pool owns what is shared between searches (the neighbour table, loop
/// detection, per-peer and global limits, counters) and carries out what each
/// search (`routing/search.rs`) decides.
pub struct Router<P: PeerId> {
    config: RouterConfig,
    location: Location,
    policy: Box<dyn HtlPolicy>,
    neighbours: BTreeMap<P, Location>,
    /// Each link's HTL coins, as the driver gave them at `LinkUp`.
    coins: HashMap<P, LinkCoins>,
    searches: HashMap<Uid, Search<P>>,
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
            coins: HashMap::new(),
            searches: HashMap::new(),
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
        self.searches.len()
    }

    /// Is this uid being handled right now?
    pub fn is_handling(&self, uid: Uid) -> bool {
        self.searches.contains_key(&uid)
    }

    /// The earliest time at which a [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Time> {
        self.searches.values().filter_map(Search::deadline).min()
    }

    /// Feed one event; the actions come back in the order they must happen.
    pub fn handle(
        &mut self,
        now: Time,
        rng: &mut dyn RngCore,
        store: &dyn BlockSource,
        event: Event<P>,
    ) -> Vec<Action<P>> {
        let mut cx = Ctx {
            now,
            rng,
            store,
            out: Vec::new(),
        };
        match event {
            Event::LinkUp {
                peer,
                location,
                coins,
            } => {
                self.coins.insert(peer.clone(), coins);
                self.neighbours.insert(peer, location);
            }
            Event::LinkDown { peer } => self.on_link_down(&mut cx, peer),
            Event::Message { from, msg } => {
                if self.neighbours.contains_key(&from) {
                    self.on_message(&mut cx, from, msg);
                }
            }
            Event::ClientGet { token, key } => self.on_client(&mut cx, token, Request::Get { key }),
            Event::ClientPut { token, block } => {
                self.on_client(&mut cx, token, Request::Put { block })
            }
            Event::Tick => self.on_tick(&mut cx),
        }
        cx.out
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
        if self.searches.len() >= self.config.max_pending {
            cx.out.push(failed(Failure::Overloaded));
            return;
        }
        if self.neighbours.is_empty() {
            cx.out.push(failed(Failure::NoPeers));
            return;
        }
        let mut uid = cx.rng.next_u64();
        while self.searches.contains_key(&uid) {
            uid = cx.rng.next_u64();
        }
        let budget = self
            .policy
            .originate(self.config.max_htl, cx.rng)
            .min(self.config.max_htl);
        self.stats.requests_originated += 1;
        let op = match request {
            Request::Get { .. } => Op::Get,
            Request::Put { .. } => Op::Put,
        };
        let search = Search::new(uid, request, Origin::Client(token), budget);
        cx.out.push(Action::Originated {
            token,
            uid,
            key: search.key(),
            op,
        });
        self.start(cx, uid, search);
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        match msg {
            Message::DataRequest { uid, key, htl } => {
                self.on_request(cx, from, uid, htl, Request::Get { key })
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
                self.on_request(cx, from, uid, htl, Request::Put { block })
            }
            reply => self.on_reply(cx, from, reply),
        }
    }

    fn on_request(&mut self, cx: &mut Ctx<'_, P>, from: P, uid: Uid, htl: Htl, request: Request) {
        if htl == 0 {
            cx.out.push(Action::Misbehaved {
                peer: from,
                reason: Misbehaviour::ZeroHtl,
            });
            return;
        }
        self.stats.requests_received += 1;

        // Rule 3: a uid in flight here is a loop.
        if let Some(search) = self.searches.get_mut(&uid) {
            search.exclude(from.clone());
            self.stats.loops_rejected += 1;
            cx.out.push(Action::Send {
                to: from,
                msg: Message::RejectedLoop { uid },
            });
            return;
        }

        // Per-peer and global limits.
        let inflight = self.inflight_per_peer.get(&from).copied().unwrap_or(0);
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
        let coins = self.coins.get(&from).copied().unwrap_or_default();
        let budget = self.policy.accept(htl, max, coins, cx.rng).min(htl);
        *self.inflight_per_peer.entry(from.clone()).or_insert(0) += 1;
        let mut search = Search::new(uid, request, Origin::Peer(from), budget);
        search.set_may_cache(may_cache);
        if budget == htl {
            // A free hop (freenet mode at max or at 1): paid back on retry.
            search.set_retry_cap(htl - 1);
        }
        self.start(cx, uid, search);
    }

    fn on_reply(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        let uid = msg.uid();
        let Some(search) = self.searches.get_mut(&uid) else {
            self.stats.ignored_replies += 1;
            return;
        };
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
                self.take(cx, uid, step);
            }
        }
    }

    fn on_link_down(&mut self, cx: &mut Ctx<'_, P>, peer: P) {
        self.neighbours.remove(&peer);
        self.coins.remove(&peer);
        // A search waiting on the lost peer ends as a timeout would (rule 6).
        let stalled = self.waiting_uids(|s| s.waiting_on() == Some(&peer));
        for uid in stalled {
            self.give_up(cx, uid);
        }
    }

    fn on_tick(&mut self, cx: &mut Ctx<'_, P>) {
        let now = cx.now;
        let expired = self.waiting_uids(|s| s.deadline().is_some_and(|d| d <= now));
        for uid in expired {
            self.stats.timeouts += 1;
            self.give_up(cx, uid);
        }
    }

    /// The uids of the searches matching `pred`, in uid order.
    fn waiting_uids(&self, pred: impl Fn(&Search<P>) -> bool) -> Vec<Uid> {
        let mut uids: Vec<Uid> = self
            .searches
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(uid, _)| *uid)
            .collect();
        uids.sort_unstable();
        uids
    }

    fn give_up(&mut self, cx: &mut Ctx<'_, P>, uid: Uid) {
        if let Some(answer) = self.searches.get(&uid).map(Search::give_up) {
            self.finish(cx, uid, answer);
        }
    }

    /// Add a new search to the pool and take its first step.
    fn start(&mut self, cx: &mut Ctx<'_, P>, uid: Uid, mut search: Search<P>) {
        let view = View {
            now: cx.now,
            neighbours: &self.neighbours,
            config: &self.config,
        };
        let step = search.next_hop(&view);
        self.searches.insert(uid, search);
        self.take(cx, uid, step);
    }

    /// Carry out a search's step.
    fn take(&mut self, cx: &mut Ctx<'_, P>, uid: Uid, step: Step<P>) {
        match step {
            Step::Forward { to, msg } => cx.out.push(Action::Send { to, msg }),
            Step::Finished(answer) => self.finish(cx, uid, answer),
        }
    }

    /// Forget the uid and deliver the answer upstream.
    fn finish(&mut self, cx: &mut Ctx<'_, P>, uid: Uid, answer: Answer<P>) {
        self.searches.remove(&uid);
        match answer {
            Answer::Peer { peer, keep, msg } => {
                if let Some(n) = self.inflight_per_peer.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.inflight_per_peer.remove(&peer);
                    }
                }
                match keep {
                    Some(Keep::Cache(block)) => cx.out.push(Action::CacheBlock { block }),
                    Some(Keep::Store(block)) => cx.out.push(Action::StoreBlock { block }),
                    None => {}
                }
                // A search whose upstream link is gone has no one to answer.
                if self.neighbours.contains_key(&peer) {
                    cx.out.push(Action::Send { to: peer, msg });
                }
            }
            Answer::Client { token, outcome } => cx.out.push(Action::ClientDone { token, outcome }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::keys::{Block, Chk, RoutingKey};

    #[derive(Default)]
    struct Store(HashMap<RoutingKey, Block>);

    impl BlockSource for Store {
        fn lookup(&self, key: &RoutingKey) -> Option<Block> {
            self.0.get(key).cloned()
        }
    }

    /// A router at location 0 with neighbours 1, 2, 3 (at 0.1, 0.2, 0.3),
    /// its store, and a seeded random source.
    struct Node {
        router: Router<u32>,
        store: Store,
        rng: ChaCha8Rng,
    }

    impl Node {
        fn new(config: RouterConfig) -> Node {
            let mut node = Node {
                router: Router::new(config, Location(0)),
                store: Store::default(),
                rng: ChaCha8Rng::seed_from_u64(9),
            };
            for peer in 1..=3u32 {
                let location = Location::from_f64(f64::from(peer) / 10.0);
                let coins = LinkCoins::default();
                node.at(
                    0,
                    Event::LinkUp {
                        peer,
                        location,
                        coins,
                    },
                );
            }
            node
        }

        fn at(&mut self, now: Time, event: Event<u32>) -> Vec<Action<u32>> {
            self.router.handle(now, &mut self.rng, &self.store, event)
        }

        fn from(&mut self, from: u32, msg: Message) -> Vec<Action<u32>> {
            self.at(0, Event::Message { from, msg })
        }
    }

    fn limits(max_inflight_per_peer: usize, max_pending: usize) -> RouterConfig {
        RouterConfig {
            max_inflight_per_peer,
            max_pending,
            ..RouterConfig::default()
        }
    }

    /// A key at 0.19: peer 2 is closest, then 1, then 3.
    fn key() -> RoutingKey {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&Location::from_f64(0.19).0.to_be_bytes());
        RoutingKey(bytes)
    }

    fn request(uid: Uid, htl: Htl) -> Message {
        Message::DataRequest {
            uid,
            key: key(),
            htl,
        }
    }

    fn send(to: u32, msg: Message) -> Action<u32> {
        Action::Send { to, msg }
    }

    fn done(token: ClientToken, failure: Failure) -> Action<u32> {
        Action::ClientDone {
            token,
            outcome: ClientOutcome::Failed(failure),
        }
    }

    #[test]
    fn a_looping_uid_is_rejected_and_its_sender_is_never_tried() {
        let mut n = Node::new(RouterConfig::default());
        assert_eq!(n.from(1, request(9, 10)), vec![send(2, request(9, 9))]);
        assert_eq!(
            n.from(3, request(9, 8)),
            vec![send(3, Message::RejectedLoop { uid: 9 })]
        );
        assert_eq!(n.router.stats().loops_rejected, 1);
        // Peer 2 found nothing: 1 is upstream and 3 looped, so no route is left.
        let back = n.from(2, Message::RouteNotFound { uid: 9, htl: 5 });
        assert_eq!(
            back,
            vec![send(1, Message::RouteNotFound { uid: 9, htl: 5 })]
        );
        assert!(!n.router.is_handling(9));
        // Forgotten once answered: the same uid is a fresh request again.
        assert_eq!(n.from(3, request(9, 4)), vec![send(2, request(9, 3))]);
    }

    #[test]
    fn one_peer_cannot_hold_more_than_its_share() {
        let mut n = Node::new(limits(2, 100));
        assert_eq!(n.from(1, request(1, 5)).len(), 1);
        assert_eq!(n.from(1, request(2, 5)).len(), 1);
        let refused = vec![send(1, Message::RejectedOverload { uid: 3 })];
        assert_eq!(n.from(1, request(3, 5)), refused);
        assert_eq!(n.router.stats().overloads_sent, 1);
        // Another peer still gets through; and once one of peer 1's requests
        // is answered, peer 1 may send again.
        assert_eq!(n.from(3, request(4, 5)), vec![send(2, request(4, 4))]);
        let answered = n.from(2, Message::DataNotFound { uid: 1 });
        assert_eq!(answered, vec![send(1, Message::DataNotFound { uid: 1 })]);
        assert_eq!(n.from(1, request(5, 5)), vec![send(2, request(5, 4))]);
        assert_eq!(n.router.pending_count(), 3);
    }

    #[test]
    fn the_global_limit_and_an_empty_table_fail_local_requests() {
        let mut n = Node::new(limits(100, 1));
        assert_eq!(
            n.at(
                0,
                Event::ClientGet {
                    token: 1,
                    key: key()
                }
            )
            .len(),
            2
        );
        let second = n.at(
            0,
            Event::ClientGet {
                token: 2,
                key: key(),
            },
        );
        assert_eq!(second, vec![done(2, Failure::Overloaded)]);
        let mut lonely = Router::<u32>::new(RouterConfig::default(), Location(0));
        let store = Store::default();
        let event = Event::ClientGet {
            token: 3,
            key: key(),
        };
        let actions = lonely.handle(0, &mut n.rng, &store, event);
        assert_eq!(actions, vec![done(3, Failure::NoPeers)]);
        assert_eq!(lonely.stats().requests_originated, 0);
    }

    #[test]
    fn a_silent_peer_times_out_at_its_deadline() {
        let config = RouterConfig::default();
        let deadline = 100 + config.timeout_for(config.max_htl);
        let mut n = Node::new(config);
        let started = n.at(
            100,
            Event::ClientGet {
                token: 1,
                key: key(),
            },
        );
        assert!(matches!(
            started[..],
            [Action::Originated { .. }, Action::Send { to: 2, .. }]
        ));
        assert_eq!(n.router.next_deadline(), Some(deadline));
        assert!(n.at(deadline - 1, Event::Tick).is_empty());
        let ended = n.at(deadline, Event::Tick);
        assert_eq!(ended, vec![done(1, Failure::Timeout)]);
        assert_eq!(n.router.stats().timeouts, 1);
        assert_eq!(n.router.next_deadline(), None);
        assert_eq!(n.router.pending_count(), 0);
    }

    #[test]
    fn losing_the_peer_waited_on_ends_the_search() {
        let mut n = Node::new(RouterConfig::default());
        n.at(
            0,
            Event::ClientGet {
                token: 1,
                key: key(),
            },
        );
        n.from(3, request(8, 6));
        // Both wait on peer 2 (closest to the key); an unrelated link going
        // down changes nothing.
        assert!(n.at(0, Event::LinkDown { peer: 1 }).is_empty());
        let ended = n.at(0, Event::LinkDown { peer: 2 });
        assert!(ended.contains(&done(1, Failure::Timeout)), "{ended:?}");
        assert!(ended.contains(&send(3, Message::DataNotFound { uid: 8 })));
        assert_eq!(ended.len(), 2);
        assert_eq!(n.router.pending_count(), 0);
        assert_eq!(n.router.stats().timeouts, 0);
    }

    #[test]
    fn a_search_whose_upstream_left_runs_on_but_answers_no_one() {
        let mut n = Node::new(RouterConfig::default());
        assert_eq!(n.from(1, request(4, 6)), vec![send(2, request(4, 5))]);
        assert!(n.at(0, Event::LinkDown { peer: 1 }).is_empty());
        assert!(n.router.is_handling(4));
        assert!(n.from(2, Message::DataNotFound { uid: 4 }).is_empty());
        assert!(!n.router.is_handling(4));
    }

    #[test]
    fn an_insert_sink_caches_stores_and_acknowledges() {
        let mut n = Node::new(RouterConfig::default());
        let (chk, block) = Chk::encode(b"router unit test").unwrap();
        let insert = Message::InsertRequest {
            uid: 6,
            key: chk.routing,
            htl: 1,
            block: block.clone(),
        };
        assert_eq!(
            n.from(1, insert),
            vec![
                Action::CacheBlock {
                    block: block.clone()
                },
                Action::StoreBlock { block },
                send(1, Message::InsertSucceeded { uid: 6 }),
            ]
        );
        assert_eq!(n.router.pending_count(), 0);
    }

    #[test]
    fn held_keys_are_answered_and_broken_requests_reported() {
        let mut n = Node::new(RouterConfig::default());
        let (chk, block) = Chk::encode(b"held").unwrap();
        n.store.0.insert(chk.routing, block.clone());
        let ask = Message::DataRequest {
            uid: 2,
            key: chk.routing,
            htl: 3,
        };
        let found = Message::DataFound { uid: 2, block };
        assert_eq!(n.from(3, ask), vec![send(3, found)]);
        assert_eq!(n.router.stats().answered_from_store, 1);
        let zero = vec![Action::Misbehaved {
            peer: 1,
            reason: Misbehaviour::ZeroHtl,
        }];
        assert_eq!(n.from(1, request(3, 0)), zero);
        // A stranger is not a neighbour: nothing happens.
        assert!(n.from(42, request(5, 5)).is_empty());
        assert_eq!(n.router.stats().requests_received, 1);
    }
}
