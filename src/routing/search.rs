//! One request's search: the state machine behind a single uid.
//!
//! A [`Search`] knows what is asked ([`Request`]), who asked ([`Origin`]),
//! the budget left, and which peers it has tried. It decides the next hop
//! ([`Search::next_hop`]), reads a reply ([`Search::on_reply`]) and says how
//! it ends ([`Answer`]). It holds no table of other searches and counts
//! nothing: the [`Router`](super::Router) is the pool that owns searches by
//! uid, detects loops, enforces limits and carries out what a search decides.
//!
//! A get can only end in a [`GetEnding`] and a put only in a [`PutEnding`]:
//! each ending is built inside the branch that knows the request's kind, so
//! "a get that ended in `InsertSucceeded`" cannot be written down.

use std::collections::{BTreeMap, BTreeSet};

use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Htl, Message, Uid};
use crate::routing::{ClientOutcome, ClientToken, Failure, Misbehaviour, RouterConfig, Time};

/// What is asked: fetch a key, or insert a block (under its own key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Get { key: RoutingKey },
    Put { block: Block },
}

/// Who asked: the neighbour the request came from, or the local client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin<P> {
    Peer(P),
    Client(ClientToken),
}

/// How a get ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GetEnding {
    /// A verified block came back.
    Found(Block),
    /// The budget ran out here or downstream (`DataNotFound`).
    NotFound,
    /// The peer waited on went silent or away.
    Timeout,
    /// No candidate left, with this much budget unspent.
    NoRoute(Htl),
}

/// How a put ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PutEnding {
    /// Downstream answered `InsertSucceeded`.
    Succeeded,
    /// Downstream answered `InsertFailed`, went silent, or went away.
    Failed,
    /// The budget is spent: a relaying node is the sink.
    BudgetSpent,
    /// No candidate left, with this much budget unspent.
    NoRoute(Htl),
}

/// What a node keeps of a block when a search ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// A verified block passed through: cache it.
    Cache(Block),
    /// This node is an insert's sink: store it.
    Store(Block),
}

/// The end of a search, addressed to whoever asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer<P> {
    /// Keep the block (if any), then reply `msg` to the upstream peer.
    Peer {
        peer: P,
        keep: Option<Keep>,
        msg: Message,
    },
    /// Tell the local client.
    Client {
        token: ClientToken,
        outcome: ClientOutcome,
    },
}

/// What a search does after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step<P> {
    /// `msg` goes to `to`; the search now waits on that peer.
    Forward { to: P, msg: Message },
    /// The search is over.
    Finished(Answer<P>),
}

/// What a search made of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OnReply<P> {
    /// It did not come from the peer this search waits on.
    Ignored,
    /// Report the sender if it broke the protocol, then take `step`.
    Step {
        misbehaved: Option<Misbehaviour>,
        step: Step<P>,
    },
}

/// What a search needs to see of its node to pick a hop.
pub(crate) struct View<'a, P> {
    pub now: Time,
    pub neighbours: &'a BTreeMap<P, Location>,
    pub config: &'a RouterConfig,
}

#[derive(Clone, Debug)]
struct Waiting<P> {
    peer: P,
    deadline: Time,
}

/// One request's search state.
#[derive(Clone, Debug)]
pub(crate) struct Search<P> {
    uid: Uid,
    request: Request,
    /// The request's key (a put's is its block's), computed once.
    key: RoutingKey,
    origin: Origin<P>,
    budget: Htl,
    /// Upstream, peers tried, and peers that sent this uid while in flight.
    excluded: BTreeSet<P>,
    waiting: Option<Waiting<P>>,
    /// Did any downstream peer accept the request (answer `RouteNotFound`)?
    /// Decides a local insert's outcome when no peer acknowledged it.
    accepted_downstream: bool,
}

impl<P: Clone + Ord> Search<P> {
    /// A search with `budget` hops to spend. A peer origin is never a candidate.
    pub fn new(uid: Uid, request: Request, origin: Origin<P>, budget: Htl) -> Self {
        let key = match &request {
            Request::Get { key } => *key,
            Request::Put { block } => block.routing_key(),
        };
        let mut excluded = BTreeSet::new();
        if let Origin::Peer(peer) = &origin {
            excluded.insert(peer.clone());
        }
        Search {
            uid,
            request,
            key,
            origin,
            budget,
            excluded,
            waiting: None,
            accepted_downstream: false,
        }
    }

    pub fn key(&self) -> RoutingKey {
        self.key
    }

    /// The peer this search waits on, if any.
    pub fn waiting_on(&self) -> Option<&P> {
        self.waiting.as_ref().map(|w| &w.peer)
    }

    /// When the peer waited on times out.
    pub fn deadline(&self) -> Option<Time> {
        self.waiting.as_ref().map(|w| w.deadline)
    }

    /// Never offer this search to `peer` (it sent the same uid: a loop).
    pub fn exclude(&mut self, peer: P) {
        self.excluded.insert(peer);
    }

    /// Try the best remaining candidate, or end the search.
    ///
    /// Best is the smallest circular distance to the key; ties go to the
    /// lower location, then the lower peer ID.
    pub fn next_hop(&mut self, view: &View<'_, P>) -> Step<P> {
        if self.budget == 0 {
            return Step::Finished(match &self.request {
                Request::Get { .. } => self.end_get(GetEnding::NotFound),
                Request::Put { block } => self.end_put(block, PutEnding::BudgetSpent),
            });
        }
        let target = self.key.location();
        let best = view
            .neighbours
            .iter()
            .filter(|(peer, _)| !self.excluded.contains(*peer))
            .min_by(|(pa, la), (pb, lb)| {
                (la.distance(target), **la, *pa).cmp(&(lb.distance(target), **lb, *pb))
            })
            .map(|(peer, _)| peer.clone());
        let Some(peer) = best else {
            let left = self.budget;
            return Step::Finished(match &self.request {
                Request::Get { .. } => self.end_get(GetEnding::NoRoute(left)),
                Request::Put { block } => self.end_put(block, PutEnding::NoRoute(left)),
            });
        };
        self.excluded.insert(peer.clone());
        self.waiting = Some(Waiting {
            peer: peer.clone(),
            deadline: view.now + view.config.timeout_for(self.budget),
        });
        let (uid, key, htl) = (self.uid, self.key, self.budget);
        let msg = match &self.request {
            Request::Get { .. } => Message::DataRequest { uid, key, htl },
            Request::Put { block } => Message::InsertRequest {
                uid,
                key,
                htl,
                block: block.clone(),
            },
        };
        Step::Forward { to: peer, msg }
    }

    /// Read a reply from `from`.
    ///
    /// `RouteNotFound(h)` lowers the budget to `h`; a loop, an overload, a
    /// bad block or a reply of the wrong kind costs one hop; then the next
    /// candidate is tried. The other replies end the search.
    pub fn on_reply(&mut self, from: &P, msg: Message, view: &View<'_, P>) -> OnReply<P> {
        if self.waiting_on() != Some(from) {
            return OnReply::Ignored;
        }
        self.waiting = None;
        let mut misbehaved = None;
        let ending = match (&self.request, msg) {
            (Request::Get { key }, Message::DataFound { block, .. }) => {
                if block.verify(key).is_ok() {
                    Some(self.end_get(GetEnding::Found(block)))
                } else {
                    misbehaved = Some(Misbehaviour::BadBlock);
                    self.budget = self.budget.saturating_sub(1);
                    None
                }
            }
            (Request::Get { .. }, Message::DataNotFound { .. }) => {
                Some(self.end_get(GetEnding::NotFound))
            }
            (Request::Put { block }, Message::InsertSucceeded { .. }) => {
                Some(self.end_put(block, PutEnding::Succeeded))
            }
            (Request::Put { block }, Message::InsertFailed { .. }) => {
                Some(self.end_put(block, PutEnding::Failed))
            }
            (_, Message::RouteNotFound { htl, .. }) => {
                self.accepted_downstream = true;
                self.budget = self.budget.min(htl);
                None
            }
            (_, Message::RejectedLoop { .. } | Message::RejectedOverload { .. }) => {
                self.budget = self.budget.saturating_sub(1);
                None
            }
            (_, _) => {
                misbehaved = Some(Misbehaviour::WrongReply);
                self.budget = self.budget.saturating_sub(1);
                None
            }
        };
        let step = match ending {
            Some(answer) => Step::Finished(answer),
            None => self.next_hop(view),
        };
        OnReply::Step { misbehaved, step }
    }

    /// The peer waited on timed out or its link went down. The subtree
    /// behind it may have spent any part of the budget and may still be
    /// running, so the search ends rather than overspend the HTL.
    pub fn give_up(&self) -> Answer<P> {
        match &self.request {
            Request::Get { .. } => self.end_get(GetEnding::Timeout),
            Request::Put { block } => self.end_put(block, PutEnding::Failed),
        }
    }

    fn end_get(&self, ending: GetEnding) -> Answer<P> {
        self.end(ending, GetEnding::upstream, GetEnding::outcome)
    }

    fn end_put(&self, block: &Block, ending: PutEnding) -> Answer<P> {
        let accepted = self.accepted_downstream;
        self.end(
            ending,
            |e, uid| e.upstream(uid, block),
            |e| e.outcome(accepted),
        )
    }

    /// Address an ending to whoever asked.
    fn end<E>(
        &self,
        ending: E,
        upstream: impl FnOnce(E, Uid) -> (Option<Keep>, Message),
        local: impl FnOnce(E) -> ClientOutcome,
    ) -> Answer<P> {
        match &self.origin {
            Origin::Peer(peer) => {
                let (keep, msg) = upstream(ending, self.uid);
                Answer::Peer {
                    peer: peer.clone(),
                    keep,
                    msg,
                }
            }
            Origin::Client(token) => Answer::Client {
                token: *token,
                outcome: local(ending),
            },
        }
    }
}

impl GetEnding {
    /// What to keep and what to answer the upstream peer.
    fn upstream(self, uid: Uid) -> (Option<Keep>, Message) {
        match self {
            GetEnding::Found(block) => (
                Some(Keep::Cache(block.clone())),
                Message::DataFound { uid, block },
            ),
            GetEnding::NotFound | GetEnding::Timeout => (None, Message::DataNotFound { uid }),
            GetEnding::NoRoute(htl) => (None, Message::RouteNotFound { uid, htl }),
        }
    }

    /// What to tell the local client.
    fn outcome(self) -> ClientOutcome {
        match self {
            GetEnding::Found(block) => ClientOutcome::Found(block),
            GetEnding::NotFound => ClientOutcome::Failed(Failure::DataNotFound),
            GetEnding::Timeout => ClientOutcome::Failed(Failure::Timeout),
            GetEnding::NoRoute(_) => ClientOutcome::Failed(Failure::RouteNotFound),
        }
    }
}

impl PutEnding {
    /// What to keep and what to answer the upstream peer: a relaying node
    /// that cannot pass the insert on is its sink.
    fn upstream(self, uid: Uid, block: &Block) -> (Option<Keep>, Message) {
        let sink = Some(Keep::Store(block.clone()));
        match self {
            PutEnding::Succeeded => (None, Message::InsertSucceeded { uid }),
            PutEnding::Failed => (None, Message::InsertFailed { uid }),
            PutEnding::BudgetSpent => (sink, Message::InsertSucceeded { uid }),
            PutEnding::NoRoute(htl) => (sink, Message::RouteNotFound { uid, htl }),
        }
    }

    /// What to tell the local client. The originator keeps nothing; an
    /// insert some peer `accepted` counts as done without an acknowledgement.
    fn outcome(self, accepted: bool) -> ClientOutcome {
        match self {
            PutEnding::Succeeded => ClientOutcome::Inserted,
            PutEnding::Failed => ClientOutcome::Failed(Failure::Timeout),
            PutEnding::BudgetSpent | PutEnding::NoRoute(_) if accepted => ClientOutcome::Inserted,
            // The budget went on rejections alone.
            PutEnding::BudgetSpent => ClientOutcome::Failed(Failure::DataNotFound),
            PutEnding::NoRoute(_) => ClientOutcome::Failed(Failure::Overloaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::keys::Chk;

    const NOW: Time = 1_000;

    fn key_at(x: u64) -> RoutingKey {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&x.to_be_bytes());
        RoutingKey(bytes)
    }

    fn block() -> Block {
        Chk::encode(b"search unit test").map(|(_, b)| b).unwrap()
    }

    fn peers(list: &[(u32, u64)]) -> BTreeMap<u32, Location> {
        list.iter().map(|&(p, l)| (p, Location(l))).collect()
    }

    static CONFIG: LazyLock<RouterConfig> = LazyLock::new(RouterConfig::default);

    fn view(neighbours: &BTreeMap<u32, Location>) -> View<'_, u32> {
        View {
            now: NOW,
            neighbours,
            config: &CONFIG,
        }
    }

    fn hop(search: &mut Search<u32>, neighbours: &BTreeMap<u32, Location>) -> Step<u32> {
        search.next_hop(&view(neighbours))
    }

    fn reply(
        s: &mut Search<u32>,
        n: &BTreeMap<u32, Location>,
        from: u32,
        msg: Message,
    ) -> OnReply<u32> {
        s.on_reply(&from, msg, &view(n))
    }

    /// A local get that has already gone to its first hop.
    fn asked(n: &BTreeMap<u32, Location>, budget: Htl) -> Search<u32> {
        let mut s = get(Origin::Client(5), budget);
        hop(&mut s, n);
        s
    }

    /// The misbehaviour reported and the step taken after a reply.
    fn stepped(r: OnReply<u32>) -> (Option<Misbehaviour>, Step<u32>) {
        match r {
            OnReply::Step { misbehaved, step } => (misbehaved, step),
            OnReply::Ignored => panic!("reply ignored"),
        }
    }

    fn get(origin: Origin<u32>, budget: Htl) -> Search<u32> {
        Search::new(7, Request::Get { key: key_at(1_000) }, origin, budget)
    }

    fn put(origin: Origin<u32>, budget: Htl) -> Search<u32> {
        Search::new(7, Request::Put { block: block() }, origin, budget)
    }

    /// The peer a step forwards to, and the htl it hands on.
    fn forwarded(step: &Step<u32>) -> (u32, Option<Htl>) {
        match step {
            Step::Forward { to, msg } => (*to, msg.htl()),
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    fn client(outcome: ClientOutcome) -> Step<u32> {
        Step::Finished(Answer::Client { token: 5, outcome })
    }

    fn to_peer(keep: Option<Keep>, msg: Message) -> Step<u32> {
        Step::Finished(Answer::Peer { peer: 1, keep, msg })
    }

    fn carry_on(step: Step<u32>) -> OnReply<u32> {
        OnReply::Step {
            misbehaved: None,
            step,
        }
    }

    #[test]
    fn next_hop_is_the_closest_neighbour_and_arms_the_timer() {
        // Key at 1000: 900 is 100 away, 5000 is 4000 away, MAX-50 is 1051
        // away round the wrap.
        let n = peers(&[(1, 5_000), (2, 900), (3, u64::MAX - 50)]);
        let mut s = get(Origin::Client(5), 10);
        let (uid, key, htl) = (7, key_at(1_000), 10);
        let msg = Message::DataRequest { uid, key, htl };
        assert_eq!(hop(&mut s, &n), Step::Forward { to: 2, msg });
        assert_eq!(s.waiting_on(), Some(&2));
        let timeout = RouterConfig::default().timeout_for(10);
        assert_eq!(s.deadline(), Some(NOW + timeout));
        // Then the wrap-around neighbour, then the far one.
        s.waiting = None;
        assert_eq!(forwarded(&hop(&mut s, &n)).0, 3);
        s.waiting = None;
        assert_eq!(forwarded(&hop(&mut s, &n)).0, 1);
    }

    #[test]
    fn ties_go_to_the_lower_location_then_the_lower_peer() {
        // 900 and 1100 are both 100 from the key: the lower location wins,
        // although its peer ID is higher.
        let mut s = get(Origin::Client(5), 10);
        assert_eq!(
            forwarded(&hop(&mut s, &peers(&[(3, 1_100), (7, 900)]))).0,
            7
        );
        // Same location: the lower peer ID wins.
        let mut s = get(Origin::Client(5), 10);
        assert_eq!(forwarded(&hop(&mut s, &peers(&[(5, 900), (4, 900)]))).0, 4);
    }

    #[test]
    fn the_upstream_peer_and_excluded_peers_are_never_candidates() {
        let n = peers(&[(1, 1_000), (2, 9_000), (3, 2_000)]);
        let mut s = get(Origin::Peer(1), 10);
        s.exclude(3);
        assert_eq!(forwarded(&hop(&mut s, &n)).0, 2);
    }

    #[test]
    fn route_not_found_lowers_the_budget_and_backtracks() {
        let n = peers(&[(1, 1_000), (2, 1_300), (3, 2_000)]);
        let mut s = get(Origin::Client(5), 10);
        assert_eq!(forwarded(&hop(&mut s, &n)), (1, Some(10)));
        let r = reply(&mut s, &n, 1, Message::RouteNotFound { uid: 7, htl: 4 });
        let (misbehaved, step) = stepped(r);
        assert_eq!(misbehaved, None);
        assert_eq!(forwarded(&step), (2, Some(4)));
        // A larger figure never raises the budget.
        let r = reply(&mut s, &n, 2, Message::RouteNotFound { uid: 7, htl: 9 });
        let (_, step) = stepped(r);
        assert_eq!(forwarded(&step), (3, Some(4)));
    }

    #[test]
    fn rejections_cost_one_hop_each() {
        let n = peers(&[(1, 1_000), (2, 1_300), (3, 2_000)]);
        let mut s = asked(&n, 10);
        let r = reply(&mut s, &n, 1, Message::RejectedLoop { uid: 7 });
        let (_, step) = stepped(r);
        assert_eq!(forwarded(&step), (2, Some(9)));
        let r = reply(&mut s, &n, 2, Message::RejectedOverload { uid: 7 });
        let (_, step) = stepped(r);
        assert_eq!(forwarded(&step), (3, Some(8)));
    }

    #[test]
    fn a_spent_budget_ends_a_get_as_not_found() {
        let n = peers(&[(1, 1_000), (2, 1_300)]);
        let mut s = asked(&n, 1);
        let r = reply(&mut s, &n, 1, Message::RejectedLoop { uid: 7 });
        assert_eq!(
            r,
            carry_on(client(ClientOutcome::Failed(Failure::DataNotFound)))
        );
        let mut s = get(Origin::Peer(1), 0);
        assert_eq!(
            hop(&mut s, &n),
            to_peer(None, Message::DataNotFound { uid: 7 })
        );
    }

    #[test]
    fn no_candidate_left_is_route_not_found_with_the_budget_left() {
        let n = peers(&[(1, 1_000)]);
        let mut s = get(Origin::Peer(1), 6);
        assert_eq!(
            hop(&mut s, &n),
            to_peer(None, Message::RouteNotFound { uid: 7, htl: 6 })
        );
        let mut s = get(Origin::Client(5), 6);
        assert_eq!(
            hop(&mut s, &BTreeMap::new()),
            client(ClientOutcome::Failed(Failure::RouteNotFound))
        );
    }

    #[test]
    fn giving_up_is_a_timeout_for_the_client_and_a_failure_upstream() {
        let timeout = client(ClientOutcome::Failed(Failure::Timeout));
        let end = |s: Search<u32>| Step::Finished(s.give_up());
        assert_eq!(end(get(Origin::Client(5), 3)), timeout);
        assert_eq!(end(put(Origin::Client(5), 3)), timeout);
        let not_found = Message::DataNotFound { uid: 7 };
        assert_eq!(end(get(Origin::Peer(1), 3)), to_peer(None, not_found));
        let failed = Message::InsertFailed { uid: 7 };
        assert_eq!(end(put(Origin::Peer(1), 3)), to_peer(None, failed));
    }

    #[test]
    fn a_relaying_insert_sink_stores_the_block() {
        let keep = Some(Keep::Store(block()));
        let mut s = put(Origin::Peer(1), 0);
        let n = peers(&[(1, 0), (2, 0)]);
        assert_eq!(
            hop(&mut s, &n),
            to_peer(keep.clone(), Message::InsertSucceeded { uid: 7 })
        );
        let mut s = put(Origin::Peer(1), 5);
        assert_eq!(
            hop(&mut s, &peers(&[(1, 0)])),
            to_peer(keep, Message::RouteNotFound { uid: 7, htl: 5 })
        );
    }

    #[test]
    fn an_insert_goes_out_under_its_blocks_key() {
        let mut s = put(Origin::Client(5), 4);
        let (uid, key, htl, block) = (7, block().routing_key(), 4, block());
        let msg = Message::InsertRequest {
            uid,
            key,
            htl,
            block,
        };
        assert_eq!(hop(&mut s, &peers(&[(2, 0)])), Step::Forward { to: 2, msg });
    }

    #[test]
    fn a_local_insert_counts_once_a_peer_accepted_it() {
        let n = peers(&[(1, 0), (2, 0)]);
        // Nobody took it: no route is an overload, a spent budget not found.
        let mut s = put(Origin::Client(5), 3);
        assert_eq!(
            hop(&mut s, &BTreeMap::new()),
            client(ClientOutcome::Failed(Failure::Overloaded))
        );
        let mut s = put(Origin::Client(5), 1);
        hop(&mut s, &n);
        let r = reply(&mut s, &n, 1, Message::RejectedOverload { uid: 7 });
        let failed = client(ClientOutcome::Failed(Failure::DataNotFound));
        assert_eq!(r, carry_on(failed));
        // Peer 1 accepted it and ran out of routes: inserted.
        let mut s = put(Origin::Client(5), 3);
        hop(&mut s, &n);
        let r = reply(&mut s, &n, 1, Message::RouteNotFound { uid: 7, htl: 2 });
        assert!(matches!(
            r,
            OnReply::Step {
                step: Step::Forward { to: 2, .. },
                ..
            }
        ));
        let r = reply(&mut s, &n, 2, Message::RouteNotFound { uid: 7, htl: 2 });
        assert_eq!(r, carry_on(client(ClientOutcome::Inserted)));
        // Acknowledged and refused inserts.
        let mut s = put(Origin::Client(5), 3);
        hop(&mut s, &n);
        let r = reply(&mut s, &n, 1, Message::InsertSucceeded { uid: 7 });
        assert_eq!(r, carry_on(client(ClientOutcome::Inserted)));
        let mut s = put(Origin::Client(5), 3);
        hop(&mut s, &n);
        let r = reply(&mut s, &n, 1, Message::InsertFailed { uid: 7 });
        let timeout = client(ClientOutcome::Failed(Failure::Timeout));
        assert_eq!(r, carry_on(timeout));
    }

    #[test]
    fn a_found_block_is_verified_and_cached_only_by_relays() {
        let b = block();
        let key = b.routing_key();
        let n = peers(&[(1, 0), (2, 0), (3, 0)]);
        let relay = |s: &mut Search<u32>| hop(s, &n);
        // Wrong block: the sender misbehaved, the search carries on one hop poorer.
        let mut s = Search::new(7, Request::Get { key }, Origin::Peer(1), 5);
        relay(&mut s);
        let bad = Message::DataFound {
            uid: 7,
            block: Chk::encode(b"other").map(|(_, b)| b).unwrap(),
        };
        let r = reply(&mut s, &n, 2, bad);
        let (misbehaved, step) = stepped(r);
        assert_eq!(misbehaved, Some(Misbehaviour::BadBlock));
        assert_eq!(forwarded(&step), (3, Some(4)));
        // The right block: cached and passed up.
        let found = Message::DataFound {
            uid: 7,
            block: b.clone(),
        };
        let r = reply(&mut s, &n, 3, found.clone());
        assert_eq!(r, carry_on(to_peer(Some(Keep::Cache(b.clone())), found)));
        // At the originator: an answer, nothing cached.
        let mut s = Search::new(7, Request::Get { key }, Origin::Client(5), 5);
        relay(&mut s);
        let r = reply(
            &mut s,
            &n,
            1,
            Message::DataFound {
                uid: 7,
                block: b.clone(),
            },
        );
        assert_eq!(r, carry_on(client(ClientOutcome::Found(b))));
    }

    #[test]
    fn replies_from_others_are_ignored_and_wrong_kinds_cost_a_hop() {
        let n = peers(&[(1, 1_000), (2, 1_300)]);
        let mut s = asked(&n, 10);
        let r = reply(&mut s, &n, 2, Message::DataNotFound { uid: 7 });
        assert_eq!(r, OnReply::Ignored);
        assert_eq!(s.waiting_on(), Some(&1));
        let r = reply(&mut s, &n, 1, Message::InsertSucceeded { uid: 7 });
        let (misbehaved, step) = stepped(r);
        assert_eq!(misbehaved, Some(Misbehaviour::WrongReply));
        assert_eq!(forwarded(&step), (2, Some(9)));
    }
}
