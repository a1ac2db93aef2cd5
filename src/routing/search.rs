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

use smallvec::SmallVec;

use crate::keys::{Block, RoutingKey};
use crate::message::{Htl, Message, Uid};
use crate::routing::neighbours::Neighbours;
use crate::routing::{
    ClientOutcome, ClientToken, Failure, InsertEnd, Lookahead, Misbehaviour, Op, RouterConfig, Time,
};

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
    /// Downstream answered `InsertFailed`: a node further on could not
    /// store the block, or lost its own next hop.
    Failed,
    /// Downstream went silent, or its link went away.
    TimedOut,
    /// A different valid block is held under the key (the original,
    /// verified): the insert is refused and the original kept.
    Collided(Block),
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
    pub neighbours: &'a Neighbours<P>,
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
    /// Upstream, peers tried, and peers that sent this uid while in flight
    /// (sorted; at most the node's neighbours; the first few inline).
    excluded: SmallVec<[P; 6]>,
    waiting: Option<Waiting<P>>,
    /// Did any downstream peer accept the request (answer `RouteNotFound`)?
    /// Decides a local insert's outcome when no peer acknowledged it.
    accepted_downstream: bool,
    /// May a block this search relays be cached here (the HTL policy's
    /// caching rule at the HTL the request arrived with)?
    may_cache: bool,
    /// Does this node keep a durable replica of the insert it relays
    /// ([`super::htl::stores_replica`])?
    replica: bool,
    /// The most budget left after any retry, and reported in
    /// `RouteNotFound`: a node that kept the HTL it received (a free hop)
    /// pays that hop back here.
    retry_cap: Htl,
}

impl<P: Clone + Ord> Search<P> {
    /// A search with `budget` hops to spend. A peer origin is never a candidate.
    pub fn new(uid: Uid, request: Request, origin: Origin<P>, budget: Htl) -> Self {
        let key = match &request {
            Request::Get { key } => *key,
            Request::Put { block } => block.routing_key(),
        };
        Self::with_key(uid, request, key, origin, budget)
    }

    /// [`Search::new`] for a request whose key is known already (a put's
    /// block verified against it): spares hashing the block again.
    pub fn with_key(
        uid: Uid,
        request: Request,
        key: RoutingKey,
        origin: Origin<P>,
        budget: Htl,
    ) -> Self {
        let mut excluded = SmallVec::new();
        if let Origin::Peer(peer) = &origin {
            excluded.push(peer.clone());
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
            may_cache: true,
            replica: false,
            retry_cap: Htl::MAX,
        }
    }

    /// Forbid (or allow) caching a block this search relays.
    pub fn set_may_cache(&mut self, may_cache: bool) {
        self.may_cache = may_cache;
    }

    /// Store (or not) a durable replica of the block this insert relays,
    /// however it ends downstream.
    pub fn set_replica(&mut self, replica: bool) {
        self.replica = replica;
    }

    /// This insert reached a sink (`docs/protocol.md` rule 8): keep a
    /// replica here and go on for at most `cap` hops.
    pub fn stop_at_sink(&mut self, cap: Htl) {
        self.budget = self.budget.min(cap);
        self.replica = true;
    }

    /// Cap the budget after any retry and in `RouteNotFound` at `cap`.
    pub fn set_retry_cap(&mut self, cap: Htl) {
        self.retry_cap = cap;
    }

    pub fn key(&self) -> RoutingKey {
        self.key
    }

    /// Whether this search fetches or inserts.
    pub fn op(&self) -> Op {
        match self.request {
            Request::Get { .. } => Op::Get,
            Request::Put { .. } => Op::Put,
        }
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
        self.exclude_peer(peer);
    }

    fn exclude_peer(&mut self, peer: P) {
        if let Err(at) = self.excluded.binary_search(&peer) {
            self.excluded.insert(at, peer);
        }
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
        let best = match view.config.lookahead {
            Lookahead::None => view
                .neighbours
                .iter()
                .filter(|(peer, _)| self.excluded.binary_search(peer).is_err())
                .min_by(|(pa, la), (pb, lb)| {
                    (la.distance(target), **la, *pa).cmp(&(lb.distance(target), **lb, *pb))
                })
                .map(|(peer, _)| peer.clone()),
            // The closest location a neighbour or one of its neighbours
            // has; ties go to the neighbour itself nearer, then as above.
            Lookahead::Foaf => view
                .neighbours
                .entries()
                .filter(|n| self.excluded.binary_search(&n.peer).is_err())
                .map(|n| {
                    let own = n.location.distance(target);
                    let reach = n
                        .foaf
                        .iter()
                        .map(|l| l.distance(target))
                        .fold(own, u64::min);
                    ((reach, own, n.location), &n.peer)
                })
                .min_by(|(ra, pa), (rb, pb)| (ra, *pa).cmp(&(rb, *pb)))
                .map(|(_, peer)| peer.clone()),
        };
        let Some(peer) = best else {
            let left = self.budget.min(self.retry_cap);
            return Step::Finished(match &self.request {
                Request::Get { .. } => self.end_get(GetEnding::NoRoute(left)),
                Request::Put { block } => self.end_put(block, PutEnding::NoRoute(left)),
            });
        };
        self.exclude_peer(peer.clone());
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
            (Request::Put { block }, Message::InsertCollision { block: held, .. }) => {
                // The original must be a valid block for the key, and differ.
                if held != *block && held.verify(&self.key).is_ok() {
                    Some(self.end_put(block, PutEnding::Collided(held)))
                } else {
                    misbehaved = Some(Misbehaviour::BadBlock);
                    self.budget = self.budget.saturating_sub(1);
                    None
                }
            }
            (_, Message::RouteNotFound { htl, .. }) => {
                self.accepted_downstream = true;
                self.budget = self.budget.min(htl);
                None
            }
            // Rule 8 (`insert_end = "sink"`): an insert this node keeps a
            // replica of ends at its first loop; the nodes around the key
            // have it already.
            (Request::Put { .. }, Message::RejectedLoop { .. })
                if self.replica && view.config.insert_end == InsertEnd::Sink =>
            {
                self.budget = 0;
                None
            }
            // Under the progress rule a loop costs nothing: the peer was
            // already on this search, one message found it out, and each
            // node tries each neighbour once.
            (_, Message::RejectedLoop { .. })
                if view.config.htl_rule == crate::routing::HtlRule::Progress =>
            {
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
            None => {
                self.budget = self.budget.min(self.retry_cap);
                self.next_hop(view)
            }
        };
        OnReply::Step { misbehaved, step }
    }

    /// The peer waited on timed out or its link went down. The subtree
    /// behind it may have spent any part of the budget and may still be
    /// running, so the search ends rather than overspend the HTL.
    pub fn give_up(&self) -> Answer<P> {
        match &self.request {
            Request::Get { .. } => self.end_get(GetEnding::Timeout),
            Request::Put { block } => self.end_put(block, PutEnding::TimedOut),
        }
    }

    fn end_get(&self, ending: GetEnding) -> Answer<P> {
        self.end(ending, GetEnding::upstream, GetEnding::outcome)
    }

    fn end_put(&self, block: &Block, ending: PutEnding) -> Answer<P> {
        let accepted = self.accepted_downstream;
        let replica = self.replica;
        self.end(
            ending,
            |e, uid| with_replica(e.upstream(uid, block), block, replica),
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
                let keep = keep.filter(|k| self.may_cache || !matches!(k, Keep::Cache(_)));
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

/// A relay that keeps a replica stores the block (before its answer goes
/// upstream), whatever it would otherwise have kept.
fn with_replica(
    (keep, msg): (Option<Keep>, Message),
    block: &Block,
    replica: bool,
) -> (Option<Keep>, Message) {
    match keep {
        None | Some(Keep::Cache(_)) if replica => (Some(Keep::Store(block.clone())), msg),
        keep => (keep, msg),
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
            PutEnding::Failed | PutEnding::TimedOut => (None, Message::InsertFailed { uid }),
            PutEnding::Collided(held) => (None, Message::InsertCollision { uid, block: held }),
            PutEnding::BudgetSpent => (sink, Message::InsertSucceeded { uid }),
            PutEnding::NoRoute(htl) => (sink, Message::RouteNotFound { uid, htl }),
        }
    }

    /// What to tell the local client. The originator keeps nothing; an
    /// insert some peer `accepted` counts as done without an acknowledgement.
    fn outcome(self, accepted: bool) -> ClientOutcome {
        match self {
            PutEnding::Succeeded => ClientOutcome::Inserted,
            PutEnding::Failed => ClientOutcome::Failed(Failure::NotStored),
            PutEnding::TimedOut => ClientOutcome::Failed(Failure::Timeout),
            PutEnding::Collided(_) => ClientOutcome::Failed(Failure::Collision),
            PutEnding::BudgetSpent | PutEnding::NoRoute(_) if accepted => ClientOutcome::Inserted,
            // The budget went on rejections alone.
            PutEnding::BudgetSpent => ClientOutcome::Failed(Failure::DataNotFound),
            PutEnding::NoRoute(_) => ClientOutcome::Failed(Failure::Overloaded),
        }
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
