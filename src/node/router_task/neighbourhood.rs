//! FOAF routing's announcements: with `[router] lookahead = "foaf"`, a node
//! tells each neighbour the locations of its neighbours
//! ([`PeerFrame::Neighbours`]) whenever they change (a link up or down, a
//! neighbour that swapped), and a new link gets them once it is up. What a
//! neighbour announces is handed to the router
//! ([`Router::set_neighbour_view`](crate::routing::Router::set_neighbour_view)).

use super::RouterTask;
use crate::identity::PeerKey;
use crate::keys::Location;
use crate::message::{PeerFrame, MAX_NEIGHBOURS};
use crate::routing::Lookahead;

/// What was announced last, and who has not heard it.
#[derive(Debug, Default)]
pub(super) struct Announced {
    locations: Vec<Location>,
    new_links: Vec<PeerKey>,
}

impl Announced {
    /// A link came up: its peer hears the neighbourhood at the next
    /// announcement, changed or not.
    pub(super) fn link_up(&mut self, peer: PeerKey) {
        self.new_links.push(peer);
    }
}

impl RouterTask {
    /// Send the neighbourhood to every link if it changed since it was last
    /// sent, else to the links that came up since. Called after every wake;
    /// costs a pass over the neighbours when nothing changed.
    pub(super) fn announce_neighbourhood(&mut self) {
        if self.router.config().lookahead != Lookahead::Foaf {
            self.neighbourhood.new_links.clear();
            return;
        }
        let locations: Vec<Location> = self
            .router
            .neighbours()
            .map(|(_, l)| *l)
            .take(MAX_NEIGHBOURS)
            .collect();
        let to: Vec<PeerKey> = if locations != self.neighbourhood.locations {
            self.neighbourhood.locations = locations.clone();
            self.neighbourhood.new_links.clear();
            self.links.keys().copied().collect()
        } else if self.neighbourhood.new_links.is_empty() {
            return;
        } else {
            std::mem::take(&mut self.neighbourhood.new_links)
        };
        let mut broken = Vec::new();
        for peer in to {
            let Some(link) = self.links.get(&peer) else {
                continue;
            };
            let frame = PeerFrame::Neighbours {
                locations: locations.clone(),
            };
            if link.tx.try_send(frame).is_err() {
                tracing::warn!(%peer, "peer is not reading its link; closing it");
                broken.push(peer);
            }
        }
        // A closed link changes the neighbourhood: the next wake announces it.
        for peer in broken {
            self.drop_link(peer);
        }
    }
}
