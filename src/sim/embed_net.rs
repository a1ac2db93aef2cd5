//! The tree embedding by its messages (`routing::embed::Embedder`, one
//! per node) on one virtual clock with the engine's link latencies: what
//! `veil sim --experiment swap --embedding tree` runs instead of swapping.
//! Nothing here decides anything: it delivers messages and fires ticks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::keys::Location;
use crate::routing::embed::{EmbedAction, EmbedConfig, EmbedEvent, EmbedMessage, Embedder};
use crate::routing::Time;
use crate::sim::engine::Latency;
use crate::sim::model::{Graph, NodeIx};

/// Events a run may handle per virtual millisecond before it stops (a
/// guard against a message storm).
const MAX_EVENTS_PER_MS: u64 = 1_000;

/// Every node's embedder, one clock.
#[derive(Clone)]
pub struct EmbedNet {
    nodes: Vec<Embedder<NodeIx>>,
    adj: Vec<Vec<NodeIx>>,
    /// Nodes away (churn): they get no messages and fire no ticks.
    offline: Vec<bool>,
    /// Does the node have a timer in `timers`? (An away node's lapses.)
    armed: Vec<bool>,
    latency: Latency,
    seed: u64,
    /// (arrival, order, slot in `messages`).
    queue: BinaryHeap<Reverse<(Time, u64, usize)>>,
    messages: Vec<Option<(NodeIx, NodeIx, EmbedMessage)>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Time, NodeIx)>>,
    now: Time,
    seq: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Per node: the point a dishonest node pulls its subtree to
    /// ([`EmbedNet::add_attacker`]).
    attackers: Vec<Option<Location>>,
}

impl EmbedNet {
    /// An embedder per node of `graph`, linked along its edges.
    pub fn new(graph: &Graph, config: &EmbedConfig, latency: Latency, seed: u64) -> EmbedNet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..graph.nodes())
            .map(|_| Embedder::new(config.clone(), 0, &mut rng))
            .collect();
        let mut net = EmbedNet {
            nodes,
            adj: graph.adj.clone(),
            offline: vec![false; graph.nodes()],
            armed: vec![true; graph.nodes()],
            latency,
            seed,
            queue: BinaryHeap::new(),
            messages: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            now: 0,
            seq: 0,
            delivered: 0,
            attackers: vec![None; graph.nodes()],
        };
        for (i, adj) in graph.adj.iter().enumerate() {
            for &peer in adj {
                net.feed(i as NodeIx, EmbedEvent::LinkUp { peer });
            }
            let at = net.nodes[i].next_deadline();
            net.timers.push(Reverse((at, i as NodeIx)));
        }
        net
    }

    /// `node` leaves (its neighbours see their links go down; it keeps its
    /// state) or comes back (the links come up again both ways, and it
    /// learns the tree as a new neighbour would, keeping its location
    /// until a new interval comes).
    pub fn set_online(&mut self, node: NodeIx, online: bool) {
        let n = node as usize;
        if self.offline[n] != online {
            return;
        }
        self.offline[n] = !online;
        if online && !self.armed[n] {
            self.armed[n] = true;
            let at = self.nodes[n].next_deadline().max(self.now);
            self.timers.push(Reverse((at, node)));
        }
        let peers: Vec<NodeIx> = self.adj[n]
            .iter()
            .copied()
            .filter(|&p| !self.offline[p as usize])
            .collect();
        for peer in peers {
            if online {
                self.feed(node, EmbedEvent::LinkUp { peer });
                self.feed(peer, EmbedEvent::LinkUp { peer: node });
            } else {
                self.feed(node, EmbedEvent::LinkDown { peer });
                self.feed(peer, EmbedEvent::LinkDown { peer: node });
            }
        }
    }

    /// Every node that is away comes back.
    pub fn all_online(&mut self) {
        for n in 0..self.nodes.len() {
            self.set_online(n as NodeIx, true);
        }
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Each node's location so far (`None` until its first interval).
    pub fn locations(&self) -> impl Iterator<Item = Option<Location>> + '_ {
        // An attacker sits where it pulls its tree.
        let own = self.nodes.iter().map(Embedder::location);
        own.zip(&self.attackers).map(|(at, a)| a.or(at))
    }

    /// Write the locations reached into `graph` (nodes without one keep
    /// theirs).
    pub fn apply(&self, graph: &mut Graph) {
        for (slot, at) in graph.location.iter_mut().zip(self.locations()) {
            if let Some(at) = at {
                *slot = at.as_f64();
            }
        }
    }

    /// Deliver messages and fire ticks until virtual time `until`.
    pub fn run_until(&mut self, until: Time) {
        let budget = until
            .saturating_sub(self.now)
            .saturating_mul(MAX_EVENTS_PER_MS);
        for _ in 0..budget.max(1) {
            let msg = self.queue.peek().map(|Reverse(m)| m.0);
            let timer = self.timers.peek().map(|Reverse(t)| t.0);
            let deliver = match (msg, timer) {
                (None, None) => break,
                (Some(m), t) => t.is_none_or(|t| m <= t),
                (None, Some(_)) => false,
            };
            let at = if deliver { msg } else { timer };
            if at.is_none_or(|at| at > until) {
                break;
            }
            if deliver {
                let Some(Reverse((at, _, slot))) = self.queue.pop() else {
                    break;
                };
                self.now = self.now.max(at);
                if let Some((from, to, msg)) = self.messages[slot].take() {
                    self.free.push(slot);
                    // A message to or from a node that left is lost.
                    if !self.offline[to as usize] && !self.offline[from as usize] {
                        self.delivered += 1;
                        self.feed(to, EmbedEvent::Message { from, msg });
                    }
                }
            } else if let Some(Reverse((at, node))) = self.timers.pop() {
                self.now = self.now.max(at);
                if self.offline[node as usize] {
                    self.armed[node as usize] = false;
                    continue;
                }
                self.feed(node, EmbedEvent::Tick);
                let next = self.nodes[node as usize].next_deadline();
                self.timers.push(Reverse((next, node)));
            }
        }
        self.now = self.now.max(until);
    }

    /// Make `node` dishonest from now on: it claims the smallest ticket
    /// there is at depth 0, so every node that hears of it takes it as
    /// root, and it gives each neighbour an interval of width 1 at `point`,
    /// so its whole tree is pulled onto one location (the tree
    /// embedding's Pitch Black; `veil sim --experiment pitch-black
    /// --embedding tree`).
    pub fn add_attacker(&mut self, node: NodeIx, point: Location) {
        self.attackers[node as usize] = Some(point);
        for &peer in &self.adj[node as usize].clone() {
            self.send(node, peer, EmbedMessage::Root { root: 0, depth: 0 });
        }
    }

    /// Where each attacker pulls its tree.
    pub fn attack_points(&self) -> Vec<Location> {
        self.attackers.iter().flatten().copied().collect()
    }

    fn feed(&mut self, node: NodeIx, event: EmbedEvent<NodeIx>) {
        if let Some(point) = self.attackers[node as usize] {
            // Its own embedder only keeps the clock; it answers for itself.
            let tick = matches!(event, EmbedEvent::Tick);
            let up = match &event {
                EmbedEvent::LinkUp { peer } => Some(*peer),
                _ => None,
            };
            let _ = self.nodes[node as usize].handle(self.now, event);
            if let Some(peer) = up {
                self.send(node, peer, EmbedMessage::Root { root: 0, depth: 0 });
            }
            if tick {
                for &peer in &self.adj[node as usize].clone() {
                    let msg = EmbedMessage::Interval {
                        root: 0,
                        start: point.0,
                        width: 1,
                    };
                    self.send(node, peer, msg);
                }
            }
            return;
        }
        let actions = self.nodes[node as usize].handle(self.now, event);
        for action in actions {
            if let EmbedAction::Send { to, msg } = action {
                self.send(node, to, msg);
            }
        }
    }

    fn send(&mut self, node: NodeIx, to: NodeIx, msg: EmbedMessage) {
        let at = self.now + self.latency.of_link(self.seed, node, to);
        let slot = match self.free.pop() {
            Some(s) => {
                self.messages[s] = Some((node, to, msg));
                s
            }
            None => {
                self.messages.push(Some((node, to, msg)));
                self.messages.len() - 1
            }
        };
        self.queue.push(Reverse((at, self.seq, slot)));
        self.seq += 1;
    }
}
