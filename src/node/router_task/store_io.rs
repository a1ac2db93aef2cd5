//! The router task's side of the datastore: reads done off the task
//! before the core sees the request that needs them, and the store's group
//! writer (a sink's answer waits until its block is durable).
//!
//! The core reads blocks synchronously ([`BlockSource::lookup`]). So that
//! the router task never waits on the disk, the task answers misses from
//! the store's in-memory key index ([`Datastore::holds`]) and, for a key
//! the index holds, reads the block on the blocking pool first and feeds the
//! request only once the block is in memory (`prefetched`). A lookup the
//! task could not foresee (a tunnel exit's, or one beyond
//! `READS_IN_FLIGHT`) of a key that is held reads inline and is counted.
//!
//! [`BlockSource::lookup`]: crate::routing::BlockSource::lookup
//! [`Datastore::holds`]: crate::store::Datastore::holds

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::RouterTask;
use crate::identity::PeerKey;
use crate::keys::{Block, RoutingKey};
use crate::message::Message;
use crate::routing::{ClientOutcome, Event};
use crate::store::{StoreError, Written};

/// Store reads running on the blocking pool at once.
pub(super) const READS_IN_FLIGHT: usize = 32;

/// What to do once a block handed to the store's writer is durable (or
/// could not be stored).
pub(super) enum AfterStore {
    /// The sink's answer to the insert: sent only once the block is
    /// durable; `InsertFailed` instead if it could not be stored.
    Reply { to: PeerKey, msg: Message },
    /// A testnet `place` waiting for its answer.
    Place(oneshot::Sender<Result<(), StoreError>>),
    /// A block stored with no answer waiting on it.
    Quiet,
}

/// What waits for a block being read off the task.
pub(super) enum Deferred {
    /// A neighbour's message that looks the key up.
    Link {
        peer: PeerKey,
        conn: u64,
        msg: Message,
    },
    /// The local client's get.
    ClientGet {
        key: RoutingKey,
        reply: oneshot::Sender<ClientOutcome>,
    },
}

/// One finished read: the block (if it was still there) and what waited.
pub(super) struct ReadDone {
    key: RoutingKey,
    block: Option<Block>,
    then: Deferred,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The key a neighbour's message makes the core look up, if any.
pub(super) fn looked_up(msg: &Message) -> Option<RoutingKey> {
    match msg {
        Message::DataRequest { key, .. } => Some(*key),
        Message::InsertRequest { key, block, .. } if block.is_signed() => Some(*key),
        _ => None,
    }
}

impl RouterTask {
    /// Carry out `then` once `key`'s block is in memory: at once if the
    /// store does not hold it (the index says so, no disk), else after a
    /// read on the blocking pool.
    pub(super) fn after_read(&mut self, key: RoutingKey, then: Deferred) {
        if !self.store.holds(&key) {
            return self.resume(then);
        }
        let Ok(permit) = self.reads.clone().try_acquire_owned() else {
            // Too many reads already: the core reads inline (counted).
            return self.resume(then);
        };
        self.reads_off_task += 1;
        let store = self.store.clone();
        let tx = self.reads_tx.clone();
        tokio::task::spawn_blocking(move || {
            let block = store.get(&key).unwrap_or_else(|e| {
                warn!(%key, error = %e, "datastore read failed; treated as a miss");
                None
            });
            let done = ReadDone {
                key,
                block,
                then,
                _permit: permit,
            };
            // The router stopped: nobody waits for this block.
            let _ = tx.blocking_send(done);
        });
    }

    /// A read finished: the core sees the request with the block in memory.
    pub(super) fn on_read(&mut self, done: ReadDone) {
        let ReadDone {
            key, block, then, ..
        } = done;
        if let Some(block) = block {
            self.prefetched.insert(key, block);
        }
        self.resume(then);
        self.prefetched.remove(&key);
    }

    fn resume(&mut self, then: Deferred) {
        match then {
            Deferred::Link { peer, conn, msg } => {
                if self.links.get(&peer).is_some_and(|l| l.conn == conn) {
                    self.feed(Event::Message { from: peer, msg });
                }
            }
            Deferred::ClientGet { key, reply } => {
                let token = self.new_token(reply);
                self.feed(Event::ClientGet { token, key });
            }
        }
    }

    /// Hand `block` to the store's writer; `after` happens once it is
    /// durable. A full queue, or a peer with too many blocks waiting there,
    /// is refused at once (`RejectedOverload`: try elsewhere).
    pub(super) fn store_block(
        &mut self,
        block: Block,
        after: AfterStore,
        broken: &mut Vec<PeerKey>,
    ) {
        let peer = match &after {
            AfterStore::Reply { to, .. } => Some(*to),
            _ => None,
        };
        // A peer may fill its share of the writer's queue: at least its
        // request limit, and half the queue (a client's put keeps up to 128
        // inserts in flight through its first hop; with replicas every relay
        // near the end of the path writes them too).
        let limit = self
            .config
            .router
            .max_inflight_per_peer
            .max(self.budget.store_queue / 2);
        if peer
            .as_ref()
            .is_some_and(|p| self.pending_writes.get(p).is_some_and(|n| *n >= limit))
        {
            debug!("peer has too many blocks waiting for the disk; refusing its insert");
            self.store_refused += 1;
            return self.refuse(after, broken);
        }
        if let Some(p) = peer {
            let friends = self.config.peers.len();
            let waiting = (
                self.pending_writes.get(&p).copied().unwrap_or(0),
                self.pending_writes.values().sum(),
            );
            let now = tokio::time::Instant::now();
            if !self.shares.admits(p, &self.store, friends, waiting, now) {
                debug!("peer holds its share of the full store; refusing its insert");
                self.store_refused += 1;
                return self.refuse(after, broken);
            }
        }
        let Some(writer) = &self.store_writer else {
            return self.answer(after, false, broken);
        };
        match writer.try_write(block, after) {
            Ok(()) => {
                if let Some(p) = peer {
                    *self.pending_writes.entry(p).or_default() += 1;
                }
            }
            Err((_, after)) => {
                debug!("store write queue full; refusing the insert");
                self.store_refused += 1;
                self.refuse(after, broken);
            }
        }
    }

    /// The writer's results: answer each insert honestly.
    pub(super) fn on_written(&mut self, batch: Vec<Written<AfterStore>>) {
        let mut broken = Vec::new();
        for w in batch {
            if let AfterStore::Reply { to, .. } = &w.tag {
                if let Some(n) = self.pending_writes.get_mut(to) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.pending_writes.remove(to);
                    }
                }
            }
            if w.stored {
                if let AfterStore::Reply { to, .. } = &w.tag {
                    self.shares.stored(*to, w.key, &self.store);
                }
                if let Some(a) = &mut self.audit {
                    a.block_stored(&w.key);
                }
            } else {
                warn!(key = %w.key, "block not stored; the insert is answered InsertFailed");
            }
            self.answer(w.tag, w.stored, &mut broken);
        }
        for peer in broken {
            self.drop_link(peer);
        }
    }

    /// Answer what waited on a store write: the core's answer if the block
    /// is durable, `InsertFailed` otherwise.
    fn answer(&mut self, after: AfterStore, stored: bool, broken: &mut Vec<PeerKey>) {
        match after {
            AfterStore::Reply { to, msg } if stored => self.send(to, msg, broken),
            AfterStore::Reply { to, msg } => {
                let uid = msg.uid();
                self.send(to, Message::InsertFailed { uid }, broken);
            }
            AfterStore::Place(reply) => {
                let _ = reply.send(match stored {
                    true => Ok(()),
                    false => Err(StoreError::NotStored),
                });
            }
            AfterStore::Quiet => {}
        }
    }

    /// Refuse what waited on a store write that was not even queued.
    fn refuse(&mut self, after: AfterStore, broken: &mut Vec<PeerKey>) {
        match after {
            AfterStore::Reply { to, msg } => {
                let uid = msg.uid();
                self.send(to, Message::RejectedOverload { uid }, broken);
            }
            AfterStore::Place(reply) => {
                let _ = reply.send(Err(StoreError::Busy));
            }
            AfterStore::Quiet => debug!("store write queue full; block not stored"),
        }
    }
}
