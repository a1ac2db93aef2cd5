//! The router task's side of the tree embedding (`swap = true` with
//! `[swapping] embedding = "tree"`): feed the core's
//! [`Embedder`](crate::routing::embed::Embedder) and carry out its actions
//! (its messages in swap frames, a new location for the router, the
//! neighbours and the hellos of later links).
//!
//! Paused (`[swapping] paused`, or a testnet's `SetSwapping`), the node
//! takes no part in the tree: it has no embedder and ignores the tree's
//! messages. Resumed, it starts afresh (a new ticket) with every link it
//! has; paused again, it keeps the location it reached.

use std::sync::atomic::Ordering;

use tracing::debug;

use super::RouterTask;
use crate::client::TreeStatus;
use crate::identity::PeerKey;
use crate::message::SwapMessage;
use crate::routing::embed::{EmbedAction, EmbedConfig, EmbedEvent, EmbedMessage, Embedder};

/// The embedder (while the node takes part) and what it has done.
#[derive(Default)]
pub(super) struct Tree {
    embedder: Option<Embedder<PeerKey>>,
    moves: u64,
}

impl RouterTask {
    /// Whether this node finds its location by the tree embedding.
    pub(super) fn runs_tree(&self) -> bool {
        self.config.swap && self.config.swapping.embedding == crate::routing::embed::Embedding::Tree
    }

    /// Start taking part in the tree with the links the node has now.
    pub(super) fn start_tree(&mut self) {
        if !self.runs_tree() || self.tree.embedder.is_some() {
            return;
        }
        let now = self.now();
        let embedder = Embedder::new(EmbedConfig::default(), now, &mut self.rng);
        self.tree.embedder = Some(embedder);
        let peers: Vec<PeerKey> = self.links.keys().copied().collect();
        for peer in peers {
            self.feed_embed(EmbedEvent::LinkUp { peer });
        }
    }

    /// Stop taking part (the location stays where the tree put it).
    pub(super) fn stop_tree(&mut self) {
        self.tree.embedder = None;
    }

    /// When the embedder next has something to do.
    pub(super) fn tree_deadline(&self) -> Option<u64> {
        self.tree.embedder.as_ref().map(Embedder::next_deadline)
    }

    /// A swap frame that carries the tree's message goes to the embedder
    /// (or nowhere while paused); `false` for any other swap message.
    pub(super) fn tree_message(&mut self, from: PeerKey, msg: &SwapMessage) -> bool {
        let Some(msg) = EmbedMessage::from_wire(msg) else {
            return false;
        };
        self.feed_embed(EmbedEvent::Message { from, msg });
        true
    }

    /// Hand one event to the embedder and carry out what it says.
    pub(super) fn feed_embed(&mut self, event: EmbedEvent<PeerKey>) {
        let now = self.now();
        let Some(embedder) = &mut self.tree.embedder else {
            return;
        };
        let actions = embedder.handle(now, event);
        let mut broken = Vec::new();
        for action in actions {
            match action {
                EmbedAction::Send { to, msg } => {
                    if !self.send_swap(to, msg.into()) {
                        broken.push(to);
                    }
                }
                EmbedAction::Relocate { location } => {
                    self.tree.moves += 1;
                    let from = self.router.location();
                    self.router.set_location(location);
                    self.shared_location.store(location.0, Ordering::Relaxed);
                    debug!(%from, to = %location, "the tree embedding moved this node");
                    let msg = SwapMessage::LocationChanged {
                        location: location.0,
                    };
                    let peers: Vec<PeerKey> = self.links.keys().copied().collect();
                    for peer in peers {
                        if !self.send_swap(peer, msg.clone()) {
                            broken.push(peer);
                        }
                    }
                }
            }
        }
        for peer in broken {
            self.drop_link(peer);
        }
    }

    /// The tree's part of `veil status` (`None` when the node does not
    /// run it).
    pub(super) fn tree_status(&self) -> Option<TreeStatus> {
        if !self.runs_tree() {
            return None;
        }
        let e = self.tree.embedder.as_ref();
        Some(TreeStatus {
            taking_part: e.is_some(),
            depth: e.map_or(0, |e| e.root().1),
            size: e.map_or(1, Embedder::size),
            located: e.is_some_and(|e| e.location().is_some()),
            moves: self.tree.moves,
        })
    }
}
