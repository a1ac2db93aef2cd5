//! Each friend's share of a full store.
//!
//! A node stores (durably, as the sink) the inserts that end at it. While
//! the store has room every insert goes in. Once it is full, a new block
//! evicts the least recently used one, so without a limit one friend that
//! floods inserts could push out everything others stored. Here each friend
//! may hold at most `capacity / friends` of a full store with its inserts;
//! an insert from a friend at its share, arriving while the store is full,
//! is refused (`RejectedOverload`, counted as `store refused`) rather than
//! evicting another friend's block. The local client's blocks are not
//! limited.
//!
//! What a friend holds is known from memory only: the keys stored on its
//! inserts since the node started, checked against the store's in-memory
//! index. Nothing about who inserted what is written to disk, and after a
//! restart every block counts as nobody's.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::store::Datastore;

/// How often a friend's list is checked against the store while it is at
/// its share (each check walks the list).
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// The blocks one friend's inserts put in the store.
#[derive(Default)]
struct Held {
    /// Stored on its inserts, oldest first; some may have been evicted
    /// since (dropped at the next recount).
    keys: VecDeque<RoutingKey>,
    /// When `keys` was last checked against the store.
    recounted: Option<Instant>,
}

/// Every friend's blocks in the store.
#[derive(Default)]
pub(super) struct StoreShares {
    held: HashMap<PeerKey, Held>,
}

impl StoreShares {
    /// Whether `peer`'s insert may be stored now: always while the store
    /// has room, and while `peer` holds fewer than its share of a full
    /// store (`friends` friends share it). `waiting` is what the store's
    /// writer has queued: `(of this peer, in all)`.
    pub(super) fn admits(
        &mut self,
        peer: PeerKey,
        store: &Datastore,
        friends: usize,
        waiting: (usize, usize),
        now: Instant,
    ) -> bool {
        let usage = store.usage();
        let capacity = usage.store_limit / crate::keys::BLOCK_LEN as u64;
        if usage.store_blocks + (waiting.1 as u64) < capacity {
            return true;
        }
        let share = capacity / friends.max(1) as u64;
        let held = self.held.entry(peer).or_default();
        if ((held.keys.len() + waiting.0) as u64) < share {
            return true;
        }
        if held
            .recounted
            .is_none_or(|at| now.saturating_duration_since(at) >= RECOUNT_EVERY)
        {
            held.keys.retain(|k| store.holds_stored(k));
            held.recounted = Some(now);
        }
        ((held.keys.len() + waiting.0) as u64) < share
    }

    /// `key` was stored on `peer`'s insert.
    pub(super) fn stored(&mut self, peer: PeerKey, key: RoutingKey, store: &Datastore) {
        let held = self.held.entry(peer).or_default();
        held.keys.push_back(key);
        // The list never outgrows the store: what is beyond its capacity
        // has been evicted.
        let capacity = (store.usage().store_limit / crate::keys::BLOCK_LEN as u64) as usize;
        while held.keys.len() > capacity {
            held.keys.pop_front();
        }
    }

    /// `peer` is no longer a friend.
    pub(super) fn forget(&mut self, peer: &PeerKey) {
        self.held.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Block, Chk, BLOCK_LEN};

    fn block(i: u32) -> Block {
        Chk::encode(format!("share {i}").as_bytes()).unwrap().1
    }

    #[test]
    fn a_friend_at_its_share_of_a_full_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Room for 8 blocks, shared by 2 friends: 4 each once full.
        let store = Datastore::open(&dir.path().join("s"), 8 * BLOCK_LEN as u64, 0).unwrap();
        let (a, b) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let mut shares = StoreShares::default();
        let t0 = Instant::now();
        // Friend b stores 3 blocks, the local client 1; friend a fills the rest.
        for i in 0..3 {
            assert!(shares.admits(b, &store, 2, (0, 0), t0));
            store.put_store(&block(i)).unwrap();
            shares.stored(b, block(i).routing_key(), &store);
        }
        store.put_store(&block(100)).unwrap();
        let mut n = 10;
        while shares.admits(a, &store, 2, (0, 0), t0) {
            store.put_store(&block(n)).unwrap();
            shares.stored(a, block(n).routing_key(), &store);
            n += 1;
            assert!(n < 30, "friend a was never refused");
        }
        // The store filled with 4 of a's (free room), and then a, at its
        // share, was refused: b's and the client's blocks are all there.
        assert_eq!(n - 10, 4);
        for i in (0..3).chain([100]) {
            assert!(
                store.holds_stored(&block(i).routing_key()),
                "block {i} evicted"
            );
        }
        // b, below its share, may still store: the full store evicts its
        // least recently used block, b's own first block.
        assert!(shares.admits(b, &store, 2, (0, 0), t0));
        store.put_store(&block(3)).unwrap();
        shares.stored(b, block(3).routing_key(), &store);
        assert!(!store.holds_stored(&block(0).routing_key()));
        // b's list now names 4 blocks, one of them gone: the recount finds
        // 3, below the share. a is still at its share.
        assert!(shares.admits(b, &store, 2, (0, 0), t0));
        assert!(!shares.admits(a, &store, 2, (0, 0), t0 + RECOUNT_EVERY));
        shares.forget(&a);
        assert!(shares.admits(a, &store, 2, (0, 0), t0));
    }
}
