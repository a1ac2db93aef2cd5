//! The router's searches in flight, in one small vector sorted by flow
//! (uid, then key).
//!
//! A node nearly always has none or one search at a time, so a sorted
//! vector answers every query the router asks (by flow, by uid, all of them
//! in order) with the same results and order as the tree it replaces. The
//! tree allocated a node of eleven slots (over 2 KB) per router on the
//! first search and kept it when emptied: 220 MB of cold memory at 100,000
//! routers in `veil sim`, and a cache miss on every hop. The vector gives
//! its memory back when it empties, so the next search anywhere reuses a
//! block the allocator just had in cache.

use crate::message::Uid;
use crate::routing::search::Search;
use crate::routing::Flow;

/// Searches keyed by flow, sorted.
pub(crate) struct Searches<P> {
    entries: Vec<(Flow, Search<P>)>,
}

impl<P> Default for Searches<P> {
    fn default() -> Self {
        Searches {
            entries: Vec::new(),
        }
    }
}

impl<P> Searches<P> {
    fn find(&self, flow: &Flow) -> Result<usize, usize> {
        self.entries.binary_search_by(|(f, _)| f.cmp(flow))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, flow: &Flow) -> Option<&Search<P>> {
        self.find(flow).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, flow: &Flow) -> Option<&mut Search<P>> {
        match self.find(flow) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Add or replace the search of `flow`.
    pub fn insert(&mut self, flow: Flow, search: Search<P>) {
        match self.find(&flow) {
            Ok(i) => self.entries[i].1 = search,
            Err(i) => self.entries.insert(i, (flow, search)),
        }
    }

    /// Take the search of `flow` out of the pool.
    pub fn remove(&mut self, flow: &Flow) -> Option<Search<P>> {
        let i = self.find(flow).ok()?;
        let (_, search) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(search)
    }

    /// The searches of one uid, in key order.
    pub fn of_uid(&self, uid: Uid) -> impl Iterator<Item = (&Flow, &Search<P>)> {
        let start = self.entries.partition_point(|(f, _)| f.0 < uid);
        self.entries[start..]
            .iter()
            .take_while(move |(f, _)| f.0 == uid)
            .map(|(f, s)| (f, s))
    }

    /// Every search, in flow order.
    pub fn iter(&self) -> impl Iterator<Item = (&Flow, &Search<P>)> {
        self.entries.iter().map(|(f, s)| (f, s))
    }

    pub fn values(&self) -> impl Iterator<Item = &Search<P>> {
        self.entries.iter().map(|(_, s)| s)
    }
}
