//! The originator's side of cells coming back: opening them, and what each
//! answer does to the tunnel and its sessions.

use super::onion;
use crate::keys::Block;
use crate::message::{Cell, Sealed, TunnelId, TunnelOutcome};
use crate::routing::{Action, ClientOutcome, Ctx, Failure, PeerId, Router, SessionRequest};

fn failure_of(outcome: TunnelOutcome) -> ClientOutcome {
    ClientOutcome::Failed(match outcome {
        TunnelOutcome::Inserted => return ClientOutcome::Inserted,
        TunnelOutcome::DataNotFound => Failure::DataNotFound,
        TunnelOutcome::RouteNotFound => Failure::RouteNotFound,
        TunnelOutcome::Timeout => Failure::Timeout,
        TunnelOutcome::Overloaded => Failure::Overloaded,
        TunnelOutcome::NoPeers => Failure::NoPeers,
        TunnelOutcome::Collision => Failure::Collision,
        TunnelOutcome::BadBlock => Failure::BadBlock,
        TunnelOutcome::NotStored => Failure::NotStored,
    })
}

impl<P: PeerId> Router<P> {
    /// A cell came back on the client's tunnel.
    pub(super) fn client_reply(
        &mut self,
        cx: &mut Ctx<'_, P>,
        from: P,
        tunnel: TunnelId,
        mut cell: Cell,
    ) {
        let now = cx.now;
        let Some(t) = self.tunnels.client.matches(&from, tunnel) else {
            return;
        };
        t.last_heard = now;
        let last = t.path.len().saturating_sub(1);
        let opened = onion::open_backward(&mut t.path, cell.as_mut_bytes());
        self.tunnels.client.last_back = Some(now);
        let sealed = opened.and_then(|hop| {
            let s = Sealed::from_cell_bytes(cell.as_bytes()).ok()?;
            // Only the last hop speaks: the exit, or the hop extending.
            (hop == last).then_some(s)
        });
        match sealed {
            Some(Sealed::Extended { ephemeral }) => self.hop_added(cx, now, ephemeral),
            Some(Sealed::ExtendFailed) => self.extend_failed(cx),
            Some(Sealed::Data { index, block }) => self.item_answered(cx, index, Ok(block)),
            Some(Sealed::Outcome { index, outcome }) => self.item_answered(cx, index, Err(outcome)),
            // A cell that opens nowhere, or that the hop had no business
            // sending: the tunnel cannot be trusted.
            _ => self.break_tunnel(cx, true),
        }
    }

    /// The exit answered the `index`-th item.
    fn item_answered(
        &mut self,
        cx: &mut Ctx<'_, P>,
        index: u32,
        answer: Result<Block, TunnelOutcome>,
    ) {
        let Some(t) = self.tunnels.client.current.as_mut() else {
            return;
        };
        let Some((token, i)) = t.pending.remove(&index) else {
            return;
        };
        let Some(session) = self.tunnels.client.sessions.get_mut(&token) else {
            return;
        };
        let is_put = matches!(session.request, SessionRequest::Put(_));
        if is_put {
            t.puts_out = t.puts_out.saturating_sub(1);
        }
        let outcome = match (answer, &session.request) {
            (Ok(block), SessionRequest::Get(keys))
                if keys.get(i).is_some_and(|k| block.verify(k).is_ok()) =>
            {
                cx.out.push(Action::ClientCacheBlock {
                    block: block.clone(),
                });
                ClientOutcome::Found(block)
            }
            (Err(TunnelOutcome::Inserted), SessionRequest::Get(_)) | (Ok(_), _) => {
                // A wrong block, or an answer of the wrong kind: the exit
                // cannot be trusted; the item waits for the next tunnel.
                session.unsent.push_front(i);
                return self.break_tunnel(cx, true);
            }
            (Err(outcome), _) => failure_of(outcome),
        };
        if let Some(slot) = session.outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
        self.answer_if_done(cx, token);
        self.wake(cx);
    }
}
