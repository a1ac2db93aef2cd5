//! Locations from a spanning tree (a greedy embedding in the sense of
//! Roos, Beck and Strufe, "Anonymous addresses for efficient and resilient
//! routing in F2F overlays", INFOCOM 2016, mapped onto veil's circle),
//! sans-IO: one node's side of the protocol.
//!
//! Swapping (`routing/swap/`) needs about as many attempts per node as
//! there are nodes before greedy routing works (Freenet's wiki: O(n) swap
//! attempts per node; at 10,000 nodes veil finds 27% after 200 rounds).
//! This protocol needs a few times the tree's depth in periods:
//!
//! 1. **Root.** Every node draws a random 64-bit ticket. Each tells its
//!    neighbours the smallest ticket it knows of and its depth below it
//!    ([`EmbedMessage::Root`]); a node takes as parent the neighbour that
//!    offers the smallest ticket at the least depth (ties: the smaller
//!    peer), so the network agrees on one root and a breadth-first tree.
//!    Depths are capped at [`MAX_DEPTH`], so a ticket whose holder left
//!    dies out instead of counting to infinity.
//! 2. **Sizes.** Each node tells its parent the size of its subtree
//!    ([`EmbedMessage::Size`]): one plus its children's.
//! 3. **Intervals.** The root holds the whole circle; every node keeps the
//!    first `1/size` of its interval for itself and gives each child, in
//!    peer order, a slice in proportion to the child's size
//!    ([`EmbedMessage::Interval`]). A node's location is the middle of its
//!    own slot. So every node's location is its pre-order rank in the
//!    tree, spread evenly round the circle, and the locations of a
//!    subtree are one arc.
//!
//! Greedy routing then walks the tree towards a key's arc and the other
//! links cut corners. Sizes and intervals are sent at most once per
//! [`EmbedConfig::period_ms`], and only when they changed, so a growing
//! tree does not flood; the root ticket is passed on at once.
//!
//! What it reveals: a neighbour learns the node's depth in the tree, its
//! subtree's size and (through the intervals) where in the tree it sits;
//! see `docs/threat-model.md`. The node runs it with `swap = true` and
//! `[swapping] embedding = "tree"` (`node/router_task/embed.rs`; its
//! messages travel in swap frames), the simulator with `veil sim
//! --experiment swap --embedding tree`.

use std::collections::BTreeMap;

use rand::RngCore;

use crate::keys::Location;
use crate::message::swap::SwapMessage;
use crate::routing::{PeerId, Time};

/// How nodes find their locations: `[swapping] embedding` in node.toml,
/// `veil sim --embedding`, `veil testnet run --embedding`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    /// Location swapping (Sandberg 2006; `routing::swap`).
    #[default]
    Swap,
    /// Pre-order ranks of a breadth-first spanning tree
    /// (`routing::embed`), no swapping.
    Tree,
}

words!(Embedding, "an embedding", Swap = "swap", Tree = "tree");

/// Depths beyond this are not offered (a departed root's ticket then dies
/// out after this many hops instead of circulating).
pub const MAX_DEPTH: u32 = 64;

/// Tunables of the tree embedding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedConfig {
    /// Sizes and intervals go out at most once per period.
    pub period_ms: Time,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig { period_ms: 5_000 }
    }
}

/// One message between neighbours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedMessage {
    /// The smallest ticket the sender knows and its depth below it.
    Root { root: u64, depth: u32 },
    /// The sender's subtree size, and whether the receiver is its parent.
    Size { root: u64, size: u64, child: bool },
    /// The receiver's interval of the circle: `[start, start + width)`,
    /// fractions of 2^64 (`width` 2^64 is the whole circle).
    Interval { root: u64, start: u64, width: u128 },
}

/// An input.
#[derive(Clone, Debug)]
pub enum EmbedEvent<P> {
    LinkUp { peer: P },
    LinkDown { peer: P },
    Message { from: P, msg: EmbedMessage },
    Tick,
}

/// An output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedAction<P> {
    Send {
        to: P,
        msg: EmbedMessage,
    },
    /// This node's location is now this (tell the router and neighbours).
    Relocate {
        location: Location,
    },
}

#[derive(Clone, Debug, Default)]
struct Peer {
    /// Its best (root, depth), as it said.
    root: Option<(u64, u32)>,
    /// Its subtree size if it says it is our child under our root.
    child_size: Option<(u64, u64)>,
}

/// One node's side of the tree embedding.
#[derive(Clone)]
pub struct Embedder<P: PeerId> {
    config: EmbedConfig,
    ticket: u64,
    peers: BTreeMap<P, Peer>,
    /// (root, depth, parent); the node itself is root with no parent.
    best: (u64, u32, Option<P>),
    /// Size last sent to the parent (and to whom).
    sent_size: Option<(P, u64, u64)>,
    /// This node's interval under the current root.
    interval: Option<(u64, u128)>,
    /// Intervals last sent to each child.
    sent_intervals: BTreeMap<P, (u64, u64, u128)>,
    location: Option<Location>,
    next_tick: Time,
}

impl<P: PeerId> Embedder<P> {
    pub fn new(config: EmbedConfig, now: Time, rng: &mut dyn RngCore) -> Self {
        let ticket = rng.next_u64();
        let period = config.period_ms.max(1);
        let first = now + rng.next_u64() % period;
        Embedder {
            config,
            ticket,
            peers: BTreeMap::new(),
            best: (ticket, 0, None),
            sent_size: None,
            interval: None,
            sent_intervals: BTreeMap::new(),
            location: None,
            next_tick: first,
        }
    }

    pub fn next_deadline(&self) -> Time {
        self.next_tick
    }

    /// The root this node follows and its depth below it.
    pub fn root(&self) -> (u64, u32) {
        (self.best.0, self.best.1)
    }

    /// This node's subtree size (itself and its children's).
    pub fn size(&self) -> u64 {
        let root = self.best.0;
        // Sizes are what peers claim: saturate, never overflow.
        self.peers
            .values()
            .filter_map(|p| p.child_size)
            .filter(|&(r, _)| r == root)
            .fold(1u64, |sum, (_, s)| sum.saturating_add(s))
    }

    pub fn location(&self) -> Option<Location> {
        self.location
    }

    pub fn handle(&mut self, now: Time, event: EmbedEvent<P>) -> Vec<EmbedAction<P>> {
        let mut out = Vec::new();
        match event {
            EmbedEvent::LinkUp { peer } => {
                // A new link knows nothing of what was said on an old one.
                self.forget_sent(&peer);
                self.peers.insert(peer.clone(), Peer::default());
                let (root, depth) = self.root();
                out.push(EmbedAction::Send {
                    to: peer,
                    msg: EmbedMessage::Root { root, depth },
                });
            }
            EmbedEvent::LinkDown { peer } => {
                self.peers.remove(&peer);
                self.forget_sent(&peer);
                self.choose(&mut out);
            }
            EmbedEvent::Message { from, msg } => {
                let Some(p) = self.peers.get_mut(&from) else {
                    return out;
                };
                match msg {
                    EmbedMessage::Root { root, depth } => {
                        p.root = Some((root, depth));
                        self.choose(&mut out);
                    }
                    EmbedMessage::Size { root, size, child } => {
                        p.child_size = child.then_some((root, size.max(1)));
                    }
                    EmbedMessage::Interval { root, start, width } => {
                        if self.best.2.as_ref() == Some(&from) && root == self.best.0 {
                            self.interval = Some((start, width));
                        }
                    }
                }
            }
            EmbedEvent::Tick => {
                if now >= self.next_tick {
                    self.next_tick = now + self.config.period_ms.max(1);
                    self.period(&mut out);
                }
            }
        }
        out
    }

    /// What this node told `peer` is to be told again.
    fn forget_sent(&mut self, peer: &P) {
        self.sent_intervals.remove(peer);
        if self.sent_size.as_ref().is_some_and(|(p, _, _)| p == peer) {
            self.sent_size = None;
        }
    }

    /// Take the best offer as parent; tell everyone if it changed.
    fn choose(&mut self, out: &mut Vec<EmbedAction<P>>) {
        let mut best = (self.ticket, 0u32, None::<P>);
        for (peer, p) in &self.peers {
            if let Some((root, depth)) = p.root {
                let d = depth.saturating_add(1);
                if d > MAX_DEPTH {
                    continue;
                }
                let better = (root, d) < (best.0, best.1)
                    || ((root, d) == (best.0, best.1) && best.2.as_ref().is_some_and(|b| peer < b));
                if better {
                    best = (root, d, Some(peer.clone()));
                }
            }
        }
        if best == self.best {
            return;
        }
        // A new root or parent: wait for the interval it gives.
        self.best = best;
        self.interval = None;
        self.sent_intervals.clear();
        let (root, depth) = self.root();
        for peer in self.peers.keys() {
            out.push(EmbedAction::Send {
                to: peer.clone(),
                msg: EmbedMessage::Root { root, depth },
            });
        }
    }

    /// Once per period: sizes up, intervals down, the location.
    fn period(&mut self, out: &mut Vec<EmbedAction<P>>) {
        let root = self.best.0;
        let size = self.size();
        let parent = self.best.2.clone();
        let now = parent.clone().map(|p| (p, root, size));
        if self.sent_size != now {
            // A former parent hears that this node is its child no more.
            if let Some((old, r, _)) = self.sent_size.take() {
                if parent.as_ref() != Some(&old) {
                    let msg = EmbedMessage::Size {
                        root: r,
                        size: 0,
                        child: false,
                    };
                    out.push(EmbedAction::Send { to: old, msg });
                }
            }
            if let Some(to) = parent.clone() {
                let msg = EmbedMessage::Size {
                    root,
                    size,
                    child: true,
                };
                out.push(EmbedAction::Send { to, msg });
            }
            self.sent_size = now;
        }
        if parent.is_none() {
            self.interval = Some((0, 1u128 << 64));
        }
        let Some((start, width)) = self.interval else {
            return;
        };
        // Own slot first, then each child's, in peer order.
        let slot = width / u128::from(size);
        let at = Location(start.wrapping_add((slot / 2) as u64));
        if self.location != Some(at) {
            self.location = Some(at);
            out.push(EmbedAction::Relocate { location: at });
        }
        let mut next = u128::from(start) + slot;
        for (peer, p) in &self.peers {
            let Some((r, s)) = p.child_size else { continue };
            if r != root {
                continue;
            }
            let w = width * u128::from(s) / u128::from(size);
            let child_start = (next % (1u128 << 64)) as u64;
            next += w;
            let sent = (root, child_start, w);
            if self.sent_intervals.get(peer) != Some(&sent) {
                self.sent_intervals.insert(peer.clone(), sent);
                out.push(EmbedAction::Send {
                    to: peer.clone(),
                    msg: EmbedMessage::Interval {
                        root,
                        start: child_start,
                        width: w,
                    },
                });
            }
        }
    }
}

impl From<EmbedMessage> for SwapMessage {
    /// On the wire the tree's messages travel in swap frames.
    fn from(msg: EmbedMessage) -> SwapMessage {
        match msg {
            EmbedMessage::Root { root, depth } => SwapMessage::TreeRoot { root, depth },
            EmbedMessage::Size { root, size, child } => SwapMessage::TreeSize { root, size, child },
            EmbedMessage::Interval { root, start, width } => {
                SwapMessage::TreeInterval { root, start, width }
            }
        }
    }
}

impl EmbedMessage {
    /// The tree embedding's message in a swap frame, if it is one.
    pub fn from_wire(msg: &SwapMessage) -> Option<EmbedMessage> {
        Some(match *msg {
            SwapMessage::TreeRoot { root, depth } => EmbedMessage::Root { root, depth },
            SwapMessage::TreeSize { root, size, child } => EmbedMessage::Size { root, size, child },
            SwapMessage::TreeInterval { root, start, width } => {
                EmbedMessage::Interval { root, start, width }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
