//! The in-process, deterministic harness: many routers, one virtual clock,
//! one seeded random source, messages delivered in order of (arrival time,
//! send order). Same seed, same run.
//!
//! It drives exactly the [`Router`] the real node drives; nothing here makes
//! a routing decision. Running a topology's `[scenario]` on it is
//! [`crate::sim::scenario`]'s job.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::audit::trace::format_trace_line;
use crate::keys::{Block, RoutingKey};
use crate::message::{Message, Uid};
use crate::routing::htl::{policy_for, Anonymity, LinkCoins};
use crate::routing::{
    Action, BlockSource, ClientOutcome, ClientToken, Event, Op, Router, RouterConfig, Time,
};
use crate::sim::topology::Topology;

mod tunnel;

// Scenario running lives in `sim::scenario`; these paths keep working.
pub use crate::sim::scenario::{block_near, run_scenario, run_scenario_in, ScenarioRun};

/// A node's datastore in memory: the store (sink) and the cache, plus the
/// client cache only the node's own client reads.
#[derive(Default, Clone, Debug)]
pub struct MemStore {
    pub store: HashMap<RoutingKey, Block>,
    pub cache: HashMap<RoutingKey, Block>,
    pub client: HashMap<RoutingKey, Block>,
}

impl BlockSource for MemStore {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.store.get(key).or_else(|| self.cache.get(key)).cloned()
    }

    fn client_lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.client.get(key).cloned()
    }
}

/// Node `i`'s secret in a harness run with `seed`.
pub(crate) fn node_secret(seed: u64, i: usize) -> [u8; 16] {
    let mut secret = [0u8; 16];
    secret[..8].copy_from_slice(&seed.to_be_bytes());
    secret[8..].copy_from_slice(&(i as u64).to_be_bytes());
    secret
}

/// One message as it left a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub at: Time,
    pub from: usize,
    pub to: usize,
    pub msg: Message,
}

/// A local request made through the harness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub node: usize,
    pub op: Op,
    pub uid: Option<Uid>,
    pub outcomes: Vec<ClientOutcome>,
    /// How many answers (`ClientDone` / `SessionDone`) the request got.
    pub answers: usize,
}

/// A network of routers in one process.
pub struct Harness {
    pub names: Vec<String>,
    pub adjacency: Vec<Vec<usize>>,
    routers: Vec<Router<usize>>,
    pub stores: Vec<MemStore>,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    in_flight: HashMap<u64, (usize, usize, Message)>,
    seq: u64,
    now: Time,
    latency_ms: Time,
    rng: ChaCha8Rng,
    /// Every message sent, in order.
    pub sent: Vec<Sent>,
    pub clients: HashMap<ClientToken, ClientRecord>,
    next_token: ClientToken,
    /// Misbehaviour reports: (reporter, peer).
    pub misbehaviour: Vec<(usize, usize)>,
    /// Ground truth of tunnel flows ([`Action::FlowOriginated`]): (node, flow).
    pub flows_originated: Vec<(usize, u64)>,
    /// What exits opened: (exit, the neighbour the cell came from, keys).
    pub exits: Vec<(usize, usize, Vec<crate::keys::RoutingKey>)>,
}

impl Harness {
    /// Build one router per topology node, link every edge, all with `config`
    /// in anonymity mode `none`.
    pub fn new(topology: &Topology, config: RouterConfig, seed: u64) -> Harness {
        Self::with_mode(topology, config, seed, Anonymity::None)
    }

    /// As [`Harness::new`], every node in `mode`. Node `i`'s secret is the
    /// seed and `i`; its coins towards node `j` derive from that secret and
    /// `j` ([`Harness::link_coins`]), so the same seed gives the same coins.
    pub fn with_mode(
        topology: &Topology,
        config: RouterConfig,
        seed: u64,
        mode: Anonymity,
    ) -> Harness {
        let modes = vec![mode; topology.nodes.len()];
        Self::with_modes(topology, config, seed, &modes)
    }

    /// As [`Harness::with_mode`], node `i` in `modes[i]` (a mixed network;
    /// nodes beyond `modes` run `none`).
    pub fn with_modes(
        topology: &Topology,
        config: RouterConfig,
        seed: u64,
        modes: &[Anonymity],
    ) -> Harness {
        let adjacency = topology.adjacency();
        let mut routers: Vec<Router<usize>> = (0..topology.nodes.len())
            .map(|i| {
                let mode = modes.get(i).copied().unwrap_or_default();
                let policy = policy_for(mode, LinkCoins::for_node(&node_secret(seed, i)));
                Router::with_policy(config.clone(), topology.nodes[i].location, policy)
            })
            .collect();
        let stores = vec![MemStore::default(); topology.nodes.len()];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (i, neighbours) in adjacency.iter().enumerate() {
            for &j in neighbours {
                let event = Event::LinkUp {
                    peer: j,
                    location: topology.nodes[j].location,
                    coins: Self::link_coins(seed, i, j),
                };
                let actions = routers[i].handle(0, &mut rng, &stores[i], event);
                debug_assert!(actions.is_empty());
            }
        }
        Harness {
            names: topology.nodes.iter().map(|n| n.name.clone()).collect(),
            adjacency,
            routers,
            stores,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            seq: 0,
            now: 0,
            latency_ms: 10,
            rng,
            sent: Vec::new(),
            clients: HashMap::new(),
            next_token: 1,
            misbehaviour: Vec::new(),
            flows_originated: Vec::new(),
            exits: Vec::new(),
        }
    }

    /// The HTL coins node `from` uses for requests arriving from node `to`.
    pub fn link_coins(seed: u64, from: usize, to: usize) -> LinkCoins {
        LinkCoins::for_link(&node_secret(seed, from), &(to as u64).to_be_bytes())
    }

    pub fn len(&self) -> usize {
        self.routers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn router(&self, node: usize) -> &Router<usize> {
        &self.routers[node]
    }

    /// Put a block in a node's store, as if an insert had ended there.
    pub fn place(&mut self, node: usize, block: Block) {
        self.stores[node].store.insert(block.routing_key(), block);
    }

    /// Ask `node`'s router for `key` on behalf of its local client.
    pub fn get(&mut self, node: usize, key: RoutingKey) -> ClientToken {
        let token = self.new_client(node, Op::Get);
        self.feed(node, Event::ClientGet { token, key });
        token
    }

    /// Insert `block` from `node`.
    pub fn put(&mut self, node: usize, block: Block) -> ClientToken {
        let token = self.new_client(node, Op::Put);
        self.feed(node, Event::ClientPut { token, block });
        token
    }

    /// Deliver a raw message to `node` as if `from` had sent it (for tests of
    /// malformed or unexpected input).
    pub fn inject(&mut self, from: usize, node: usize, msg: Message) {
        self.feed(node, Event::Message { from, msg });
    }

    fn new_client(&mut self, node: usize, op: Op) -> ClientToken {
        let token = self.next_token;
        self.next_token += 1;
        self.clients.insert(
            token,
            ClientRecord {
                node,
                op,
                uid: None,
                outcomes: Vec::new(),
                answers: 0,
            },
        );
        token
    }

    /// The single outcome of a local request, once it has one.
    pub fn outcome(&self, token: ClientToken) -> Option<&ClientOutcome> {
        self.clients.get(&token).and_then(|c| c.outcomes.first())
    }

    fn feed(&mut self, node: usize, event: Event<usize>) {
        let actions = self.routers[node].handle(self.now, &mut self.rng, &self.stores[node], event);
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    self.sent.push(Sent {
                        at: self.now,
                        from: node,
                        to,
                        msg: msg.clone(),
                    });
                    let seq = self.seq;
                    self.seq += 1;
                    self.in_flight.insert(seq, (node, to, msg));
                    self.queue.push(Reverse((self.now + self.latency_ms, seq)));
                }
                Action::Originated { token, uid, .. } => {
                    if let Some(c) = self.clients.get_mut(&token) {
                        c.uid = Some(uid);
                    }
                }
                Action::ClientDone { token, outcome } => {
                    if let Some(c) = self.clients.get_mut(&token) {
                        c.outcomes.push(outcome);
                        c.answers += 1;
                    }
                }
                Action::CacheBlock { block } => {
                    self.stores[node].cache.insert(block.routing_key(), block);
                }
                Action::StoreBlock { block } => {
                    self.stores[node].store.insert(block.routing_key(), block);
                }
                Action::Misbehaved { peer, .. } => self.misbehaviour.push((node, peer)),
                action @ (Action::ClientCacheBlock { .. }
                | Action::SessionDone { .. }
                | Action::FlowOriginated { .. }
                | Action::TunnelExit { .. }) => self.on_tunnel_action(node, action),
            }
        }
    }

    /// Deliver messages and fire timers until nothing is left to do, or until
    /// `max_steps` deliveries have happened. Returns the number of steps.
    pub fn run(&mut self, max_steps: usize) -> usize {
        let mut steps = 0;
        while steps < max_steps {
            let next_msg = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.routers.iter().filter_map(|r| r.next_deadline()).min();
            let deliver = match (next_msg, next_timer) {
                (None, None) => break,
                (Some(tm), timer) => timer.is_none_or(|tt| tm <= tt),
                (None, Some(_)) => false,
            };
            if deliver {
                let Some(Reverse((t, seq))) = self.queue.pop() else {
                    break;
                };
                self.now = self.now.max(t);
                if let Some((from, to, msg)) = self.in_flight.remove(&seq) {
                    self.feed(to, Event::Message { from, msg });
                }
            } else if let Some(tt) = next_timer {
                self.now = self.now.max(tt);
                for node in 0..self.routers.len() {
                    if self.routers[node]
                        .next_deadline()
                        .is_some_and(|d| d <= self.now)
                    {
                        self.feed(node, Event::Tick);
                    }
                }
            }
            steps += 1;
        }
        steps
    }

    /// The messages of one request, in the `veil trace` line format.
    pub fn trace_lines(&self, uid: Uid) -> Vec<String> {
        self.sent
            .iter()
            .filter(|s| s.msg.uid() == uid)
            .map(|s| format_trace_line(&self.names[s.from], &self.names[s.to], &s.msg))
            .collect()
    }
}
