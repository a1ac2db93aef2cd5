//! Tunnels: the relay and exit side (this file) and the originator's
//! sessions (`client.rs`). Sans-IO like the rest of the core: `now` and the
//! random source come from the caller through the router's `Ctx`.
//!
//! A build walks from the originator to a uniformly random neighbour; each
//! node that receives one answers `TunnelBuilt` at once, then extends the
//! walk with probability `p_forward` (to a random neighbour other than the
//! one it came from, when it has another) or becomes the exit. Every link
//! of a tunnel has its own random [`TunnelId`], chosen by the sender of the
//! build on that link. The exit runs each key of a `TunnelGet` (each block
//! of a `TunnelPut`) through this router's own search pool, exactly as the
//! local client's requests, and streams the answers back. Hops keep nothing
//! of what they relay. See `docs/protocol.md`, "Tunnels".

mod client;

use std::collections::{BTreeMap, HashMap};

use rand::Rng;

use crate::message::{Message, TunnelId, TunnelOutcome, PAD_KEY};
use crate::routing::search::{Origin, Request, Search};
use crate::routing::TunnelConfig;
use crate::routing::{Action, ClientOutcome, Ctx, Failure, Flow, PeerId, Router, Time};

pub(crate) use client::ClientSide;

/// A hop's handle in its own table.
type HopId = u64;

/// A search the exit runs for a tunnel: which tunnel, which of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitJob {
    hop: HopId,
    index: u32,
}

/// One tunnel this node relays (it has a downstream) or exits (it has none).
#[derive(Clone, Debug)]
struct Hop<P> {
    up: (P, TunnelId),
    down: Option<(P, TunnelId)>,
    /// The exit numbers the keys and blocks it receives, from 0.
    next_index: u32,
    last_used: Time,
}

/// Every tunnel this node takes part in.
pub(crate) struct Tunnels<P> {
    /// Does the local client's `ClientGet` / `ClientPut` go through tunnels?
    pub client_mode: bool,
    hops: BTreeMap<HopId, Hop<P>>,
    by_up: HashMap<(P, TunnelId), HopId>,
    by_down: HashMap<(P, TunnelId), HopId>,
    next_hop: HopId,
    exit_jobs: HashMap<Flow, ExitJob>,
    pub(crate) client: ClientSide<P>,
}

impl<P> Default for Tunnels<P> {
    fn default() -> Self {
        Tunnels {
            client_mode: false,
            hops: BTreeMap::new(),
            by_up: HashMap::new(),
            by_down: HashMap::new(),
            next_hop: 0,
            exit_jobs: HashMap::new(),
            client: ClientSide::default(),
        }
    }
}

impl<P: PeerId> Tunnels<P> {
    /// The earliest time tunnel state needs a tick.
    pub fn next_deadline(&self, config: &TunnelConfig) -> Option<Time> {
        let idle = self
            .hops
            .values()
            .map(|h| h.last_used.saturating_add(config.idle_ms))
            .min();
        idle.into_iter()
            .chain(self.client.next_deadline(config))
            .min()
    }

    /// If this flow is a search run as an exit, stop tracking it and say for whom.
    pub fn take_exit_job(&mut self, flow: Flow) -> Option<ExitJob> {
        self.exit_jobs.remove(&flow)
    }

    /// Tunnels this node relays or exits right now.
    pub fn hop_count(&self) -> usize {
        self.hops.len()
    }

    /// Is `(peer, tunnel)` already used by this node on that link?
    fn id_taken(&self, peer: &P, tunnel: TunnelId) -> bool {
        let key = (peer.clone(), tunnel);
        self.by_up.contains_key(&key)
            || self.by_down.contains_key(&key)
            || self.client.uses(peer, tunnel)
    }

    fn remove(&mut self, id: HopId) -> Option<Hop<P>> {
        let hop = self.hops.remove(&id)?;
        self.by_up.remove(&hop.up);
        if let Some(down) = &hop.down {
            self.by_down.remove(down);
        }
        Some(hop)
    }
}

/// `p_forward`, clamped into `[0, 0.99]` (NaN counts as 0).
pub(crate) fn p_forward(config: &TunnelConfig) -> f64 {
    if config.p_forward.is_nan() {
        0.0
    } else {
        config.p_forward.clamp(0.0, 0.99)
    }
}

/// A fresh tunnel identifier: random, top bit set (fixed encoded size).
fn random_id<P: PeerId>(cx: &mut Ctx<'_, P>) -> TunnelId {
    cx.rng.next_u64() | (1 << 63)
}

fn outcome_on_wire(outcome: ClientOutcome, tunnel: TunnelId, index: u32) -> Message {
    let outcome = match outcome {
        ClientOutcome::Found(block) => {
            return Message::TunnelData {
                tunnel,
                index,
                block,
            }
        }
        ClientOutcome::Inserted => TunnelOutcome::Inserted,
        ClientOutcome::Failed(Failure::DataNotFound) => TunnelOutcome::DataNotFound,
        ClientOutcome::Failed(Failure::RouteNotFound) => TunnelOutcome::RouteNotFound,
        ClientOutcome::Failed(Failure::Timeout) => TunnelOutcome::Timeout,
        ClientOutcome::Failed(Failure::Overloaded) => TunnelOutcome::Overloaded,
        ClientOutcome::Failed(Failure::NoPeers) => TunnelOutcome::NoPeers,
        ClientOutcome::Failed(Failure::Collision) => TunnelOutcome::Collision,
        ClientOutcome::Failed(Failure::BadBlock) => TunnelOutcome::BadBlock,
        ClientOutcome::Failed(Failure::NotStored) => TunnelOutcome::NotStored,
    };
    Message::TunnelResult {
        tunnel,
        index,
        outcome,
    }
}

impl<P: PeerId> Router<P> {
    /// A tunnel message from a neighbour.
    pub(super) fn on_tunnel_message(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        let tunnel = msg.uid();
        let up = self.tunnels.by_up.get(&(from.clone(), tunnel)).copied();
        let down = self.tunnels.by_down.get(&(from.clone(), tunnel)).copied();
        match msg {
            Message::TunnelBuild { tunnel } => self.on_build(cx, from, tunnel),
            Message::TunnelBuilt { tunnel } => self.client_heard(cx, &from, tunnel),
            // A batch for a tunnel this node does not know: it is gone.
            Message::TunnelGet { .. } | Message::TunnelPut { .. } if up.is_none() => {
                cx.out.push(Action::Send {
                    to: from,
                    msg: Message::TunnelDown { tunnel },
                });
            }
            Message::TunnelGet { keys, .. } => {
                let Some(id) = up else { return };
                let real: Vec<_> = keys.iter().filter(|k| **k != PAD_KEY).copied().collect();
                let relayed = self.relay_down(cx, id, |t| Message::TunnelGet { tunnel: t, keys });
                if !relayed {
                    for key in real {
                        self.exit_start(cx, id, Request::Get { key });
                    }
                }
            }
            Message::TunnelPut { block, .. } => {
                let Some(id) = up else { return };
                let copy = block.clone();
                let relayed = self.relay_down(cx, id, |t| Message::TunnelPut {
                    tunnel: t,
                    block: copy,
                });
                if !relayed {
                    self.exit_start(cx, id, Request::Put { block });
                }
            }
            Message::TunnelData { .. } | Message::TunnelResult { .. } => match down {
                Some(id) => self.relay_up(cx, id, msg),
                None => self.client_reply(cx, from, msg),
            },
            Message::TunnelDown { tunnel } => {
                if let Some(id) = up.or(down) {
                    self.tear_down(cx, id);
                } else {
                    self.client_lost(cx, &from, tunnel);
                }
            }
            _ => {}
        }
    }

    /// Answer a build at once, then extend it or become its exit.
    fn on_build(&mut self, cx: &mut Ctx<'_, P>, from: P, tunnel: TunnelId) {
        let config = &self.config.tunnel;
        let key = (from.clone(), tunnel);
        if self.tunnels.by_up.contains_key(&key) || self.tunnels.hops.len() >= config.max_hops {
            cx.out.push(Action::Send {
                to: from,
                msg: Message::TunnelDown { tunnel },
            });
            return;
        }
        let extend = cx.rng.gen::<f64>() < p_forward(config);
        cx.out.push(Action::Send {
            to: from.clone(),
            msg: Message::TunnelBuilt { tunnel },
        });
        let mut down = None;
        if extend {
            if let Some(next) = self.random_neighbour(cx, Some(&from)) {
                let id = self.fresh_tunnel_id(cx, &next);
                cx.out.push(Action::Send {
                    to: next.clone(),
                    msg: Message::TunnelBuild { tunnel: id },
                });
                down = Some((next, id));
            }
        }
        let id = self.tunnels.next_hop;
        self.tunnels.next_hop += 1;
        self.tunnels.by_up.insert(key.clone(), id);
        if let Some(d) = &down {
            self.tunnels.by_down.insert(d.clone(), id);
        }
        let hop = Hop {
            up: key,
            down,
            next_index: 0,
            last_used: cx.now,
        };
        self.tunnels.hops.insert(id, hop);
    }

    /// A uniformly random neighbour, other than `avoid` when there is another.
    pub(super) fn random_neighbour(&self, cx: &mut Ctx<'_, P>, avoid: Option<&P>) -> Option<P> {
        let mut candidates: Vec<&P> = self
            .neighbours
            .keys()
            .filter(|p| Some(*p) != avoid)
            .collect();
        if candidates.is_empty() {
            candidates = self.neighbours.keys().collect();
        }
        if candidates.is_empty() {
            return None;
        }
        let i = cx.rng.gen_range(0..candidates.len());
        Some(candidates[i].clone())
    }

    /// A tunnel id this node has not used on the link to `peer`.
    pub(super) fn fresh_tunnel_id(&self, cx: &mut Ctx<'_, P>, peer: &P) -> TunnelId {
        let mut id = random_id(cx);
        while self.tunnels.id_taken(peer, id) {
            id = random_id(cx);
        }
        id
    }

    /// Pass a message on downstream; false when this node is the exit.
    fn relay_down(
        &mut self,
        cx: &mut Ctx<'_, P>,
        id: HopId,
        msg: impl FnOnce(TunnelId) -> Message,
    ) -> bool {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return true;
        };
        hop.last_used = cx.now;
        match &hop.down {
            Some((to, t)) => {
                cx.out.push(Action::Send {
                    to: to.clone(),
                    msg: msg(*t),
                });
                true
            }
            None => false,
        }
    }

    /// Pass an answer on upstream under the upstream link's id.
    fn relay_up(&mut self, cx: &mut Ctx<'_, P>, id: HopId, msg: Message) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        hop.last_used = cx.now;
        let (to, t) = hop.up.clone();
        let msg = match msg {
            Message::TunnelData { index, block, .. } => Message::TunnelData {
                tunnel: t,
                index,
                block,
            },
            Message::TunnelResult { index, outcome, .. } => Message::TunnelResult {
                tunnel: t,
                index,
                outcome,
            },
            _ => return,
        };
        if self.neighbours.contains_key(&to) {
            cx.out.push(Action::Send { to, msg });
        }
    }

    /// As the exit, run one key or block through this router's search pool.
    fn exit_start(&mut self, cx: &mut Ctx<'_, P>, id: HopId, request: Request) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        let index = hop.next_index;
        hop.next_index = hop.next_index.saturating_add(1);
        let job = ExitJob { hop: id, index };
        if let Request::Get { key } = &request {
            if let Some(found) = cx.store.lookup(key) {
                return self.exit_answer(cx, job, ClientOutcome::Found(found));
            }
        }
        if let Some(refused) = self.refuse_put(cx, &request) {
            return self.exit_answer(cx, job, ClientOutcome::Failed(refused));
        }
        if self.searches.len() >= self.config.max_pending {
            return self.exit_answer(cx, job, ClientOutcome::Failed(Failure::Overloaded));
        }
        let uid = self.fresh_uid(cx);
        let budget = self.originate_budget(cx);
        // The token is never seen: the exit job takes the answer.
        let search = Search::new(uid, request, Origin::Client(0), budget);
        self.tunnels.exit_jobs.insert((uid, search.key()), job);
        self.start(cx, uid, search);
    }

    /// An exit search ended: send its answer back up the tunnel.
    pub(super) fn exit_answer(&mut self, cx: &mut Ctx<'_, P>, job: ExitJob, out: ClientOutcome) {
        let Some(hop) = self.tunnels.hops.get_mut(&job.hop) else {
            return;
        };
        hop.last_used = cx.now;
        let (to, t) = hop.up.clone();
        if self.neighbours.contains_key(&to) {
            let msg = outcome_on_wire(out, t, job.index);
            cx.out.push(Action::Send { to, msg });
        }
    }

    /// Forget a tunnel and tell the other side of this node about it.
    fn tear_down(&mut self, cx: &mut Ctx<'_, P>, id: HopId) {
        let Some(hop) = self.tunnels.remove(id) else {
            return;
        };
        for (to, tunnel) in [Some(hop.up), hop.down].into_iter().flatten() {
            if self.neighbours.contains_key(&to) {
                cx.out.push(Action::Send {
                    to,
                    msg: Message::TunnelDown { tunnel },
                });
            }
        }
    }

    /// A link went down: every tunnel through it is gone.
    pub(super) fn on_tunnel_link_down(&mut self, cx: &mut Ctx<'_, P>, peer: &P) {
        let broken: Vec<HopId> = self
            .tunnels
            .hops
            .iter()
            .filter(|(_, h)| &h.up.0 == peer || h.down.as_ref().is_some_and(|d| &d.0 == peer))
            .map(|(id, _)| *id)
            .collect();
        for id in broken {
            self.tear_down(cx, id);
        }
        self.client_link_down(cx, peer);
    }

    /// Forget idle tunnels, then run the client's timers.
    pub(super) fn on_tunnel_tick(&mut self, cx: &mut Ctx<'_, P>) {
        let idle_ms = self.config.tunnel.idle_ms;
        let idle: Vec<HopId> = self
            .tunnels
            .hops
            .iter()
            .filter(|(_, h)| h.last_used.saturating_add(idle_ms) <= cx.now)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.tear_down(cx, id);
        }
        self.client_tick(cx);
    }

    /// Tunnels this node relays or exits right now.
    pub fn tunnel_hops(&self) -> usize {
        self.tunnels.hop_count()
    }
}
