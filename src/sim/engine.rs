//! The simulator's discrete-event loop: many [`Router`]s on one virtual
//! clock, messages delivered in order of (arrival time, send order), timers
//! fired when due. Same seed, same run.
//!
//! Like the [`harness`](crate::sim::harness), it drives exactly the router
//! the real node drives and makes no routing decision of its own; it differs
//! in what scale needs: per-link latencies drawn from a distribution
//! ([`Latency`]), an ordered set of timers instead of a scan of every router, failed
//! nodes, per-node load counters, and per-request tallies instead of a log
//! of every message. Nodes keep their blocks in the compact stores of
//! [`blocks`](crate::sim::blocks) (each distinct block once, with the
//! sorted list of nodes holding it), which answer the router as the harness's
//! `MemStore` does.
//!
//! Requests run one at a time: [`Engine::get`] and [`Engine::put`] return
//! once the client has its answer and no message is in flight.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Htl, Message};
use crate::routing::htl::{policy_for, Anonymity, LinkCoins};
use crate::routing::{
    Action, ClientOutcome, ClientToken, Event, Lookahead, Router, RouterConfig, Time,
};
use crate::sim::baselines::Csr;
use crate::sim::blocks::{Blocks, NodeBlocks, NodeView};
use crate::sim::harness::{node_secret, Harness, MemStore};
use crate::sim::model::NodeIx;

use super::latency::mix;
pub use super::latency::Latency;

/// What one request cost, counted while it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every message sent, replies included.
    pub messages: u64,
    /// Messages that carried the block back (`DataFound`, a big
    /// `TunnelBackward` cell):
    /// the length of the path that found it.
    pub found_hops: u32,
    /// Requests forwarded (`DataRequest`, `InsertRequest`, `TunnelForward`).
    pub request_hops: u32,
    /// In mode `none`, the requester sent a request with `htl == max_htl`:
    /// its first hop knows who asked.
    pub exposed: bool,
}

/// The answer to one request and what it cost.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub outcome: Option<ClientOutcome>,
    pub tally: Tally,
}

impl Outcome {
    pub fn found(&self) -> bool {
        matches!(self.outcome, Some(ClientOutcome::Found(_)))
    }
}

/// A message on a link.
struct InFlight {
    at: Time,
    seq: u64,
    from: NodeIx,
    to: NodeIx,
    msg: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Timers of many nodes: (when, node), earliest first; an entry is stale
/// once its node's deadline moved.
pub(crate) type Timers = BinaryHeap<Reverse<(Time, NodeIx)>>;

/// The earliest timer that `due(node, at)` says still stands, dropping the
/// stale ones before it.
pub(crate) fn next_due(timers: &mut Timers, due: impl Fn(NodeIx, Time) -> bool) -> Option<Time> {
    while let Some(Reverse((at, node))) = timers.peek().copied() {
        if due(node, at) {
            return Some(at);
        }
        timers.pop();
    }
    None
}

/// Events one request may cause before the engine stops it (a guard, far
/// above any real request: HTL bounds a search's hops).
pub const MAX_EVENTS_PER_REQUEST: usize = 1_000_000;

/// Node `i`'s router, made as the harness makes it.
fn make_router(
    config: &Arc<RouterConfig>,
    location: Location,
    mode: Anonymity,
    seed: u64,
    i: usize,
) -> Router<NodeIx> {
    let policy = policy_for(mode, LinkCoins::for_node(&node_secret(seed, i)));
    let mut r = Router::with_policy(Arc::clone(config), location, policy);
    r.set_client_tunnels(mode == Anonymity::Tunnel);
    r.allow_stand_in_blocks();
    r
}

/// What the engine keeps of one node, side by side: each message it
/// delivers reads all of it, and at 100,000 nodes each separate table costs
/// a cache miss per message. Aligned to cache lines, so a slot spans as
/// few as its size allows.
#[repr(align(64))]
struct Slot {
    router: Router<NodeIx>,
    held: NodeBlocks,
    /// Messages this node has sent or received.
    load: u64,
    /// Online and not failed: messages to anyone else are lost.
    alive: bool,
    /// The router's deadline as [`Engine::timers`] lists it.
    timer: Option<Time>,
}

/// Slots of the direct-mapped cache of link latencies (see [`Engine::send`]).
const LATENCY_MEMO: usize = 4096;

/// Many routers, one virtual clock.
pub struct Engine {
    nodes: Vec<Slot>,
    blocks: Blocks,
    /// Removed for good (`fail`); churn never brings these back.
    failed: Vec<bool>,
    adj: Csr,
    locations: Vec<Location>,
    /// One copy, shared by every router.
    config: Arc<RouterConfig>,
    mode: Anonymity,
    max_htl: Htl,
    latency: Latency,
    seed: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Every node's next deadline, (when, node), kept exact: a node's entry
    /// moves when its deadline does, so no stale entry waits in a heap to
    /// be checked against a router long gone from the cache.
    timers: BTreeSet<(Time, NodeIx)>,
    now: Time,
    seq: u64,
    rng: ChaCha8Rng,
    next_token: ClientToken,
    requester: NodeIx,
    answer: Option<(ClientToken, ClientOutcome)>,
    tally: Tally,
    /// When set, every message sent: (from, to, message).
    pub trace: Option<Vec<(NodeIx, NodeIx, Message)>>,
    /// The actions of the event being handled (reused between events).
    actions: Vec<Action<NodeIx>>,
    /// Recent links' latencies: (link + 1, latency), by a hash of the link.
    latency_memo: Vec<(u64, Time)>,
}

impl Engine {
    /// One router per node at `locations[i]`, linked along `adj`, every node
    /// in `mode`. Routers, secrets and coins are made exactly as the harness
    /// makes them, so the same seed gives the harness's run.
    pub fn new(
        adj: &[Vec<NodeIx>],
        locations: &[Location],
        config: RouterConfig,
        mode: Anonymity,
        latency: Latency,
        seed: u64,
    ) -> Engine {
        let n = adj.len();
        let max_htl = config.max_htl;
        let config = Arc::new(config);
        let nodes: Vec<Slot> = (0..n)
            .map(|i| Slot {
                router: make_router(&config, locations[i], mode, seed, i),
                held: NodeBlocks::default(),
                load: 0,
                alive: true,
                timer: None,
            })
            .collect();
        let mut engine = Engine {
            nodes,
            blocks: Blocks::default(),
            failed: vec![false; n],
            adj: Csr::new(adj),
            locations: locations.to_vec(),
            config,
            mode,
            max_htl,
            latency,
            seed,
            queue: BinaryHeap::new(),
            timers: BTreeSet::new(),
            now: 0,
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_token: 1,
            requester: 0,
            answer: None,
            tally: Tally::default(),
            trace: None,
            actions: Vec::new(),
            latency_memo: vec![(0, 0); LATENCY_MEMO],
        };
        for (i, neighbours) in adj.iter().enumerate() {
            for &j in neighbours {
                engine.link_up(i as NodeIx, j);
            }
        }
        if engine.config.lookahead == Lookahead::Foaf {
            engine.announce_neighbourhoods(adj);
        }
        engine
    }

    /// Every node learns its neighbours' neighbours' locations, as a node
    /// hears them from its friends (FOAF routing).
    fn announce_neighbourhoods(&mut self, adj: &[Vec<NodeIx>]) {
        let mut view = Vec::new();
        for (i, neighbours) in adj.iter().enumerate() {
            for &j in neighbours {
                view.clear();
                view.extend(adj[j as usize].iter().map(|&k| self.locations[k as usize]));
                self.nodes[i].router.set_neighbour_view(&j, &view);
            }
        }
    }

    /// `node` learns of its link to `peer` (the link's coins and `peer`'s
    /// location, as the harness gives them).
    fn link_up(&mut self, node: NodeIx, peer: NodeIx) {
        // Coins matter only in freenet mode; deriving them costs a hash.
        let coins = if self.mode == Anonymity::Freenet {
            Harness::link_coins(self.seed, node as usize, peer as usize)
        } else {
            LinkCoins::default()
        };
        let event = Event::LinkUp {
            peer,
            location: self.locations[peer as usize],
            coins,
        };
        let empty = MemStore::default();
        self.nodes[node as usize]
            .router
            .handle(self.now, &mut self.rng, &empty, event);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn is_alive(&self, node: NodeIx) -> bool {
        self.nodes[node as usize].alive
    }

    /// Each node holds at most `blocks` (store and cache), the oldest
    /// dropped first; unbounded unless set.
    pub fn set_store_capacity(&mut self, blocks: usize) {
        self.blocks.set_capacity(blocks);
    }

    /// Messages each node has sent or received.
    pub fn load(&self) -> Vec<u64> {
        self.nodes.iter().map(|s| s.load).collect()
    }

    /// Put a block in a node's store, as if an insert had ended there.
    pub fn place(&mut self, node: NodeIx, block: Block) {
        let id = self.blocks.intern(block);
        self.blocks.hold(id, node);
    }

    /// Take nodes out: they hold nothing and answer nothing; messages to them
    /// are lost. Their neighbours are not told (a sudden failure), so a
    /// request waiting on one times out.
    pub fn fail(&mut self, nodes: &[NodeIx]) {
        let mut gone = vec![false; self.nodes.len()];
        for &n in nodes {
            self.nodes[n as usize].alive = false;
            self.failed[n as usize] = true;
            self.nodes[n as usize].held = NodeBlocks::default();
            gone[n as usize] = true;
        }
        if !nodes.is_empty() {
            self.blocks.forget(&gone);
        }
    }

    /// Churn: `node` leaves or comes back. A leaving node's neighbours see
    /// their links to it drop (`LinkDown`: a search waiting on it ends as on
    /// a timeout) and it forgets every search (a restart); it keeps its
    /// datastore. A returning node links up again with every neighbour that
    /// is online, both ways. Failed nodes stay out. Runs until quiet.
    pub fn set_online(&mut self, node: NodeIx, online: bool) {
        let n = node as usize;
        if self.failed[n] || self.nodes[n].alive == online {
            return;
        }
        self.nodes[n].alive = online;
        let neighbours: Vec<NodeIx> = self
            .adj
            .of(node)
            .iter()
            .copied()
            .filter(|&j| self.nodes[j as usize].alive)
            .collect();
        if online {
            for j in neighbours {
                self.link_up(node, j);
                self.link_up(j, node);
            }
        } else {
            self.nodes[n].router =
                make_router(&self.config, self.locations[n], self.mode, self.seed, n);
            self.set_timer(node, None);
            for j in neighbours {
                self.feed(j, Event::LinkDown { peer: node });
            }
        }
        self.run(None);
    }

    /// `node`'s client asks for `key`; runs until answered and quiet.
    pub fn get(&mut self, node: NodeIx, key: RoutingKey) -> Outcome {
        let token = self.begin(node);
        self.feed(node, Event::ClientGet { token, key });
        self.finish(token)
    }

    /// `node`'s client inserts `block`; runs until answered and quiet.
    pub fn put(&mut self, node: NodeIx, block: Block) -> Outcome {
        let token = self.begin(node);
        self.feed(node, Event::ClientPut { token, block });
        self.finish(token)
    }

    fn begin(&mut self, node: NodeIx) -> ClientToken {
        let token = self.next_token;
        self.next_token += 1;
        self.requester = node;
        self.answer = None;
        self.tally = Tally::default();
        token
    }

    fn finish(&mut self, token: ClientToken) -> Outcome {
        self.run(Some(token));
        let outcome = match self.answer.take() {
            Some((t, outcome)) if t == token => Some(outcome),
            _ => None,
        };
        Outcome {
            outcome,
            tally: self.tally,
        }
    }

    /// The earliest timer of a live node (a failed node's is dropped).
    fn next_timer(&mut self) -> Option<Time> {
        while let Some(&(at, node)) = self.timers.first() {
            if self.nodes[node as usize].alive {
                return Some(at);
            }
            self.set_timer(node, None);
        }
        None
    }

    /// List `node`'s deadline as `at` in [`Engine::timers`].
    fn set_timer(&mut self, node: NodeIx, at: Option<Time>) {
        let slot = &mut self.nodes[node as usize];
        if slot.timer == at {
            return;
        }
        if let Some(old) = slot.timer {
            self.timers.remove(&(old, node));
        }
        if let Some(at) = at {
            self.timers.insert((at, node));
        }
        slot.timer = at;
    }

    /// Deliver messages and fire timers until `token` is answered (or at
    /// once for `None`) and no message is in flight (timers still pending
    /// wait for later requests).
    fn run(&mut self, token: Option<ClientToken>) {
        for _ in 0..MAX_EVENTS_PER_REQUEST {
            let next_msg = self.queue.peek().map(|Reverse(m)| m.at);
            let next_timer = self.next_timer();
            let answered = match token {
                Some(token) => self.answer.as_ref().is_some_and(|(t, _)| *t == token),
                None => true,
            };
            let deliver = match (next_msg, next_timer) {
                (None, None) => return,
                (None, Some(_)) if answered => return,
                (Some(tm), timer) => timer.is_none_or(|tt| tm <= tt),
                (None, Some(_)) => false,
            };
            if deliver {
                let Some(Reverse(m)) = self.queue.pop() else {
                    return;
                };
                self.now = self.now.max(m.at);
                let slot = &mut self.nodes[m.to as usize];
                if slot.alive {
                    slot.load += 1;
                    self.feed(
                        m.to,
                        Event::Message {
                            from: m.from,
                            msg: m.msg,
                        },
                    );
                }
            } else if let Some((at, node)) = self.timers.pop_first() {
                self.nodes[node as usize].timer = None;
                self.now = self.now.max(at);
                self.feed(node, Event::Tick);
            }
        }
    }

    fn send(&mut self, from: NodeIx, to: NodeIx, msg: Message) {
        self.tally.messages += 1;
        self.nodes[from as usize].load += 1;
        match &msg {
            Message::DataFound { .. } => self.tally.found_hops += 1,
            Message::TunnelBackward { cell, .. } if cell.is_big() => self.tally.found_hops += 1,
            Message::DataRequest { .. }
            | Message::InsertRequest { .. }
            | Message::TunnelForward { .. } => self.tally.request_hops += 1,
            _ => {}
        }
        if self.mode == Anonymity::None && from == self.requester && msg.htl() == Some(self.max_htl)
        {
            self.tally.exposed = true;
        }
        if let Some(trace) = &mut self.trace {
            trace.push((from, to, msg.clone()));
        }
        let at = self.now + self.link_latency(from, to);
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq,
            from,
            to,
            msg,
        }));
    }

    /// The latency of a link, drawn once per link and remembered while it
    /// is in use: a reply crosses the link its request took, so the
    /// memo spares the draw's logarithm, cosine and exponential on about
    /// half the messages. The same value as [`Latency::of_link`].
    fn link_latency(&mut self, a: NodeIx, b: NodeIx) -> Time {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let link = (u64::from(lo) << 32) | u64::from(hi);
        let slot = (mix(link) as usize) % LATENCY_MEMO;
        match self.latency_memo[slot] {
            (tag, latency) if tag == link + 1 => latency,
            _ => {
                let latency = self.latency.of_link(self.seed, lo, hi);
                self.latency_memo[slot] = (link + 1, latency);
                latency
            }
        }
    }

    fn feed(&mut self, node: NodeIx, event: Event<NodeIx>) {
        let n = node as usize;
        let Slot { router, held, .. } = &mut self.nodes[n];
        let view = NodeView {
            blocks: &self.blocks,
            index: node,
            node: held,
        };
        let mut actions = std::mem::take(&mut self.actions);
        router.handle_into(self.now, &mut self.rng, &view, event, &mut actions);
        for action in actions.drain(..) {
            match action {
                Action::Send { to, msg } => self.send(node, to, msg),
                Action::ClientDone { token, outcome } => self.answer = Some((token, outcome)),
                Action::SessionDone { token, outcomes } => {
                    if let Some(first) = outcomes.into_iter().next() {
                        self.answer = Some((token, first));
                    }
                }
                Action::CacheBlock { block } | Action::StoreBlock { block } => {
                    let id = self.blocks.intern(block);
                    self.blocks.hold(id, node);
                }
                Action::ClientCacheBlock { block } => {
                    let id = self.blocks.intern(block);
                    self.nodes[n].held.client.insert(id);
                }
                Action::Originated { .. }
                | Action::FlowOriginated { .. }
                | Action::TunnelExit { .. }
                | Action::Misbehaved { .. } => {}
            }
        }
        self.actions = actions;
        let deadline = self.nodes[n].router.next_deadline();
        self.set_timer(node, deadline);
    }
}
