//! Building the originator's tunnel, one hop at a time: a `TunnelBuild`
//! to a random neighbour with the first hop's key-agreement share, then a
//! sealed `Extend` to the tunnel's last hop for every further hop, each
//! after the timer (`client.rs`) lets it go. A tunnel gets `min_walk` hops,
//! then one more with probability `p_extend` each time, up to `max_walk`.

use std::collections::BTreeMap;

use rand::Rng;

use super::client::{send_own, OwnTunnel};
use super::onion::Handshake;
use crate::message::{Ephemeral, Message, Sealed, TunnelId};
use crate::routing::{ClientToken, Ctx, Failure, PeerId, Router, Time, TunnelConfig};

/// Extensions a tunnel's last hop may fail before the originator settles
/// for the hops it has (or rebuilds, below `min_walk`).
const MAX_EXTEND_FAILURES: u32 = 3;

/// Guards an originator keeps at once: a primary, and a backup for when
/// the primary is down.
const GUARDS: usize = 2;

/// How long a first hop that could not extend is passed over.
const DEAD_END_MS: Time = 60_000;

/// How many hops a new tunnel gets: `min_walk`, then one more with
/// probability `p_extend` each time, at most `max_walk`.
fn walk_length<P: PeerId>(cx: &mut Ctx<'_, P>, config: &TunnelConfig) -> usize {
    let min = config.min_walk.max(1);
    let max = config.max_walk.max(min);
    let p = if config.p_extend.is_nan() {
        0.0
    } else {
        config.p_extend.clamp(0.0, 0.99)
    };
    let mut length = min;
    while length < max && cx.rng.gen::<f64>() < p {
        length += 1;
    }
    length
}

impl<P: PeerId> Router<P> {
    /// Ask the tunnel's last hop to add one.
    pub(super) fn send_extend(&mut self, cx: &mut Ctx<'_, P>) {
        let op = self.waiting_op();
        let hs = Handshake::start(cx.rng);
        let sealed = Sealed::Extend {
            ephemeral: hs.public(),
        };
        let Some(t) = self.tunnels.client.current.as_mut() else {
            return;
        };
        t.extend_due = false;
        t.adding = Some(hs);
        t.last_heard = cx.now;
        let last = t.path.len().saturating_sub(1);
        self.send_sealed(cx, last, &sealed, op);
    }

    /// The first hop of a new tunnel, among the `open` neighbours: the
    /// first guard that is open (guards are kept for `guard_ms` whether or
    /// not they are up, so that an adversary who cuts a guard off gains at
    /// most one more); with none open, a new guard while there are fewer
    /// than [`GUARDS`], else a neighbour drawn for this tunnel alone. With
    /// `guard_ms` 0, every tunnel draws its first hop at random.
    fn first_hop(&mut self, cx: &mut Ctx<'_, P>, open: &[P]) -> P {
        let guard_ms = self.config.tunnel.guard_ms;
        let now = cx.now;
        let client = &mut self.tunnels.client;
        client.guards.retain(|(_, until)| *until > now);
        if let Some((guard, _)) = client.guards.iter().find(|(g, _)| open.contains(g)) {
            return guard.clone();
        }
        let first = open[cx.rng.gen_range(0..open.len())].clone();
        if guard_ms > 0 && client.guards.len() < GUARDS {
            client
                .guards
                .push((first.clone(), now.saturating_add(guard_ms)));
        }
        first
    }

    /// The guards, primary first, each with the milliseconds it is kept
    /// for after `now` (a node saves them, so that a restart does not draw
    /// new ones: the predecessor attack gains with every new first hop).
    pub fn guards(&self, now: Time) -> Vec<(P, Time)> {
        let kept = self.tunnels.client.guards.iter();
        kept.filter(|(_, until)| *until > now)
            .map(|(p, until)| (p.clone(), until - now))
            .collect()
    }

    /// The guards' peers, as [`Router::guards`] lists them, without
    /// allocating (a node compares them with what it saved at every wake).
    pub fn guard_peers(&self, now: Time) -> impl Iterator<Item = &P> + '_ {
        let kept = self.tunnels.client.guards.iter();
        kept.filter(move |(_, until)| *until > now).map(|(p, _)| p)
    }

    /// Take back guards saved by [`Router::guards`] (at most [`GUARDS`],
    /// none kept longer than `guard_ms`), in place of any chosen so far.
    pub fn restore_guards(&mut self, now: Time, guards: Vec<(P, Time)>) {
        let guard_ms = self.config.tunnel.guard_ms;
        self.tunnels.client.guards = guards
            .into_iter()
            .filter(|(_, left)| *left > 0 && guard_ms > 0)
            .take(GUARDS)
            .map(|(p, left)| (p, now.saturating_add(left.min(guard_ms))))
            .collect();
    }

    /// Start a new tunnel at a random neighbour that is not a known dead
    /// end; when there is none, every waiting item fails.
    pub(super) fn build_tunnel(&mut self, cx: &mut Ctx<'_, P>) {
        let now = cx.now;
        let client = &mut self.tunnels.client;
        client
            .dead_ends
            .retain(|_, at| at.saturating_add(DEAD_END_MS) > now);
        let open: Vec<P> = self
            .neighbours
            .keys()
            .filter(|p| !self.tunnels.client.dead_ends.contains_key(*p))
            .cloned()
            .collect();
        let (first, length) = if open.is_empty() {
            // Every neighbour is a dead end (or there is one neighbour,
            // which then knows that all this node sends is its own): one
            // hop, the only tunnel there is.
            (self.random_neighbour(cx, None), 1)
        } else {
            (
                Some(self.first_hop(cx, &open)),
                walk_length(cx, &self.config.tunnel),
            )
        };
        let Some(first) = first else {
            let tokens: Vec<ClientToken> = self.tunnels.client.sessions.keys().copied().collect();
            for token in tokens {
                self.fail_unanswered(cx, token, Failure::NoPeers);
            }
            return;
        };
        let tunnel = self.fresh_tunnel_id(cx, &first);
        let hs = Handshake::start(cx.rng);
        let msg = Message::TunnelBuild {
            tunnel,
            ephemeral: hs.public(),
        };
        // The build carries no operation: it is labelled with that of the
        // first item it will carry.
        let op = self.waiting_op();
        send_own(cx, &first, msg, op);
        self.tunnels.client.current = Some(OwnTunnel {
            first,
            tunnel,
            path: Vec::new(),
            adding: Some(hs),
            extend_due: false,
            extend_failures: 0,
            length,
            built_at: cx.now,
            first_rtt: 0,
            last_heard: cx.now,
            next_index: 0,
            pending: BTreeMap::new(),
            puts_out: 0,
        });
    }

    /// The first hop answered the client's build.
    pub(super) fn client_built(
        &mut self,
        cx: &mut Ctx<'_, P>,
        from: &P,
        tunnel: TunnelId,
        ephemeral: Ephemeral,
    ) {
        let now = cx.now;
        let Some(t) = self.tunnels.client.matches(from, tunnel) else {
            return;
        };
        if !t.path.is_empty() {
            return self.break_tunnel(cx, true);
        }
        self.tunnels.client.last_back = Some(now);
        if let Some(t) = self.tunnels.client.current.as_mut() {
            t.first_rtt = now.saturating_sub(t.built_at);
        }
        self.hop_added(cx, now, ephemeral);
    }

    /// The hop being added answered with its share.
    pub(super) fn hop_added(&mut self, cx: &mut Ctx<'_, P>, now: Time, ephemeral: Ephemeral) {
        let Some(t) = self.tunnels.client.current.as_mut() else {
            return;
        };
        let Some(hs) = t.adding.take() else {
            return self.break_tunnel(cx, true);
        };
        match hs.finish(ephemeral) {
            Ok(keys) => {
                t.path.push(keys);
                t.last_heard = now;
                t.extend_due = t.path.len() < t.length;
                self.wake(cx);
            }
            Err(_) => self.break_tunnel(cx, true),
        }
    }

    /// The tunnel's last hop could not add one. After a few tries the
    /// originator keeps the hops it has if they are two or more (the exit is
    /// then still not its neighbour; fewer than `min_walk` only in a network
    /// too small for more); a first hop that cannot extend at all is a dead
    /// end, and the next tunnel starts elsewhere.
    pub(super) fn extend_failed(&mut self, cx: &mut Ctx<'_, P>) {
        let now = cx.now;
        let client = &mut self.tunnels.client;
        let Some(t) = client.current.as_mut() else {
            return;
        };
        t.adding = None;
        t.extend_failures += 1;
        if t.extend_failures < MAX_EXTEND_FAILURES {
            t.extend_due = true;
        } else if t.path.len() >= 2 {
            t.length = t.path.len();
        } else {
            client.dead_ends.insert(t.first.clone(), now);
            return self.break_tunnel(cx, true);
        }
        self.wake(cx);
    }
}
