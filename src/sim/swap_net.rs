//! Location swapping by its messages: every node runs the core's swap
//! protocol ([`Swapper`], the sans-IO state machine the real node runs with
//! `swap = true`) beside its [`Router`], on one virtual clock.
//!
//! Each node starts an attempt when its schedule says (every
//! [`SwapConfig::interval_ms`] on average), sends its `SwapRequest` on a
//! random walk, and the walk's end answers, commits and reveals over the
//! same path; the two swap if the core's rule says so and announce their
//! new locations to their neighbours (`LocationChanged`). Messages take the
//! link's latency ([`Latency`], the engine's model, the same per-link
//! values); steps time out; a node in its own attempt refuses to be a
//! partner (busy), a relay holds at most [`SwapConfig::max_relays`] walks.
//! Nothing here decides anything: the engine delivers messages and fires
//! ticks, as `src/node/router_task/swap.rs` does for a real node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::keys::Location;
use crate::message::swap::SwapMessage;
use crate::routing::htl::{DeterministicHtl, LinkCoins};
use crate::routing::swap::{SwapAction, SwapConfig, SwapEvent, Swapper};
use crate::routing::{Event, Router, RouterConfig, Time};
use crate::sim::harness::MemStore;
use crate::sim::model::{Graph, NodeIx};

use super::engine::{next_due, Latency, Timers};
use super::pitch_black::Attacker;

/// Events a run may handle per virtual millisecond before it stops (a
/// guard: a node starts an attempt about once per `interval_ms`).
const MAX_EVENTS_PER_MS: u64 = 1_000;

/// What the swap messages came to so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwapTally {
    /// Attempts started (nodes that sent a `SwapRequest`).
    pub attempts: u64,
    /// Swaps done (pairs of nodes that exchanged locations).
    pub swaps: u64,
    /// Attempts that ended rejected (a busy or refusing partner or relay,
    /// a walk back to the start) or on a lost link.
    pub failed: u64,
    /// Steps that timed out (own attempts, answers and relays).
    pub timed_out: u64,
    /// Swap messages delivered.
    pub messages: u64,
}

/// Many routers and swappers, one virtual clock.
pub struct SwapNet {
    routers: Vec<Router<NodeIx>>,
    swappers: Vec<Swapper<NodeIx>>,
    /// Nodes that swap dishonestly (`sim/pitch_black/`), in place of their
    /// swapper.
    attackers: BTreeMap<NodeIx, Attacker<NodeIx>>,
    latency: Latency,
    seed: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    timers: Timers,
    now: Time,
    seq: u64,
    rng: ChaCha8Rng,
    swaps: u64,
    messages: u64,
}

/// A swap message on a link: (arrival, send order, from, to, message),
/// delivered in that order.
type InFlight = (Time, u64, NodeIx, NodeIx, Pending);

/// A swap message in flight, ordered only by its place in the queue.
#[derive(Debug)]
struct Pending(SwapMessage);

impl PartialEq for Pending {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl SwapNet {
    /// A router at each node's location in `graph`, linked along its
    /// edges, and an active swapper with `config` beside each.
    pub fn new(graph: &Graph, config: &SwapConfig, latency: Latency, seed: u64) -> SwapNet {
        let n = graph.nodes();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let router_config = Arc::new(RouterConfig::default());
        let location = |i: usize| Location::from_f64(graph.location[i]);
        let mut routers: Vec<Router<NodeIx>> = (0..n)
            .map(|i| {
                let policy = Box::new(DeterministicHtl);
                Router::with_policy(Arc::clone(&router_config), location(i), policy)
            })
            .collect();
        let empty = MemStore::default();
        for (i, adj) in graph.adj.iter().enumerate() {
            for &peer in adj {
                let event = Event::LinkUp {
                    peer,
                    location: location(peer as usize),
                    coins: LinkCoins::default(),
                };
                routers[i].handle(0, &mut rng, &empty, event);
            }
        }
        let swappers = (0..n)
            .map(|_| Swapper::new(config.clone(), true, 0, &mut rng))
            .collect();
        let mut net = SwapNet {
            routers,
            swappers,
            attackers: BTreeMap::new(),
            latency,
            seed,
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            now: 0,
            seq: 0,
            rng,
            swaps: 0,
            messages: 0,
        };
        for i in 0..n {
            net.schedule(i as NodeIx);
        }
        net
    }

    /// Make `node` an attacker pulling locations to `point` (its swapper
    /// stays, unused; its router still routes).
    pub fn add_attacker(&mut self, node: NodeIx, point: Location, config: &SwapConfig) {
        let attacker = Attacker::new(point, config.clone(), self.now, &mut self.rng);
        self.attackers.insert(node, attacker);
        self.schedule(node);
    }

    /// Every honest node stops starting attempts (those under way finish).
    pub fn pause(&mut self) {
        for s in &mut self.swappers {
            s.set_paused(true);
        }
    }

    /// Offers the attackers revealed.
    pub fn attack_offers(&self) -> u64 {
        self.attackers.values().map(|a| a.offers).sum()
    }

    /// Per-node swap counters (attackers' swappers included, all zero).
    pub fn stats(&self) -> impl Iterator<Item = &crate::routing::swap::SwapStats> + '_ {
        self.swappers.iter().map(Swapper::stats)
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Every node's location now, in node order.
    pub fn locations(&self) -> impl Iterator<Item = Location> + '_ {
        self.routers.iter().map(Router::location)
    }

    /// The nodes' locations as a permutation of `graph`'s: node `i` gets
    /// the value of `graph.location` whose [`Location`] it now holds (an
    /// honest swap moves locations, it never makes one), or, for one an
    /// attacker handed out, that location itself.
    pub fn permute(&self, graph: &mut Graph) {
        let original: HashMap<u64, f64> = graph
            .location
            .iter()
            .map(|&x| (Location::from_f64(x).0, x))
            .collect();
        for (slot, now) in graph.location.iter_mut().zip(self.locations()) {
            *slot = original.get(&now.0).copied().unwrap_or(now.as_f64());
        }
    }

    /// Totals over every node.
    pub fn tally(&self) -> SwapTally {
        let mut t = SwapTally {
            // Each swap is reported by both sides.
            swaps: self.swaps / 2,
            messages: self.messages,
            ..SwapTally::default()
        };
        for s in &self.swappers {
            let st = s.stats();
            t.attempts += st.attempts;
            t.failed += st.failed;
            t.timed_out += st.timed_out;
        }
        t
    }

    /// Deliver messages and fire ticks until virtual time `until` (events
    /// due later wait for the next call).
    pub fn run_until(&mut self, until: Time) {
        let budget = until
            .saturating_sub(self.now)
            .saturating_mul(MAX_EVENTS_PER_MS);
        for _ in 0..budget.max(1) {
            let next_msg = self.queue.peek().map(|Reverse(m)| m.0);
            let next_timer = self.next_timer();
            let deliver = match (next_msg, next_timer) {
                (None, None) => break,
                (Some(tm), timer) => timer.is_none_or(|tt| tm <= tt),
                (None, Some(_)) => false,
            };
            let at = if deliver { next_msg } else { next_timer };
            if at.is_none_or(|at| at > until) {
                break;
            }
            if deliver {
                if let Some(Reverse((at, _, from, to, Pending(msg)))) = self.queue.pop() {
                    self.now = self.now.max(at);
                    self.messages += 1;
                    self.feed(to, SwapEvent::Message { from, msg });
                }
            } else if let Some(Reverse((at, node))) = self.timers.pop() {
                self.now = self.now.max(at);
                self.feed(node, SwapEvent::Tick);
            }
        }
        self.now = self.now.max(until);
    }

    /// The earliest timer still due (stale entries dropped).
    fn next_timer(&mut self) -> Option<Time> {
        let (swappers, attackers) = (&self.swappers, &self.attackers);
        next_due(&mut self.timers, |node, at| match attackers.get(&node) {
            Some(a) => a.next_deadline() == Some(at),
            None => swappers[node as usize].next_deadline() == Some(at),
        })
    }

    fn schedule(&mut self, node: NodeIx) {
        let due = match self.attackers.get(&node) {
            Some(a) => a.next_deadline(),
            None => self.swappers[node as usize].next_deadline(),
        };
        if let Some(at) = due {
            self.timers.push(Reverse((at, node)));
        }
    }

    fn feed(&mut self, node: NodeIx, event: SwapEvent<NodeIx>) {
        let n = node as usize;
        let (now, rng, router) = (self.now, &mut self.rng, &mut self.routers[n]);
        let actions = match self.attackers.get_mut(&node) {
            Some(a) => a.handle(now, rng, router, event),
            None => self.swappers[n].handle(now, rng, router, event),
        };
        for action in actions {
            match action {
                SwapAction::Send { to, msg } => {
                    let at = self.now + self.latency.of_link(self.seed, node, to);
                    self.queue
                        .push(Reverse((at, self.seq, node, to, Pending(msg))));
                    self.seq += 1;
                }
                SwapAction::Swapped { .. } => self.swaps += 1,
                SwapAction::NeighbourMoved { .. } | SwapAction::Misbehaved { .. } => {}
            }
        }
        self.schedule(node);
    }
}
