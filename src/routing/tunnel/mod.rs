//! Tunnels: the hop side (this file), the exit's fetching (`exit.rs`), the
//! originator (`client.rs`) and the cryptography of cells (`onion.rs`).
//! Sans-IO like the rest of the core: `now` and the random source come from
//! the caller through the router's `Ctx`.
//!
//! The originator builds a tunnel one hop at a time. It sends its first hop
//! a `TunnelBuild` carrying a key-agreement share, and every later hop is
//! added by a sealed `Extend` to the tunnel's last hop, which sends its own
//! `TunnelBuild` (the same message) to a random neighbour of its own and
//! passes the answer back sealed. Every hop shares keys with the originator
//! and with no one else; every cell is [`crate::message::SMALL_CELL`] or
//! [`crate::message::BIG_CELL`] bytes, layered so that only the hop it is
//! sealed for can read it. The originator makes its last hop the exit: it
//! is never the first, so no neighbour of the originator ever reads what the
//! originator fetches. The exit runs each key (each block) it opens through
//! this router's own search pool, at most `exit_window` at once, and streams
//! the answers back as they come. Every link of a tunnel has its own random
//! [`TunnelId`], chosen by the sender of the build on that link. Hops keep
//! nothing of what they relay. See `docs/protocol.md`, "Tunnels".

mod build;
mod client;
mod exit;
pub mod onion;
mod replies;

use std::collections::{BTreeMap, HashMap};

use rand::Rng;

use crate::message::{Cell, Ephemeral, Message, Sealed, TunnelId};
use crate::routing::TunnelConfig;
use crate::routing::{Action, Ctx, Flow, PeerId, Router, Time};

pub(crate) use client::ClientSide;
pub(crate) use exit::ExitJob;
use exit::ExitQueue;
use onion::HopCrypto;

/// A hop's handle in its own table.
type HopId = u64;

/// One tunnel this node relays (it has a downstream) or is the last hop of.
#[derive(Debug)]
struct Hop<P> {
    up: (P, TunnelId),
    down: Option<(P, TunnelId)>,
    crypto: HopCrypto,
    /// A build this hop sent downstream, not yet answered.
    extending: bool,
    /// The keys and blocks this hop fetches as the exit.
    exit: ExitQueue,
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

/// A fresh tunnel identifier: random, top bit set (fixed encoded size).
fn random_id<P: PeerId>(cx: &mut Ctx<'_, P>) -> TunnelId {
    cx.rng.next_u64() | (1 << 63)
}

impl<P: PeerId> Router<P> {
    /// A tunnel message from a neighbour.
    pub(super) fn on_tunnel_message(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        let tunnel = msg.uid();
        let up = self.tunnels.by_up.get(&(from.clone(), tunnel)).copied();
        let down = self.tunnels.by_down.get(&(from.clone(), tunnel)).copied();
        match msg {
            Message::TunnelBuild { tunnel, ephemeral } => {
                self.on_build(cx, from, tunnel, ephemeral)
            }
            Message::TunnelBuilt { ephemeral, .. } => match down {
                Some(id) => self.on_extended(cx, id, ephemeral),
                None => self.client_built(cx, &from, tunnel, ephemeral),
            },
            Message::TunnelForward { cell, .. } => match up {
                Some(id) => self.on_forward(cx, id, cell),
                // A cell for a tunnel this node does not know: it is gone.
                None => cx.out.push(Action::Send {
                    to: from,
                    msg: Message::TunnelDown { tunnel },
                }),
            },
            Message::TunnelBackward { cell, .. } => match down {
                Some(id) => self.relay_back(cx, id, cell),
                None => self.client_reply(cx, from, tunnel, cell),
            },
            Message::TunnelDown { tunnel } => match (up, down) {
                (_, Some(id)) if self.tunnels.hops.get(&id).is_some_and(|h| h.extending) => {
                    self.extension_failed(cx, id)
                }
                (Some(id), _) | (None, Some(id)) => self.tear_down(cx, id),
                (None, None) => self.client_lost(cx, &from, tunnel),
            },
            _ => {}
        }
    }

    /// Join a tunnel as its newest hop: agree keys and answer at once.
    fn on_build(&mut self, cx: &mut Ctx<'_, P>, from: P, tunnel: TunnelId, theirs: Ephemeral) {
        let key = (from.clone(), tunnel);
        let refused = self.tunnels.by_up.contains_key(&key)
            || self.tunnels.hops.len() >= self.config.tunnel.max_hops
            // A walk that came back to this node's own tunnel: refused, as
            // a full node refuses (the originator never carries its own keys).
            || self.tunnels.client.is_own_share(&theirs);
        let accepted = if refused {
            None
        } else {
            onion::accept(cx.rng, theirs).ok()
        };
        let Some((crypto, mine)) = accepted else {
            cx.out.push(Action::Send {
                to: from,
                msg: Message::TunnelDown { tunnel },
            });
            return;
        };
        cx.out.push(Action::Send {
            to: from,
            msg: Message::TunnelBuilt {
                tunnel,
                ephemeral: mine,
            },
        });
        let id = self.tunnels.next_hop;
        self.tunnels.next_hop += 1;
        self.tunnels.by_up.insert(key.clone(), id);
        let hop = Hop {
            up: key,
            down: None,
            crypto,
            extending: false,
            exit: ExitQueue::default(),
            last_used: cx.now,
        };
        self.tunnels.hops.insert(id, hop);
    }

    /// A cell from upstream: pass it on, or act on it if it is this hop's.
    fn on_forward(&mut self, cx: &mut Ctx<'_, P>, id: HopId, mut cell: Cell) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        hop.last_used = cx.now;
        let mine = hop.crypto.peel_forward(cell.as_mut_bytes());
        if !mine {
            match &hop.down {
                Some((to, t)) => cx.out.push(Action::Send {
                    to: to.clone(),
                    msg: Message::TunnelForward { tunnel: *t, cell },
                }),
                // Sealed for no hop: the tunnel is corrupt.
                None => self.tear_down(cx, id),
            }
            return;
        }
        match Sealed::from_cell_bytes(cell.as_bytes()) {
            Ok(Sealed::Extend { ephemeral }) => self.extend(cx, id, ephemeral),
            Ok(Sealed::Get { keys, more }) => self.exit_get(cx, id, keys, more),
            Ok(Sealed::Put { block, more }) => self.exit_put(cx, id, block, more),
            // A backward plaintext going forward, or one that does not
            // decode: the originator broke the protocol.
            Ok(_) | Err(_) => self.tear_down(cx, id),
        }
    }

    /// The originator asked this hop to add one: a build with its share to
    /// a random neighbour other than the one upstream.
    fn extend(&mut self, cx: &mut Ctx<'_, P>, id: HopId, ephemeral: Ephemeral) {
        let Some(hop) = self.tunnels.hops.get(&id) else {
            return;
        };
        if hop.down.is_some() {
            // Only the last hop extends.
            return self.tear_down(cx, id);
        }
        let upstream = hop.up.0.clone();
        let next = self.random_neighbour(cx, Some(&upstream));
        match next.filter(|n| *n != upstream) {
            Some(next) => {
                let t = self.fresh_tunnel_id(cx, &next);
                cx.out.push(Action::Send {
                    to: next.clone(),
                    msg: Message::TunnelBuild {
                        tunnel: t,
                        ephemeral,
                    },
                });
                self.tunnels.by_down.insert((next.clone(), t), id);
                if let Some(hop) = self.tunnels.hops.get_mut(&id) {
                    hop.down = Some((next, t));
                    hop.extending = true;
                }
            }
            None => self.send_back(cx, id, &Sealed::ExtendFailed),
        }
    }

    /// The next hop answered this hop's build: pass its share back sealed.
    fn on_extended(&mut self, cx: &mut Ctx<'_, P>, id: HopId, ephemeral: Ephemeral) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        if !hop.extending {
            return self.tear_down(cx, id);
        }
        hop.extending = false;
        self.send_back(cx, id, &Sealed::Extended { ephemeral });
    }

    /// The next hop refused this hop's build: the hop is the last again.
    fn extension_failed(&mut self, cx: &mut Ctx<'_, P>, id: HopId) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        if let Some(down) = hop.down.take() {
            self.tunnels.by_down.remove(&down);
        }
        if let Some(hop) = self.tunnels.hops.get_mut(&id) {
            hop.extending = false;
        }
        self.send_back(cx, id, &Sealed::ExtendFailed);
    }

    /// Seal this hop's own plaintext and send it upstream (or, at an exit
    /// in the middle of a send, hold it until the send's last cell).
    fn send_back(&mut self, cx: &mut Ctx<'_, P>, id: HopId, sealed: &Sealed) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        hop.last_used = cx.now;
        if hop.exit.holding {
            hop.exit.held.push(sealed.clone());
            if hop.exit.held.len() < exit::MAX_HELD {
                return;
            }
            // Memory before timing: past the bound, what is held goes now.
            hop.exit.holding = false;
            let held = std::mem::take(&mut hop.exit.held);
            for sealed in held {
                self.send_back(cx, id, &sealed);
            }
            return;
        }
        let Ok(mut bytes) = sealed.to_cell_bytes() else {
            return;
        };
        if hop.crypto.seal_backward(&mut bytes).is_err() {
            return;
        }
        let Ok(cell) = Cell::from_bytes(bytes) else {
            return;
        };
        let (to, tunnel) = hop.up.clone();
        if self.neighbours.contains_key(&to) {
            cx.out.push(Action::Send {
                to,
                msg: Message::TunnelBackward { tunnel, cell },
            });
        }
    }

    /// A cell from downstream: add this hop's layer and pass it upstream.
    fn relay_back(&mut self, cx: &mut Ctx<'_, P>, id: HopId, mut cell: Cell) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        hop.last_used = cx.now;
        hop.crypto.wrap_backward(cell.as_mut_bytes());
        let (to, tunnel) = hop.up.clone();
        if self.neighbours.contains_key(&to) {
            cx.out.push(Action::Send {
                to,
                msg: Message::TunnelBackward { tunnel, cell },
            });
        }
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
            .filter(|(_, h)| h.exit.is_idle() && h.last_used.saturating_add(idle_ms) <= cx.now)
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

    /// Does the local client's traffic go through tunnels?
    pub fn client_tunnels(&self) -> bool {
        self.tunnels.client_mode
    }

    /// Let exits insert the simulator's short stand-in blocks.
    pub(crate) fn allow_stand_in_blocks(&mut self) {
        self.stand_in_blocks = true;
    }
}
