//! The neighbour table: each connected neighbour's location, the HTL coins
//! of its link and the requests it has in flight through this node, in one
//! vector sorted by peer.
//!
//! Routing reads all of it on every hop (the candidates by location, the
//! sender's coins and in-flight count), so it lives in one small allocation:
//! with 100,000 routers in `veil sim`, a tree of nodes and two hash tables
//! per router cost a cache miss each on every hop. Iteration is in peer
//! order, as the tree's was, so the routing is unchanged (ties between equal
//! locations still go to the lower peer).

use crate::keys::Location;
use crate::routing::htl::LinkCoins;

/// One connected neighbour.
#[derive(Clone, Debug)]
pub(crate) struct Neighbour<P> {
    pub peer: P,
    pub location: Location,
    pub coins: LinkCoins,
    /// Requests from this peer being handled here (per-peer limit).
    pub inflight: usize,
    /// The locations of this peer's own neighbours, as it announced them
    /// (at most [`MAX_FOAF`]; empty until it does). Read by FOAF routing.
    pub foaf: Box<[Location]>,
}

/// The most neighbours' locations kept for one neighbour.
pub const MAX_FOAF: usize = 64;

/// Every connected neighbour, sorted by peer.
#[derive(Clone, Debug)]
pub(crate) struct Neighbours<P> {
    entries: Vec<Neighbour<P>>,
}

impl<P> Default for Neighbours<P> {
    fn default() -> Self {
        Neighbours {
            entries: Vec::new(),
        }
    }
}

/// Tables up to this size are searched by counting, not by halving.
const SCAN_UP_TO: usize = 16;

impl<P: Ord> Neighbours<P> {
    /// Where `peer` is (`Ok`) or would go (`Err`), as a binary search says.
    /// A small table is counted through instead: the loads of every entry
    /// do not wait on one another, so a table not in the cache costs one
    /// memory round trip, where halving costs one per step (`veil sim`
    /// meets a cold table on nearly every hop).
    fn find(&self, peer: &P) -> Result<usize, usize> {
        if self.entries.len() > SCAN_UP_TO {
            return self.entries.binary_search_by(|e| e.peer.cmp(peer));
        }
        let at = self.entries.iter().filter(|e| e.peer < *peer).count();
        match self.entries.get(at) {
            Some(e) if e.peer == *peer => Ok(at),
            _ => Err(at),
        }
    }

    /// A link came up (again): a known peer keeps its in-flight count.
    pub fn insert(&mut self, peer: P, location: Location, coins: LinkCoins) {
        match self.find(&peer) {
            Ok(i) => {
                let e = &mut self.entries[i];
                e.location = location;
                e.coins = coins;
            }
            Err(i) => self.entries.insert(
                i,
                Neighbour {
                    peer,
                    location,
                    coins,
                    inflight: 0,
                    foaf: Box::default(),
                },
            ),
        }
    }

    /// A link went down. Its requests still in flight here end without
    /// decrementing anything (a peer that comes back starts from zero).
    pub fn remove(&mut self, peer: &P) {
        if let Ok(i) = self.find(peer) {
            self.entries.remove(i);
        }
    }

    pub fn contains_key(&self, peer: &P) -> bool {
        self.find(peer).is_ok()
    }

    pub fn get(&self, peer: &P) -> Option<&Neighbour<P>> {
        self.find(peer).ok().map(|i| &self.entries[i])
    }

    pub fn get_mut(&mut self, peer: &P) -> Option<&mut Neighbour<P>> {
        match self.find(peer) {
            Ok(i) => Some(&mut self.entries[i]),
            Err(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The peers, in order.
    pub fn keys(&self) -> impl Iterator<Item = &P> {
        self.entries.iter().map(|e| &e.peer)
    }

    /// The locations, in peer order.
    pub fn values(&self) -> impl Iterator<Item = &Location> {
        self.entries.iter().map(|e| &e.location)
    }

    /// (peer, location), in peer order.
    pub fn iter(&self) -> impl Iterator<Item = (&P, &Location)> {
        self.entries.iter().map(|e| (&e.peer, &e.location))
    }

    /// Every neighbour, in peer order.
    pub fn entries(&self) -> impl Iterator<Item = &Neighbour<P>> {
        self.entries.iter()
    }

    /// Is `own` strictly closer to `target` than every neighbour and, when
    /// `foaf` is set, every location they advertise? Such a node is a
    /// *sink* for the key: greedy routing cannot get any closer from here.
    pub fn none_closer(&self, own: Location, target: Location, foaf: bool) -> bool {
        let mine = own.distance(target);
        self.entries.iter().all(|n| {
            n.location.distance(target) > mine
                && (!foaf || n.foaf.iter().all(|l| l.distance(target) > mine))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(x: u64) -> Location {
        Location(x)
    }

    #[test]
    fn the_table_stays_sorted_and_keeps_counts_across_a_new_link_up() {
        let mut t = Neighbours::default();
        for p in [5u32, 1, 9, 3] {
            t.insert(p, loc(u64::from(p) << 40), LinkCoins::default());
        }
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec![1, 3, 5, 9]);
        t.get_mut(&5).unwrap().inflight = 2;
        t.insert(5, loc(55), LinkCoins::default());
        assert_eq!(
            t.get(&5).map(|n| (n.inflight, n.location)),
            Some((2, loc(55)))
        );
        t.remove(&3);
        t.remove(&4);
        assert!(!t.contains_key(&3) && t.contains_key(&9));
        assert_eq!(t.values().count(), 3);
        assert!(t.get_mut(&3).is_none());
    }

    #[test]
    fn counting_finds_what_halving_finds() {
        for len in [0u32, 1, 5, 16, 17, 40] {
            let mut t = Neighbours::default();
            for p in 0..len {
                t.insert(p * 2 + 1, loc(u64::from(p)), LinkCoins::default());
            }
            for probe in 0..len * 2 + 3 {
                let halving = t.entries.binary_search_by(|e| e.peer.cmp(&probe));
                assert_eq!(t.find(&probe), halving, "len {len}, peer {probe}");
            }
        }
    }
}
