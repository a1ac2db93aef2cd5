//! An audited network: the simulator's routers on a virtual clock, with
//! every node writing the audit records a real node writes (into a
//! [`MemoryAudit`] instead of `audit.jsonl` / `origin.jsonl`).
//!
//! Like the [`Engine`](crate::sim::engine::Engine) it drives exactly the
//! node's [`Router`] (routers, secrets and coins made as the harness makes
//! them; per-link latencies from [`Latency`]) and makes no routing decision;
//! it differs in running many client requests at once (a file's blocks are
//! fetched together, as a client does) and in logging every message, cache
//! and store event and client request the way the node's driver does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::audit::MemoryAudit;
use crate::formats::audit_log::outcome_text;
use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Message, TunnelId, Uid};
use crate::routing::htl::{policy_for, Anonymity, LinkCoins};
use crate::routing::{Action, ClientOutcome, ClientToken, Event, Router, RouterConfig, Time};
use crate::sim::engine::Latency;
use crate::sim::harness::{node_secret, Harness, MemStore};
use crate::sim::model::{Graph, NodeIx};

/// Virtual milliseconds to the audit's microseconds.
fn us(ms: Time) -> u64 {
    ms.saturating_mul(1000)
}

/// What the clients' requests came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub requests: u64,
    pub found: u64,
    pub inserted: u64,
    pub failed: u64,
    /// Messages sent, replies included.
    pub messages: u64,
    /// Misbehaviour reports (none expected: every node is honest).
    pub misbehaved: u64,
}

/// Routers on one virtual clock, every node audited.
pub struct AuditedNet {
    routers: Vec<Router<NodeIx>>,
    stores: Vec<MemStore>,
    latency: Latency,
    seed: u64,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    in_flight: HashMap<u64, (NodeIx, NodeIx, Message)>,
    timers: BinaryHeap<Reverse<(Time, NodeIx)>>,
    now: Time,
    seq: u64,
    rng: ChaCha8Rng,
    next_token: ClientToken,
    /// The client requests not answered yet: token -> their uid, once known.
    pending: HashMap<ClientToken, Option<Uid>>,
    pub counts: Counts,
    pub audit: MemoryAudit,
    /// Ground truth of every tunnel's path, for the experiments that score
    /// adversaries on it (no router reads it).
    pub tunnels: TunnelPaths,
}

/// One link of a tunnel: the build `from` sent to `to` under id `id`.
pub type TunnelLink = (NodeIx, NodeIx, TunnelId);

/// Which nodes each tunnel went through, as the driver saw the builds go
/// out: a hop that sends a `TunnelBuild` while handling a cell of a tunnel
/// extends that tunnel.
#[derive(Clone, Debug, Default)]
pub struct TunnelPaths {
    next: HashMap<TunnelLink, TunnelLink>,
    /// The first link of every tunnel an originator built, in order.
    pub originated: Vec<TunnelLink>,
}

impl TunnelPaths {
    /// Hops a path is followed for at most (above any walk's length).
    const MAX_PATH: usize = 64;

    /// The nodes of the tunnel that starts with `first`: the originator,
    /// then each hop; the last is the exit.
    pub fn path(&self, first: TunnelLink) -> Vec<NodeIx> {
        let mut path = vec![first.0, first.1];
        let mut link = first;
        while let Some(&next) = self.next.get(&link) {
            if path.len() >= Self::MAX_PATH {
                break;
            }
            path.push(next.1);
            link = next;
        }
        path
    }
}

impl AuditedNet {
    /// One router per node of `graph`, every node in `mode` (in `tunnel`,
    /// every client request goes through a tunnel).
    pub fn new(
        graph: &Graph,
        config: RouterConfig,
        mode: Anonymity,
        latency: Latency,
        seed: u64,
    ) -> AuditedNet {
        let n = graph.nodes();
        let location: Vec<Location> = graph
            .location
            .iter()
            .map(|&x| Location::from_f64(x))
            .collect();
        let mut routers: Vec<Router<NodeIx>> = (0..n)
            .map(|i| {
                let policy = policy_for(mode, LinkCoins::for_node(&node_secret(seed, i)));
                let mut r = Router::with_policy(config.clone(), location[i], policy);
                r.set_client_tunnels(mode == Anonymity::Tunnel);
                r.allow_stand_in_blocks();
                r
            })
            .collect();
        let mut audit = MemoryAudit::new(n);
        let empty = MemStore::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (i, neighbours) in graph.adj.iter().enumerate() {
            for &j in neighbours {
                let j = j as usize;
                audit.link_up(i, 0, j, location[j]);
                let event = Event::LinkUp {
                    peer: j as NodeIx,
                    location: location[j],
                    coins: Harness::link_coins(seed, i, j),
                };
                routers[i].handle(0, &mut rng, &empty, event);
            }
        }
        AuditedNet {
            routers,
            stores: vec![MemStore::default(); n],
            latency,
            seed,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            timers: BinaryHeap::new(),
            now: 0,
            seq: 0,
            rng,
            next_token: 1,
            pending: HashMap::new(),
            counts: Counts::default(),
            audit,
            tunnels: TunnelPaths::default(),
        }
    }

    fn token(&mut self) -> ClientToken {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, None);
        self.counts.requests += 1;
        token
    }

    /// `node`'s client asks for `key` (answered while the net runs).
    pub fn get(&mut self, node: NodeIx, key: RoutingKey) {
        let token = self.token();
        self.feed(node, Event::ClientGet { token, key });
    }

    /// Put `block` in `node`'s store, as if an insert had ended there.
    pub fn place(&mut self, node: NodeIx, block: Block) {
        self.stores[node as usize]
            .store
            .insert(block.routing_key(), block);
    }

    /// `node`'s client inserts `block`.
    pub fn put(&mut self, node: NodeIx, block: Block) {
        let token = self.token();
        self.feed(node, Event::ClientPut { token, block });
    }

    /// Deliver messages and fire timers until every client request is
    /// answered and no message is in flight (timers may stay pending), or
    /// `max_events` have happened. False if the bound stopped it.
    pub fn settle(&mut self, max_events: usize) -> bool {
        for _ in 0..max_events {
            if self.pending.is_empty() && self.queue.is_empty() {
                return true;
            }
            if !self.step(None) {
                return self.pending.is_empty();
            }
        }
        false
    }

    /// Let `ms` of virtual time pass (delivering and firing what falls in
    /// it), at most `max_events` events.
    pub fn idle(&mut self, ms: Time, max_events: usize) {
        let until = self.now.saturating_add(ms);
        for _ in 0..max_events {
            if !self.step(Some(until)) {
                break;
            }
        }
        self.now = self.now.max(until);
    }

    /// The earliest timer still due at its node.
    fn next_timer(&mut self) -> Option<Time> {
        while let Some(Reverse((at, node))) = self.timers.peek().copied() {
            if self.routers[node as usize].next_deadline() == Some(at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// One event (the earlier of the next delivery and the next timer, no
    /// later than `until`); false when there is none.
    fn step(&mut self, until: Option<Time>) -> bool {
        let next_msg = self.queue.peek().map(|Reverse((t, _))| *t);
        let next_timer = self.next_timer();
        let deliver = match (next_msg, next_timer) {
            (None, None) => return false,
            (Some(tm), timer) => timer.is_none_or(|tt| tm <= tt),
            (None, Some(_)) => false,
        };
        let at = if deliver { next_msg } else { next_timer };
        if at.zip(until).is_some_and(|(at, until)| at > until) {
            return false;
        }
        if deliver {
            let Some(Reverse((t, seq))) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(t);
            if let Some((from, to, msg)) = self.in_flight.remove(&seq) {
                self.audit
                    .received(to as usize, us(self.now), from as usize, &msg);
                self.feed(to, Event::Message { from, msg });
            }
        } else if let Some(Reverse((t, node))) = self.timers.pop() {
            self.now = self.now.max(t);
            self.feed(node, Event::Tick);
        }
        true
    }

    fn feed(&mut self, node: NodeIx, event: Event<NodeIx>) {
        let n = node as usize;
        let ts = us(self.now);
        // The tunnel link a message came in on: a build sent while handling
        // it extends that tunnel.
        let incoming = match &event {
            Event::Message { from, msg } if msg.message_kind().is_tunnel() => {
                Some((*from, node, msg.uid()))
            }
            _ => None,
        };
        let actions = self.routers[n].handle(self.now, &mut self.rng, &self.stores[n], event);
        let own: Vec<Uid> = actions
            .iter()
            .filter_map(|a| match a {
                Action::FlowOriginated { flow, .. } => Some(*flow),
                _ => None,
            })
            .collect();
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    if let Message::TunnelBuild { tunnel, .. } = &msg {
                        let link = (node, to, *tunnel);
                        if own.contains(tunnel) {
                            self.tunnels.originated.push(link);
                        } else if let Some(prev) = incoming {
                            self.tunnels.next.insert(prev, link);
                        }
                    }
                    self.audit.sent(n, ts, to as usize, &msg);
                    self.counts.messages += 1;
                    let at = self.now + self.latency.of_link(self.seed, node, to);
                    self.in_flight.insert(self.seq, (node, to, msg));
                    self.queue.push(Reverse((at, self.seq)));
                    self.seq += 1;
                }
                Action::Originated {
                    token,
                    uid,
                    key,
                    op,
                } => {
                    if let Some(slot) = self.pending.get_mut(&token) {
                        *slot = Some(uid);
                    }
                    self.audit.origin_started(n, ts, uid, key, op);
                }
                Action::ClientDone { token, outcome } => {
                    if let Some(Some(uid)) = self.pending.remove(&token) {
                        self.audit
                            .origin_finished(n, ts, uid, &outcome_text(&outcome));
                    }
                    match outcome {
                        ClientOutcome::Found(_) => self.counts.found += 1,
                        ClientOutcome::Inserted => self.counts.inserted += 1,
                        ClientOutcome::Failed(_) => self.counts.failed += 1,
                    }
                }
                Action::SessionDone { token, .. } => {
                    self.pending.remove(&token);
                }
                Action::CacheBlock { block } => {
                    let key = block.routing_key();
                    self.audit.block_cached(n, ts, key);
                    self.stores[n].cache.insert(key, block);
                }
                Action::StoreBlock { block } => {
                    let key = block.routing_key();
                    self.audit.block_stored(n, ts, key);
                    self.stores[n].store.insert(key, block);
                }
                Action::ClientCacheBlock { block } => {
                    self.stores[n].client.insert(block.routing_key(), block);
                }
                Action::TunnelExit { from, tunnel, keys } => {
                    self.audit.tunnel_exit(n, ts, from as usize, tunnel, keys);
                }
                Action::FlowOriginated { flow, op } => self.audit.flow_originated(n, flow, op),
                Action::Misbehaved { .. } => self.counts.misbehaved += 1,
            }
        }
        if let Some(at) = self.routers[n].next_deadline() {
            self.timers.push(Reverse((at, node)));
        }
    }
}
