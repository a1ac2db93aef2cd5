//! The router task's side of location swapping: feed the core's
//! [`Swapper`](crate::routing::swap::Swapper) and carry out its actions
//! (swap frames to links, a new location for the hellos of later links).

use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};

use super::RouterTask;
use crate::client::SwapStatus;
use crate::identity::PeerKey;
use crate::message::{PeerFrame, SwapMessage};
use crate::node::Input;
use crate::routing::swap::{SwapAction, SwapEvent};

impl RouterTask {
    /// Hand one event to the swap protocol and carry out what it says.
    pub(super) fn feed_swap(&mut self, event: SwapEvent<PeerKey>) {
        let now = self.now();
        let actions = self
            .swapper
            .handle(now, &mut self.rng, &mut self.router, event);
        let mut broken = Vec::new();
        for action in actions {
            match action {
                SwapAction::Send { to, msg } => {
                    if !self.send_swap(to, msg) {
                        broken.push(to);
                    }
                }
                SwapAction::Swapped { from, to } => {
                    self.shared_location.store(to.0, Ordering::Relaxed);
                    info!(%from, %to, swaps = self.swapper.stats().swaps, "swapped location");
                }
                SwapAction::NeighbourMoved { peer, location } => {
                    debug!(%peer, %location, "neighbour moved");
                    if let Some(a) = &mut self.audit {
                        a.neighbour_moved(&peer, location);
                    }
                }
                SwapAction::Misbehaved { peer, reason } => {
                    warn!(%peer, reason, "peer misbehaved; closing link");
                    broken.push(peer);
                }
            }
        }
        for peer in broken {
            self.drop_link(peer);
        }
    }

    /// Queue a swap frame on `to`'s link; false if the peer is not reading.
    pub(super) fn send_swap(&mut self, to: PeerKey, msg: SwapMessage) -> bool {
        let Some(link) = self.links.get(&to) else {
            return true;
        };
        if link.tx.try_send(PeerFrame::Swap(msg)).is_err() {
            warn!(peer = %to, "peer is not reading its link; closing it");
            return false;
        }
        true
    }

    /// A new link's hello carried the location of the moment it was sent;
    /// once the node has swapped, tell the new neighbour where it is now
    /// (a swap may have happened between that hello and this link's start).
    pub(super) fn announce_location_to(&mut self, peer: PeerKey) {
        let location = self.router.location();
        if location != self.initial_location
            && !self.send_swap(
                peer,
                SwapMessage::LocationChanged {
                    location: location.0,
                },
            )
        {
            self.drop_link(peer);
        }
    }

    /// A testnet's control: pause or resume swapping (or the tree), or
    /// change the routing rules; answered with the status.
    pub(super) fn on_testnet_control(&mut self, input: Input) {
        match input {
            Input::SetSwapping { on, reply } => {
                self.swapper.set_paused(!on);
                match on {
                    true => self.start_tree(),
                    false => self.stop_tree(),
                }
                let _ = reply.send(self.status());
            }
            Input::SetRouting {
                lookahead,
                htl_rule,
                reply,
            } => {
                info!(%lookahead, %htl_rule, "routing rules changed");
                self.router.set_rules(lookahead, htl_rule);
                if let Some(a) = &mut self.audit {
                    let insert_end = self.router.config().insert_end;
                    a.routing_rules(lookahead, htl_rule, insert_end);
                }
                let _ = reply.send(self.status());
            }
            _ => {}
        }
    }

    pub(super) fn swap_status(&self) -> SwapStatus {
        SwapStatus {
            enabled: self.config.swap,
            paused: self.swapper.is_paused(),
            embedding: self.config.swapping.embedding,
            tree: self.tree_status(),
            stats: self.swapper.stats().clone(),
        }
    }
}
