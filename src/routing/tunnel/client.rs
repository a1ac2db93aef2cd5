//! The originator's side of tunnels: client sessions, building its tunnel
//! hop by hop, the send timer, and rebuilding a broken tunnel.
//!
//! **Reactions wait.** Whatever the originator sends within `reaction_ms`
//! of its tunnel's last answer may be a reaction to that answer (the next
//! hop of a build, a file's next manifest level, a page's images, the next
//! blocks of a window): a relay that saw the answer go by and the next cell
//! come back could time it, and the time is shorter the closer the relay is
//! to the originator. Such work waits a delay drawn uniformly from
//! `[delay_min_ms, delay_max_ms]`, and everything that piles up meanwhile
//! leaves together when it ends. Work after a quiet spell reacts to nothing
//! the tunnel carried: it leaves within a random fraction of `tick_ms`. The
//! client asks for a whole window of keys at once (`veil get`'s
//! `--concurrency`, 512 by default), so a file of up to that many blocks
//! pays the delay once per manifest level, never once per block.
//!
//! **Sending.** When the timer fires it sends the next extension, or every
//! waiting key, [`CELL_KEYS`] to a small cell, up to `window` keys
//! unanswered (the exit fetches them with its own window and streams the
//! answers back), and blocks one to a big cell, up to `put_window`
//! unanswered. Each key or block is remembered under the
//! number the exit gives it (it counts what it opens, in order). When the
//! tunnel breaks (link down, `TunnelDown`, a cell that does not open, or
//! silence past `progress_timeout_ms`) every unanswered item waits again and
//! a new tunnel is built; the originator never routes a key itself.

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;

use super::onion::{self, Handshake, HopCrypto};
use crate::message::{Cell, Ephemeral, Message, Sealed, TunnelId, CELL_KEYS};
use crate::routing::{
    Action, ClientOutcome, ClientToken, Ctx, Failure, Op, PeerId, Router, SessionRequest, Time,
    TunnelConfig,
};

/// The tunnel this node's client uses now.
#[derive(Debug)]
pub(super) struct OwnTunnel<P> {
    pub(super) first: P,
    pub(super) tunnel: TunnelId,
    /// Keys shared with each hop, the first hop first; the last is the exit.
    pub(super) path: Vec<HopCrypto>,
    /// The key agreement with the hop being added, until it answers.
    pub(super) adding: Option<Handshake>,
    /// The last hop answered; the next extension leaves on the next tick.
    pub(super) extend_due: bool,
    pub(super) extend_failures: u32,
    /// Hops this tunnel is to have.
    pub(super) length: usize,
    pub(super) built_at: Time,
    /// The round trip of the build to the first hop.
    pub(super) first_rtt: Time,
    pub(super) last_heard: Time,
    pub(super) next_index: u32,
    /// Exit index -> (session, item).
    pub(super) pending: BTreeMap<u32, (ClientToken, usize)>,
    /// Blocks sent and not yet answered.
    pub(super) puts_out: usize,
}

impl<P> OwnTunnel<P> {
    pub(super) fn ready(&self) -> bool {
        self.adding.is_none() && !self.extend_due && self.path.len() >= self.length
    }
}

/// Round trips a reaction adds at most (see [`TunnelConfig::p_virtual_hop`]).
const MAX_VIRTUAL_HOPS: u64 = 8;

/// One client session.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) request: SessionRequest,
    pub(super) outcomes: Vec<Option<ClientOutcome>>,
    pub(super) unsent: VecDeque<usize>,
    pub(super) rebuilds: u32,
    /// Answer with `ClientDone` (a `ClientGet`/`ClientPut` in tunnel mode).
    pub(super) single: bool,
}

/// Everything the originator keeps.
#[derive(Debug)]
pub(crate) struct ClientSide<P> {
    pub(super) current: Option<OwnTunnel<P>>,
    pub(super) sessions: BTreeMap<ClientToken, Session>,
    /// When the waiting work goes out.
    send_at: Option<Time>,
    /// When a cell last came back on the client's tunnel.
    pub(super) last_back: Option<Time>,
    /// First hops that could not extend a tunnel, and when.
    pub(super) dead_ends: BTreeMap<P, Time>,
    /// The guards, primary first, and until when each is kept (chosen +
    /// `guard_ms`): every new tunnel starts at the first of them that is
    /// up and not a dead end.
    pub(super) guards: Vec<(P, Time)>,
}

impl<P> Default for ClientSide<P> {
    fn default() -> Self {
        ClientSide {
            current: None,
            sessions: BTreeMap::new(),
            send_at: None,
            last_back: None,
            dead_ends: BTreeMap::new(),
            guards: Vec::new(),
        }
    }
}

impl<P: PeerId> ClientSide<P> {
    pub fn next_deadline(&self, config: &TunnelConfig) -> Option<Time> {
        let progress = self
            .current
            .as_ref()
            .filter(|t| !t.pending.is_empty() || t.adding.is_some())
            .map(|t| t.last_heard.saturating_add(config.progress_timeout_ms));
        progress.into_iter().chain(self.send_at).min()
    }

    /// Is `(peer, tunnel)` the client's tunnel?
    pub fn uses(&self, peer: &P, tunnel: TunnelId) -> bool {
        self.current
            .as_ref()
            .is_some_and(|t| &t.first == peer && t.tunnel == tunnel)
    }

    /// Is this the share this node just sent for its own tunnel's next hop
    /// (a walk that came back here)?
    pub fn is_own_share(&self, share: &Ephemeral) -> bool {
        self.current
            .as_ref()
            .and_then(|t| t.adding.as_ref())
            .is_some_and(|hs| hs.public() == *share)
    }

    pub(super) fn matches(&mut self, peer: &P, tunnel: TunnelId) -> Option<&mut OwnTunnel<P>> {
        self.current
            .as_mut()
            .filter(|t| &t.first == peer && t.tunnel == tunnel)
    }

    fn has_unsent(&self) -> bool {
        self.sessions.values().any(|s| !s.unsent.is_empty())
    }

    /// Is there anything to send now: a build, an extension, or items on
    /// a tunnel that is ready? (Nothing, while a hop is being added.)
    fn has_work(&self) -> bool {
        match &self.current {
            None => self.has_unsent(),
            Some(t) => t.extend_due || (t.ready() && self.has_unsent()),
        }
    }
}

impl<P: PeerId> Router<P> {
    /// The local client starts a session (always through a tunnel).
    pub(in crate::routing) fn on_session(
        &mut self,
        cx: &mut Ctx<'_, P>,
        token: ClientToken,
        request: SessionRequest,
        single: bool,
    ) {
        let config = &self.config.tunnel;
        let n = request.len();
        let mut outcomes: Vec<Option<ClientOutcome>> = vec![None; n];
        let refuse = n > config.max_session_items
            || self.tunnels.client.sessions.len() >= config.max_sessions
            || self.tunnels.client.sessions.contains_key(&token);
        if refuse || self.neighbours.is_empty() {
            let failure = if refuse {
                Failure::Overloaded
            } else {
                Failure::NoPeers
            };
            outcomes.fill(Some(ClientOutcome::Failed(failure)));
        } else if let SessionRequest::Get(keys) = &request {
            // The client cache answers without traffic. The store and cache
            // the node keeps for its neighbours do not: if they did, the
            // originator would never ask for a key it holds, while a relay
            // often holds what it relays (from other traffic), and a probe of
            // what the sender holds would tell the two apart.
            for (slot, key) in outcomes.iter_mut().zip(keys) {
                *slot = cx.store.client_lookup(key).map(ClientOutcome::Found);
            }
        }
        let unsent = (0..n).filter(|i| outcomes[*i].is_none()).collect();
        let session = Session {
            request,
            outcomes,
            unsent,
            rebuilds: 0,
            single,
        };
        self.tunnels.client.sessions.insert(token, session);
        self.answer_if_done(cx, token);
        self.wake(cx);
    }

    /// Arm the send timer if there is work and it is not armed (a reaction
    /// waits the random delay). A build, too, waits for the timer: a
    /// rebuild right after a tunnel broke is a reaction.
    pub(super) fn wake(&mut self, cx: &mut Ctx<'_, P>) {
        let config = &self.config.tunnel;
        let client = &mut self.tunnels.client;
        if client.send_at.is_some() || !client.has_work() {
            return;
        }
        let reaction = client
            .last_back
            .is_some_and(|t| t.saturating_add(config.reaction_ms) > cx.now);
        let (lo, hi) = if reaction {
            (config.delay_min_ms, config.delay_max_ms)
        } else {
            (0, config.tick_ms)
        };
        let mut delay = if hi > lo {
            cx.rng.gen_range(lo..=hi)
        } else {
            lo
        };
        if reaction {
            // Virtual hops: a relay k hops from the originator sees its
            // reactions k - 1 round trips later than the first hop does.
            // The originator adds a geometric number of its own first hop's
            // round trips, so the first hop cannot tell "no hop before" from
            // "some hops before" by how late a reaction comes.
            let rtt = client.current.as_ref().map_or(0, |t| t.first_rtt);
            let p = config.p_virtual_hop.clamp(0.0, 0.95);
            let mut hops = 0;
            while hops < MAX_VIRTUAL_HOPS && cx.rng.gen::<f64>() < p {
                hops += 1;
                // Real round trips differ from link to link.
                let one = (rtt as f64 * cx.rng.gen_range(0.5..1.5)) as Time;
                delay = delay.saturating_add(one);
            }
        }
        client.send_at = Some(cx.now.saturating_add(delay));
    }

    /// The client's timers: a silent tunnel breaks; due work goes out.
    pub(super) fn client_tick(&mut self, cx: &mut Ctx<'_, P>) {
        let timeout = self.config.tunnel.progress_timeout_ms;
        let stalled = self.tunnels.client.current.as_ref().is_some_and(|t| {
            (!t.pending.is_empty() || t.adding.is_some())
                && t.last_heard.saturating_add(timeout) <= cx.now
        });
        if stalled {
            self.break_tunnel(cx, true);
        }
        if self.tunnels.client.send_at.is_none_or(|t| t > cx.now) {
            return;
        }
        self.tunnels.client.send_at = None;
        // Work left after something went (the windows were full): it goes
        // when the timer is next armed. When nothing could go, an answer
        // arms it.
        if self.tick_send(cx) {
            self.wake(cx);
        }
    }

    /// The due extension, or every key and block the windows allow.
    fn tick_send(&mut self, cx: &mut Ctx<'_, P>) -> bool {
        let reuse = self.config.tunnel.reuse_ms;
        let expired = self.tunnels.client.current.as_ref().is_some_and(|t| {
            // A tunnel that has carried nothing yet has not been reused.
            t.ready()
                && t.pending.is_empty()
                && t.next_index > 0
                && t.built_at.saturating_add(reuse) <= cx.now
        });
        if expired {
            self.break_tunnel(cx, true);
        }
        if self.tunnels.client.current.is_none() {
            if self.tunnels.client.has_unsent() {
                self.build_tunnel(cx);
                return true;
            }
            return false;
        }
        let extend = self
            .tunnels
            .client
            .current
            .as_ref()
            .is_some_and(|t| t.extend_due);
        if extend {
            self.send_extend(cx);
            return true;
        }
        let ready = self
            .tunnels
            .client
            .current
            .as_ref()
            .is_some_and(|t| t.ready());
        ready && self.send_items(cx)
    }

    /// Every key and block the windows allow, sealed for the exit; false
    /// when they allow none.
    fn send_items(&mut self, cx: &mut Ctx<'_, P>) -> bool {
        let window = self.config.tunnel.window;
        let put_window = self.config.tunnel.put_window.max(1);
        let client = &mut self.tunnels.client;
        let Some(tunnel) = client.current.as_mut() else {
            return false;
        };
        let exit = tunnel.path.len().saturating_sub(1);
        let mut get_room =
            window.saturating_sub(tunnel.pending.len().saturating_sub(tunnel.puts_out));
        let mut put_room = put_window.saturating_sub(tunnel.puts_out);
        let mut cells: Vec<(Sealed, Op)> = Vec::new();
        let mut keys = Vec::new();
        for (token, session) in client.sessions.iter_mut() {
            while let Some(&i) = session.unsent.front() {
                match &session.request {
                    SessionRequest::Get(ks) if get_room > 0 => {
                        keys.push(ks[i]);
                        get_room -= 1;
                    }
                    SessionRequest::Put(blocks) if put_room > 0 => {
                        // The exit numbers items in the order it opens
                        // them: keys taken before this block go first.
                        if !keys.is_empty() {
                            let keys = std::mem::take(&mut keys);
                            cells.push((Sealed::Get { keys, more: true }, Op::Get));
                        }
                        cells.push((
                            Sealed::Put {
                                block: blocks[i].clone(),
                                more: true,
                            },
                            Op::Put,
                        ));
                        tunnel.puts_out += 1;
                        put_room -= 1;
                    }
                    _ => break,
                }
                session.unsent.pop_front();
                tunnel.pending.insert(tunnel.next_index, (*token, i));
                tunnel.next_index = tunnel.next_index.saturating_add(1);
                if keys.len() == CELL_KEYS {
                    cells.push((
                        Sealed::Get {
                            keys: std::mem::take(&mut keys),
                            more: true,
                        },
                        Op::Get,
                    ));
                }
            }
        }
        if !keys.is_empty() {
            cells.push((Sealed::Get { keys, more: true }, Op::Get));
        }
        // The last cell of the send says so: the exit answers after it.
        if let Some((Sealed::Get { more, .. } | Sealed::Put { more, .. }, _)) = cells.last_mut() {
            *more = false;
        }
        let sent = !cells.is_empty();
        for (sealed, op) in cells {
            self.send_sealed(cx, exit, &sealed, op);
        }
        sent
    }

    /// Seal `sealed` for hop `target` of the client's tunnel and send it.
    pub(super) fn send_sealed(
        &mut self,
        cx: &mut Ctx<'_, P>,
        target: usize,
        sealed: &Sealed,
        op: Op,
    ) {
        let Some(t) = self.tunnels.client.current.as_mut() else {
            return;
        };
        let Ok(mut bytes) = sealed.to_cell_bytes() else {
            return;
        };
        if onion::seal_forward(&mut t.path, target, &mut bytes).is_err() {
            return;
        }
        let Ok(cell) = Cell::from_bytes(bytes) else {
            return;
        };
        let msg = Message::TunnelForward {
            tunnel: t.tunnel,
            cell,
        };
        let first = t.first.clone();
        send_own(cx, &first, msg, op);
    }

    /// The operation of the first session with items waiting.
    pub(super) fn waiting_op(&self) -> Op {
        match self
            .tunnels
            .client
            .sessions
            .values()
            .find(|s| !s.unsent.is_empty())
        {
            Some(s) if matches!(s.request, SessionRequest::Put(_)) => Op::Put,
            _ => Op::Get,
        }
    }

    /// Drop the current tunnel; its outstanding items wait again (or fail,
    /// for a session past its rebuild budget).
    pub(super) fn break_tunnel(&mut self, cx: &mut Ctx<'_, P>, notify: bool) {
        let Some(old) = self.tunnels.client.current.take() else {
            return;
        };
        if notify && self.neighbours.contains_key(&old.first) {
            cx.out.push(Action::Send {
                to: old.first.clone(),
                msg: Message::TunnelDown { tunnel: old.tunnel },
            });
        }
        let max_rebuilds = self.config.tunnel.max_rebuilds;
        let was_ready = old.ready();
        let mut hit: BTreeMap<ClientToken, Vec<usize>> = BTreeMap::new();
        for (token, i) in old.pending.into_values() {
            hit.entry(token).or_default().push(i);
        }
        // A tunnel that never got ready counts against every waiting session.
        if !was_ready {
            for (token, s) in &self.tunnels.client.sessions {
                if !s.unsent.is_empty() {
                    hit.entry(*token).or_default();
                }
            }
        }
        for (token, items) in hit {
            let Some(session) = self.tunnels.client.sessions.get_mut(&token) else {
                continue;
            };
            for i in items.into_iter().rev() {
                session.unsent.push_front(i);
            }
            session.rebuilds += 1;
            if session.rebuilds > max_rebuilds {
                self.fail_unanswered(cx, token, Failure::Timeout);
            }
        }
        // A break is news the first hop saw pass (a `TunnelDown`, a link
        // down, silence): the rebuild, and anything the client asks soon
        // after, is a reaction to it and waits like one. Without this the
        // first hop saw its `TunnelDown` answered by a build within a few
        // milliseconds only from an originator (the audit's `gap` signal).
        self.tunnels.client.last_back = Some(cx.now);
        self.wake(cx);
    }

    /// Fail every item of a session not answered yet, and answer it.
    pub(super) fn fail_unanswered(
        &mut self,
        cx: &mut Ctx<'_, P>,
        token: ClientToken,
        failure: Failure,
    ) {
        let mut puts = 0;
        if let Some(session) = self.tunnels.client.sessions.get_mut(&token) {
            session.unsent.clear();
            for slot in session.outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = Some(ClientOutcome::Failed(failure));
            }
            puts = usize::from(matches!(session.request, SessionRequest::Put(_)));
        }
        if let Some(t) = self.tunnels.client.current.as_mut() {
            let before = t.pending.len();
            t.pending.retain(|_, (tok, _)| *tok != token);
            t.puts_out = t.puts_out.saturating_sub(puts * (before - t.pending.len()));
        }
        self.answer_if_done(cx, token);
    }

    /// Answer a session whose every item has an outcome.
    pub(super) fn answer_if_done(&mut self, cx: &mut Ctx<'_, P>, token: ClientToken) {
        let client = &mut self.tunnels.client;
        let done = client
            .sessions
            .get(&token)
            .is_some_and(|s| s.outcomes.iter().all(Option::is_some));
        if !done {
            return;
        }
        let Some(session) = client.sessions.remove(&token) else {
            return;
        };
        let mut outcomes: Vec<ClientOutcome> = session.outcomes.into_iter().flatten().collect();
        if session.single && outcomes.len() == 1 {
            if let Some(outcome) = outcomes.pop() {
                cx.out.push(Action::ClientDone { token, outcome });
            }
        } else {
            cx.out.push(Action::SessionDone { token, outcomes });
        }
    }

    /// A `TunnelDown` for no hop of this node: the client's tunnel, if any.
    pub(super) fn client_lost(&mut self, cx: &mut Ctx<'_, P>, from: &P, tunnel: TunnelId) {
        if self.tunnels.client.uses(from, tunnel) {
            self.break_tunnel(cx, false);
        }
    }

    pub(super) fn client_link_down(&mut self, cx: &mut Ctx<'_, P>, peer: &P) {
        let first = self
            .tunnels
            .client
            .current
            .as_ref()
            .map(|t| t.first.clone());
        if first.as_ref() == Some(peer) {
            self.break_tunnel(cx, false);
        }
    }
}

/// Send a message of the local client's own tunnel (a build or a cell),
/// announced first for the driver's ground truth ([`Action::FlowOriginated`]).
pub(super) fn send_own<P: PeerId>(cx: &mut Ctx<'_, P>, to: &P, msg: Message, op: Op) {
    cx.out.push(Action::FlowOriginated {
        flow: msg.uid(),
        op,
    });
    cx.out.push(Action::Send {
        to: to.clone(),
        msg,
    });
}
