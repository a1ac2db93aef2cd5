//! Admission of inbound link handshakes: a bounded number at once, a few
//! per source address, and slots that only friends' addresses may use.
//!
//! A connection from an address no friend is configured at may hold one of
//! the first `max_handshakes - reserved_handshakes` slots, and at most
//! `max_handshakes_per_source` from one IP address. A connection from a
//! friend's IP address may use every slot, the reserved ones included, up
//! to `max_handshakes_per_source` for each friend configured at that
//! address (friends behind one NAT, or a testnet on loopback, share one).
//! A connection that finds no slot is closed at once, without a byte.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::link::LinkConfig;

/// Why a connection got no handshake slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoSlot {
    /// Every slot open to this connection is taken.
    Full,
    /// Its address already has its share of handshakes in progress.
    Source,
}

/// The handshake slots of one node.
pub(super) struct HandshakeSlots {
    max: usize,
    reserved: usize,
    per_source: usize,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One handshake slot; given back when dropped.
pub(super) struct Slot {
    slots: Arc<HandshakeSlots>,
    ip: IpAddr,
}

impl HandshakeSlots {
    pub(super) fn new(cfg: &LinkConfig) -> Arc<HandshakeSlots> {
        Arc::new(HandshakeSlots {
            max: cfg.max_handshakes,
            reserved: cfg.reserved_handshakes.min(cfg.max_handshakes),
            per_source: cfg.max_handshakes_per_source,
            taken: Mutex::default(),
        })
    }

    /// A slot for a connection from `ip`, where `friends` configured
    /// friends are.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr, friends: usize) -> Result<Slot, NoSlot> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let open = if friends > 0 {
            self.max
        } else {
            self.max - self.reserved
        };
        if taken.total >= open {
            return Err(NoSlot::Full);
        }
        let share = self.per_source.saturating_mul(friends.max(1));
        let from_ip = taken.by_source.entry(ip).or_insert(0);
        if *from_ip >= share {
            return Err(NoSlot::Source);
        }
        *from_ip += 1;
        taken.total += 1;
        Ok(Slot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        taken.total = taken.total.saturating_sub(1);
        if let Some(n) = taken.by_source.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.by_source.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, reserved: usize, per_source: usize) -> Arc<HandshakeSlots> {
        HandshakeSlots::new(&LinkConfig {
            max_handshakes: max,
            reserved_handshakes: reserved,
            max_handshakes_per_source: per_source,
            ..LinkConfig::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn strangers_get_a_few_each_and_never_the_reserved_slots() {
        let s = slots(6, 2, 2);
        let a: Vec<_> = (0..2).map(|_| s.take(ip(1), 0).unwrap()).collect();
        assert_eq!(s.take(ip(1), 0).err(), Some(NoSlot::Source));
        let b: Vec<_> = (0..2).map(|_| s.take(ip(2), 0).unwrap()).collect();
        // Four taken: the two left are a friend's.
        assert_eq!(s.take(ip(3), 0).err(), Some(NoSlot::Full));
        let f1 = s.take(ip(9), 1).unwrap();
        let f2 = s.take(ip(9), 1).unwrap();
        assert_eq!(s.take(ip(9), 1).err(), Some(NoSlot::Full));
        drop((f1, f2));
        // A slot given back is free again; so is the source's share.
        drop(a);
        assert!(s.take(ip(1), 0).is_ok());
        drop(b);
        assert_eq!(s.taken.lock().unwrap().by_source.len(), 0);
    }

    #[test]
    fn an_address_with_several_friends_gets_a_share_for_each() {
        let s = slots(64, 16, 2);
        let held: Vec<_> = (0..6).map(|_| s.take(ip(7), 3).unwrap()).collect();
        assert_eq!(s.take(ip(7), 3).err(), Some(NoSlot::Source));
        assert_eq!(held.len(), 6);
    }
}
