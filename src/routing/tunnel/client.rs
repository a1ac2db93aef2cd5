//! The originator's side of tunnels: client sessions, the batch timer, the
//! client cache, and rebuilding a broken tunnel.
//!
//! A session's keys (or blocks) wait in `unsent` until the batch timer fires
//! (a random delay after the previous batch); a batch takes up to
//! [`BATCH_KEYS`] items of one kind, at most `window` outstanding. Each item
//! sent is remembered under the index the exit will give it (the exit counts
//! what it receives on a tunnel, in order). When the tunnel breaks (link
//! down, `TunnelDown`, or silence past `progress_timeout_ms`) every
//! outstanding item goes back to `unsent` and the next batch builds a new
//! tunnel; the originator never routes a key itself.

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;

use crate::message::{Message, TunnelId, TunnelOutcome, BATCH_KEYS, PAD_KEY};
use crate::routing::{
    Action, ClientOutcome, ClientToken, Ctx, Failure, Misbehaviour, Op, PeerId, Router,
    SessionRequest, Time, TunnelConfig,
};

/// The tunnel this node's client uses now.
#[derive(Clone, Debug)]
struct OwnTunnel<P> {
    first: P,
    tunnel: TunnelId,
    built_at: Time,
    last_heard: Time,
    next_index: u32,
    /// Exit index -> (session, item).
    pending: BTreeMap<u32, (ClientToken, usize)>,
    /// The first hop answered the build. No batch goes before: the first
    /// batch then leaves a random delay after that answer, as every later
    /// one leaves a random delay after the previous batch. Sent on the
    /// heels of the build, it reached the first hop a few hundred
    /// microseconds after its `TunnelBuilt`, sooner than a relay's copy did.
    built: bool,
}

/// One client session.
#[derive(Clone, Debug)]
struct Session {
    request: SessionRequest,
    outcomes: Vec<Option<ClientOutcome>>,
    unsent: VecDeque<usize>,
    rebuilds: u32,
    /// Answer with `ClientDone` (a `ClientGet`/`ClientPut` in tunnel mode).
    single: bool,
}

/// Everything the originator keeps.
#[derive(Clone, Debug)]
pub(crate) struct ClientSide<P> {
    current: Option<OwnTunnel<P>>,
    sessions: BTreeMap<ClientToken, Session>,
    next_batch_at: Option<Time>,
}

impl<P> Default for ClientSide<P> {
    fn default() -> Self {
        ClientSide {
            current: None,
            sessions: BTreeMap::new(),
            next_batch_at: None,
        }
    }
}

impl<P: PeerId> ClientSide<P> {
    pub fn next_deadline(&self, config: &TunnelConfig) -> Option<Time> {
        let progress = self
            .current
            .as_ref()
            .filter(|t| !t.pending.is_empty() || !t.built)
            .map(|t| t.last_heard.saturating_add(config.progress_timeout_ms));
        progress.into_iter().chain(self.next_batch_at).min()
    }

    /// Is `(peer, tunnel)` the client's tunnel?
    pub fn uses(&self, peer: &P, tunnel: TunnelId) -> bool {
        self.current
            .as_ref()
            .is_some_and(|t| &t.first == peer && t.tunnel == tunnel)
    }

    fn matches(&mut self, peer: &P, tunnel: TunnelId) -> Option<&mut OwnTunnel<P>> {
        self.current
            .as_mut()
            .filter(|t| &t.first == peer && t.tunnel == tunnel)
    }

    fn has_unsent(&self) -> bool {
        self.sessions.values().any(|s| !s.unsent.is_empty())
    }
}

fn failure_of(outcome: TunnelOutcome) -> ClientOutcome {
    ClientOutcome::Failed(match outcome {
        TunnelOutcome::Inserted => return ClientOutcome::Inserted,
        TunnelOutcome::DataNotFound => Failure::DataNotFound,
        TunnelOutcome::RouteNotFound => Failure::RouteNotFound,
        TunnelOutcome::Timeout => Failure::Timeout,
        TunnelOutcome::Overloaded => Failure::Overloaded,
        TunnelOutcome::NoPeers => Failure::NoPeers,
        TunnelOutcome::Collision => Failure::Collision,
        TunnelOutcome::BadBlock => Failure::BadBlock,
        TunnelOutcome::NotStored => Failure::NotStored,
    })
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
        self.schedule_batch(cx);
    }

    /// Arm the batch timer if items wait and the window has room.
    fn schedule_batch(&mut self, cx: &mut Ctx<'_, P>) {
        let config = &self.config.tunnel;
        let client = &mut self.tunnels.client;
        let outstanding = client.current.as_ref().map_or(0, |t| t.pending.len());
        let awaiting_built = client.current.as_ref().is_some_and(|t| !t.built);
        if client.next_batch_at.is_some()
            || !client.has_unsent()
            || outstanding >= config.window
            || awaiting_built
        {
            return;
        }
        let (lo, hi) = (config.batch_delay_min_ms, config.batch_delay_max_ms);
        let delay = if hi > lo {
            cx.rng.gen_range(lo..=hi)
        } else {
            lo
        };
        client.next_batch_at = Some(cx.now.saturating_add(delay));
    }

    /// The client's timers: a silent tunnel breaks; a due batch goes out.
    pub(super) fn client_tick(&mut self, cx: &mut Ctx<'_, P>) {
        let timeout = self.config.tunnel.progress_timeout_ms;
        let stalled = self.tunnels.client.current.as_ref().is_some_and(|t| {
            (!t.pending.is_empty() || !t.built) && t.last_heard.saturating_add(timeout) <= cx.now
        });
        if stalled {
            self.break_tunnel(cx, true);
        }
        if self
            .tunnels
            .client
            .next_batch_at
            .is_some_and(|t| t <= cx.now)
        {
            self.tunnels.client.next_batch_at = None;
            self.send_batch(cx);
            self.schedule_batch(cx);
        }
    }

    /// Build a tunnel if there is none usable, then send one batch into it.
    fn send_batch(&mut self, cx: &mut Ctx<'_, P>) {
        let reuse = self.config.tunnel.reuse_ms;
        let window = self.config.tunnel.window;
        let expired = self.tunnels.client.current.as_ref().is_some_and(|t| {
            // A tunnel that has carried nothing yet has not been reused.
            t.pending.is_empty() && t.next_index > 0 && t.built_at.saturating_add(reuse) <= cx.now
        });
        if expired {
            self.break_tunnel(cx, true);
        }
        if self.tunnels.client.current.is_none() {
            // The batch waits for the build's answer (see `OwnTunnel::built`).
            self.build_tunnel(cx);
            return;
        }
        let client = &mut self.tunnels.client;
        let Some(tunnel) = client.current.as_mut() else {
            return;
        };
        let room = window.saturating_sub(tunnel.pending.len()).min(BATCH_KEYS);
        // Items of one kind (that of the first session with any waiting).
        let mut taken: Vec<(ClientToken, usize)> = Vec::new();
        let mut is_get = None;
        for (token, session) in client.sessions.iter_mut() {
            let get = matches!(session.request, SessionRequest::Get(_));
            if session.unsent.is_empty() || *is_get.get_or_insert(get) != get {
                continue;
            }
            while taken.len() < room {
                let Some(i) = session.unsent.pop_front() else {
                    break;
                };
                taken.push((*token, i));
            }
        }
        let mut keys = [PAD_KEY; BATCH_KEYS];
        for (slot, (token, i)) in taken.iter().enumerate() {
            tunnel.pending.insert(tunnel.next_index, (*token, *i));
            tunnel.next_index = tunnel.next_index.saturating_add(1);
            match client.sessions.get(token).map(|s| &s.request) {
                Some(SessionRequest::Get(ks)) => keys[slot] = ks[*i],
                Some(SessionRequest::Put(blocks)) => {
                    let msg = Message::TunnelPut {
                        tunnel: tunnel.tunnel,
                        block: blocks[*i].clone(),
                    };
                    send_own(cx, &tunnel.first, msg, Op::Put);
                }
                None => {}
            }
        }
        if is_get == Some(true) && !taken.is_empty() {
            let msg = Message::TunnelGet {
                tunnel: tunnel.tunnel,
                keys: Box::new(keys),
            };
            send_own(cx, &tunnel.first, msg, Op::Get);
        }
    }

    /// Start a new walk from a random neighbour; when there is none, every
    /// waiting item fails.
    fn build_tunnel(&mut self, cx: &mut Ctx<'_, P>) {
        let Some(first) = self.random_neighbour(cx, None) else {
            let tokens: Vec<ClientToken> = self.tunnels.client.sessions.keys().copied().collect();
            for token in tokens {
                self.fail_unanswered(cx, token, Failure::NoPeers);
            }
            return;
        };
        let tunnel = self.fresh_tunnel_id(cx, &first);
        // The build carries no operation: it is labelled with that of the
        // first batch it will carry.
        let op = match self
            .tunnels
            .client
            .sessions
            .values()
            .find(|s| !s.unsent.is_empty())
        {
            Some(s) if matches!(s.request, SessionRequest::Put(_)) => Op::Put,
            _ => Op::Get,
        };
        send_own(cx, &first, Message::TunnelBuild { tunnel }, op);
        self.tunnels.client.current = Some(OwnTunnel {
            first,
            tunnel,
            built_at: cx.now,
            last_heard: cx.now,
            next_index: 0,
            pending: BTreeMap::new(),
            built: false,
        });
    }

    /// Drop the current tunnel; its outstanding items wait again (or fail,
    /// for a session past its rebuild budget).
    fn break_tunnel(&mut self, cx: &mut Ctx<'_, P>, notify: bool) {
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
        let mut hit: BTreeMap<ClientToken, Vec<usize>> = BTreeMap::new();
        for (token, i) in old.pending.into_values() {
            hit.entry(token).or_default().push(i);
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
        self.schedule_batch(cx);
    }

    /// Fail every item of a session not answered yet, and answer it.
    fn fail_unanswered(&mut self, cx: &mut Ctx<'_, P>, token: ClientToken, failure: Failure) {
        if let Some(session) = self.tunnels.client.sessions.get_mut(&token) {
            session.unsent.clear();
            for slot in session.outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = Some(ClientOutcome::Failed(failure));
            }
        }
        if let Some(t) = self.tunnels.client.current.as_mut() {
            t.pending.retain(|_, (tok, _)| *tok != token);
        }
        self.answer_if_done(cx, token);
    }

    /// Answer a session whose every item has an outcome.
    fn answer_if_done(&mut self, cx: &mut Ctx<'_, P>, token: ClientToken) {
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

    /// A `TunnelBuilt` reached this node.
    pub(super) fn client_heard(&mut self, cx: &mut Ctx<'_, P>, from: &P, tunnel: TunnelId) {
        if let Some(t) = self.tunnels.client.matches(from, tunnel) {
            t.last_heard = cx.now;
            if !t.built {
                t.built = true;
                self.schedule_batch(cx);
            }
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

    /// A `TunnelData` or `TunnelResult` on the client's tunnel.
    pub(super) fn client_reply(&mut self, cx: &mut Ctx<'_, P>, from: P, msg: Message) {
        let (tunnel, index) = match &msg {
            Message::TunnelData { tunnel, index, .. }
            | Message::TunnelResult { tunnel, index, .. } => (*tunnel, *index),
            _ => return,
        };
        let now = cx.now;
        let Some(t) = self.tunnels.client.matches(&from, tunnel) else {
            return;
        };
        t.last_heard = now;
        let Some((token, i)) = t.pending.remove(&index) else {
            return;
        };
        let Some(session) = self.tunnels.client.sessions.get_mut(&token) else {
            return;
        };
        let outcome = match (msg, &session.request) {
            (Message::TunnelData { block, .. }, SessionRequest::Get(keys))
                if keys.get(i).is_some_and(|k| block.verify(k).is_ok()) =>
            {
                cx.out.push(Action::ClientCacheBlock {
                    block: block.clone(),
                });
                ClientOutcome::Found(block)
            }
            (Message::TunnelResult { outcome, .. }, request)
                if (outcome == TunnelOutcome::Inserted)
                    == matches!(request, SessionRequest::Put(_)) =>
            {
                failure_of(outcome)
            }
            (Message::TunnelResult { outcome, .. }, SessionRequest::Put(_)) => failure_of(outcome),
            _ => {
                // A wrong block or a reply that does not fit: the tunnel
                // cannot be trusted; the item waits for the next one.
                session.unsent.push_front(i);
                cx.out.push(Action::Misbehaved {
                    peer: from,
                    reason: Misbehaviour::BadTunnel,
                });
                self.break_tunnel(cx, true);
                return;
            }
        };
        if let Some(slot) = session.outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
        self.answer_if_done(cx, token);
        self.schedule_batch(cx);
    }
}

/// Send a message of the local client's own tunnel (a build or a batch),
/// announced first for the driver's ground truth ([`Action::FlowOriginated`]).
fn send_own<P: PeerId>(cx: &mut Ctx<'_, P>, to: &P, msg: Message, op: Op) {
    cx.out.push(Action::FlowOriginated {
        flow: msg.uid(),
        op,
    });
    cx.out.push(Action::Send {
        to: to.clone(),
        msg,
    });
}
