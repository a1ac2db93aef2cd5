//! Repeats of a local client's requests: another route each time.
//!
//! In the deterministic modes a request's route is a function of its key
//! and the network, so a client that asks again for a key whose get failed
//! would walk the same path and miss the same holders, and a block inserted
//! again would land on the same nodes. So this node remembers, for the last
//! [`Repeats::CAP`] keys, how many of its client's gets of that key failed
//! and how many of its inserts of it ended (gets and inserts apart); the next client request for the
//! key passes over that many of its best first hops (modulo the number of
//! neighbours) before routing as usual. Only the first hop changes: every
//! other node routes the request exactly as any other. See
//! `docs/protocol.md`, "Retries take another route".

use std::collections::VecDeque;

use crate::keys::RoutingKey;
use crate::routing::Op;

/// A request: its key, and whether it inserts.
type Asked = (bool, RoutingKey);

/// Bounded memory of recent repeats, oldest forgotten first: each key with
/// its count, in the order the keys were first noted. One small vector, not
/// a tree beside a queue: `veil sim` gives each of 100,000 routers a few
/// dozen keys, and a tree's node per router cost about 1 KB each. A
/// linear scan of at most [`Repeats::CAP`] entries per client request is
/// cheap beside the request.
#[derive(Default)]
pub(super) struct Repeats {
    entries: VecDeque<(Asked, u8)>,
}

impl Repeats {
    /// Keys remembered at once.
    pub const CAP: usize = 1024;

    fn count(&self, key: &Asked) -> Option<&u8> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    /// How many first hops a new client request (`op` of `key`) passes over.
    pub fn skip(&self, op: Op, key: RoutingKey) -> u8 {
        self.count(&(op == Op::Put, key)).copied().unwrap_or(0)
    }

    /// A client get of `key` failed, or an insert of it ended.
    pub fn note(&mut self, op: Op, key: RoutingKey) {
        let key = (op == Op::Put, key);
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count = count.saturating_add(1),
            None => {
                self.entries.push_back((key, 1));
                while self.entries.len() > Self::CAP {
                    self.entries.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats_and_forgets_the_oldest() {
        let mut r = Repeats::default();
        let key = |i: u16| {
            let mut k = [0u8; 32];
            k[..2].copy_from_slice(&i.to_be_bytes());
            RoutingKey(k)
        };
        assert_eq!(r.skip(Op::Get, key(0)), 0);
        r.note(Op::Get, key(0));
        r.note(Op::Get, key(0));
        assert_eq!(r.skip(Op::Get, key(0)), 2);
        assert_eq!(r.skip(Op::Put, key(0)), 0, "gets and inserts count apart");
        for i in 1..=Repeats::CAP as u16 {
            r.note(Op::Put, key(i));
        }
        assert_eq!(r.skip(Op::Get, key(0)), 0, "the oldest key is forgotten");
        assert_eq!(r.skip(Op::Put, key(1)), 1);
        assert_eq!(r.entries.len(), Repeats::CAP);
    }
}
