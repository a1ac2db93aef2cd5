//! The exit: it numbers the keys and blocks it opens on a tunnel (from 0,
//! in the order they arrive), keeps at most `exit_window` of them searching
//! at once through this router's own search pool (as the local client's
//! requests), and streams each answer back the moment it has it. The
//! window lives here, not at the originator: the originator sends what it
//! wants and never waits on a block to ask for the next.

use std::collections::VecDeque;

use super::HopId;
use crate::keys::{Block, RoutingKey, BLOCK_LEN, SSK_BLOCK_LEN};
use crate::message::{Sealed, TunnelOutcome};
use crate::routing::search::{Origin, Request, Search};
use crate::routing::{Action, ClientOutcome, Ctx, Failure, PeerId, Router};

/// Answers an exit holds during one send, at most (each may be a block).
pub(super) const MAX_HELD: usize = 64;

/// A search the exit runs for a tunnel: which tunnel, which of its items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitJob {
    pub(super) hop: HopId,
    index: u32,
}

/// What one tunnel's exit has to fetch or insert.
#[derive(Debug, Default)]
pub(super) struct ExitQueue {
    /// The number the next item opened gets.
    next_index: u32,
    waiting: VecDeque<(u32, Request)>,
    /// Of `waiting`, the blocks to insert.
    waiting_puts: usize,
    running: usize,
    /// The originator's send is still arriving: answers wait in `held`, so
    /// that no cell goes back while cells of one send come forward (a relay
    /// nearer the exit would see answers inside the send, one nearer the
    /// originator would not: a sign of its position). At most
    /// [`MAX_HELD`] wait; past that they all go, and the rest of the send
    /// is answered as it comes.
    pub(super) holding: bool,
    pub(super) held: Vec<Sealed>,
}

impl ExitQueue {
    /// Nothing waiting and nothing running.
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }
}

fn outcome_sealed(index: u32, outcome: ClientOutcome) -> Sealed {
    let outcome = match outcome {
        ClientOutcome::Found(block) => return Sealed::Data { index, block },
        ClientOutcome::Inserted => TunnelOutcome::Inserted,
        ClientOutcome::Failed(Failure::DataNotFound) => TunnelOutcome::DataNotFound,
        ClientOutcome::Failed(Failure::RouteNotFound) => TunnelOutcome::RouteNotFound,
        ClientOutcome::Failed(Failure::Timeout) => TunnelOutcome::Timeout,
        ClientOutcome::Failed(Failure::Overloaded) => TunnelOutcome::Overloaded,
        ClientOutcome::Failed(Failure::NoPeers) => TunnelOutcome::NoPeers,
        ClientOutcome::Failed(Failure::Collision) => TunnelOutcome::Collision,
        ClientOutcome::Failed(Failure::BadBlock) => TunnelOutcome::BadBlock,
        ClientOutcome::Failed(Failure::NotStored) => TunnelOutcome::NotStored,
    };
    Sealed::Outcome { index, outcome }
}

impl<P: PeerId> Router<P> {
    /// Keys opened at this exit.
    pub(super) fn exit_get(
        &mut self,
        cx: &mut Ctx<'_, P>,
        id: HopId,
        keys: Vec<RoutingKey>,
        more: bool,
    ) {
        self.exit_hold(cx, id, more);
        if let Some(hop) = self.tunnels.hops.get(&id) {
            cx.out.push(Action::TunnelExit {
                from: hop.up.0.clone(),
                tunnel: hop.up.1,
                keys: keys.clone(),
            });
        }
        for key in keys {
            self.exit_enqueue(cx, id, Request::Get { key });
        }
        self.exit_pump(cx, id);
        self.exit_release(cx, id, more);
    }

    /// A block opened at this exit, to insert.
    pub(super) fn exit_put(&mut self, cx: &mut Ctx<'_, P>, id: HopId, block: Block, more: bool) {
        self.exit_hold(cx, id, more);
        if let Some(hop) = self.tunnels.hops.get(&id) {
            cx.out.push(Action::TunnelExit {
                from: hop.up.0.clone(),
                tunnel: hop.up.1,
                keys: vec![block.routing_key()],
            });
        }
        let len = block.as_bytes().len();
        let wire = len == BLOCK_LEN || len == SSK_BLOCK_LEN;
        if !wire && !self.stand_in_blocks {
            // No neighbour would take it: refused here, numbered all the same.
            let refused = Request::Put { block };
            self.exit_enqueue_refused(cx, id, refused);
            return self.exit_release(cx, id, more);
        }
        self.exit_enqueue(cx, id, Request::Put { block });
        self.exit_pump(cx, id);
        self.exit_release(cx, id, more);
    }

    /// A cell of a send opened: hold answers while more of it follows.
    fn exit_hold(&mut self, _cx: &mut Ctx<'_, P>, id: HopId, more: bool) {
        if let Some(hop) = self.tunnels.hops.get_mut(&id) {
            hop.exit.holding |= more;
        }
    }

    /// The send's last cell was opened: send what was held, in order.
    fn exit_release(&mut self, cx: &mut Ctx<'_, P>, id: HopId, more: bool) {
        if more {
            return;
        }
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        hop.exit.holding = false;
        let held = std::mem::take(&mut hop.exit.held);
        for sealed in held {
            self.send_back(cx, id, &sealed);
        }
    }

    /// Number an item; one past the queue's bound is refused at once.
    ///
    /// What waits is bounded by what an honest originator has outstanding:
    /// `window` keys, or `put_window` blocks (a block waiting holds its
    /// 32 KiB). One more is answered `Overloaded` at once.
    fn exit_enqueue(&mut self, cx: &mut Ctx<'_, P>, id: HopId, request: Request) {
        let config = &self.config.tunnel;
        let is_put = matches!(request, Request::Put { .. });
        let bound = if is_put {
            config.put_window
        } else {
            config.window
        };
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        let index = hop.exit.next_index;
        hop.exit.next_index = hop.exit.next_index.saturating_add(1);
        let puts = hop.exit.waiting_puts;
        let waiting = if is_put {
            puts
        } else {
            hop.exit.waiting.len().saturating_sub(puts)
        };
        if waiting >= bound {
            let refused = ClientOutcome::Failed(Failure::Overloaded);
            return self.send_back(cx, id, &outcome_sealed(index, refused));
        }
        hop.exit.waiting_puts += usize::from(is_put);
        hop.exit.waiting.push_back((index, request));
    }

    /// Number an item the exit will not insert, and say so.
    fn exit_enqueue_refused(&mut self, cx: &mut Ctx<'_, P>, id: HopId, _request: Request) {
        let Some(hop) = self.tunnels.hops.get_mut(&id) else {
            return;
        };
        let index = hop.exit.next_index;
        hop.exit.next_index = hop.exit.next_index.saturating_add(1);
        let refused = ClientOutcome::Failed(Failure::BadBlock);
        self.send_back(cx, id, &outcome_sealed(index, refused));
    }

    /// Start waiting items while the exit's window has room.
    fn exit_pump(&mut self, cx: &mut Ctx<'_, P>, id: HopId) {
        let window = self.config.tunnel.exit_window.max(1);
        loop {
            let Some(hop) = self.tunnels.hops.get_mut(&id) else {
                return;
            };
            if hop.exit.running >= window {
                return;
            }
            let Some((index, request)) = hop.exit.waiting.pop_front() else {
                return;
            };
            if matches!(request, Request::Put { .. }) {
                hop.exit.waiting_puts = hop.exit.waiting_puts.saturating_sub(1);
            }
            hop.exit.running += 1;
            // An answer at once (the store, a refusal) frees its slot here,
            // not through `exit_answer`, so a long run of them is a loop
            // and not a recursion.
            if let Some(out) = self.exit_start(cx, ExitJob { hop: id, index }, request) {
                if let Some(hop) = self.tunnels.hops.get_mut(&id) {
                    hop.exit.running = hop.exit.running.saturating_sub(1);
                }
                self.send_back(cx, id, &outcome_sealed(index, out));
            }
        }
    }

    /// Run one key or block through this router's search pool; the answer
    /// when there is one at once.
    fn exit_start(
        &mut self,
        cx: &mut Ctx<'_, P>,
        job: ExitJob,
        request: Request,
    ) -> Option<ClientOutcome> {
        if let Request::Get { key } = &request {
            if let Some(found) = cx.store.lookup(key) {
                return Some(ClientOutcome::Found(found));
            }
        }
        if let Some(refused) = self.refuse_put(cx, &request) {
            return Some(ClientOutcome::Failed(refused));
        }
        if self.searches.len() >= self.config.max_pending {
            return Some(ClientOutcome::Failed(Failure::Overloaded));
        }
        let uid = self.fresh_uid(cx);
        let budget = self.originate_budget(cx);
        // The token is never seen: the exit job takes the answer.
        let search = Search::new(uid, request, Origin::Client(0), budget);
        self.tunnels.exit_jobs.insert((uid, search.key()), job);
        self.start(cx, uid, search);
        None
    }

    /// An exit search ended: stream its answer back, and start the next.
    pub(in crate::routing) fn exit_answer(
        &mut self,
        cx: &mut Ctx<'_, P>,
        job: ExitJob,
        out: ClientOutcome,
    ) {
        let Some(hop) = self.tunnels.hops.get_mut(&job.hop) else {
            return;
        };
        hop.exit.running = hop.exit.running.saturating_sub(1);
        self.send_back(cx, job.hop, &outcome_sealed(job.index, out));
        self.exit_pump(cx, job.hop);
    }
}
