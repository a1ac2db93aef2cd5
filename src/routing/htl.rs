//! Hops-to-live policies: how much search budget a request starts with and
//! how much a node keeps when it accepts one.
//!
//! The policy is a pluggable part of the routing core so that later policies
//! (randomised decrement at the maximum, a random-walk prefix) can replace the
//! deterministic one without touching the routing rules.

use rand::RngCore;

use crate::message::Htl;

/// Decides hops-to-live at the two points where the core needs a number.
pub trait HtlPolicy: Send {
    /// The budget (and so the HTL of the first `DataRequest`) of a request
    /// this node originates for its local client.
    fn originate(&mut self, max_htl: Htl, rng: &mut dyn RngCore) -> Htl;

    /// The budget a node keeps after accepting a request that arrived with
    /// `received` (already clamped to `max_htl`). Zero means "answer now".
    fn accept(&mut self, received: Htl, max_htl: Htl, rng: &mut dyn RngCore) -> Htl;

    /// A short name for reports.
    fn name(&self) -> &'static str;
}

/// Freenet's classic rule: the originator spends `max_htl`, every node that
/// accepts a request decrements by one. Easy to reason about, and it leaks:
/// a request arriving with `htl == max_htl` came straight from its originator.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeterministicHtl;

impl HtlPolicy for DeterministicHtl {
    fn originate(&mut self, max_htl: Htl, _rng: &mut dyn RngCore) -> Htl {
        max_htl
    }

    fn accept(&mut self, received: Htl, _max_htl: Htl, _rng: &mut dyn RngCore) -> Htl {
        received.saturating_sub(1)
    }

    fn name(&self) -> &'static str {
        "deterministic"
    }
}
