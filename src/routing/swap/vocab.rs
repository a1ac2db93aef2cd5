//! The swap protocol's vocabulary: its settings, what goes into the
//! [`Swapper`](super::Swapper) and what comes out, and its counters.

use crate::keys::Location;
use crate::message::swap::{SwapMessage, WalkHtl};
use crate::routing::embed::Embedding;

/// Tunables of swapping (`[swapping]` in `node.toml`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwapConfig {
    /// Mean time between this node's attempts (each wait is drawn from
    /// `[interval/2, 3*interval/2)`).
    pub interval_ms: u64,
    /// Hops of the random walk that finds a partner (Freenet uses 10).
    pub walk_htl: WalkHtl,
    /// How long any step of an attempt may take before it is abandoned.
    pub step_timeout_ms: u64,
    /// Walks this node relays at once; more are refused.
    pub max_relays: usize,
    /// Walks this node takes from one neighbour per `interval_ms` (to
    /// answer or relay); more are refused. An honest neighbour sends about
    /// one (`routing/swap/guard.rs`).
    pub walks_per_peer: u32,
    /// Refuse to take a location in a crowded part of the circle, by the
    /// offers this node has seen (the defence against Pitch Black,
    /// `routing/swap/guard.rs`).
    pub crowding_check: bool,
    /// Start with this node's own attempts paused (it still relays and
    /// answers); a testnet resumes them over the client API. Under the
    /// tree embedding, paused means the node takes no part in the tree.
    pub paused: bool,
    /// How the node finds its location when `swap = true`: `swap`
    /// (Freenet's location swapping, this module) or `tree` (locations from
    /// a spanning tree, `routing/embed/`; the node then refuses swap walks).
    pub embedding: Embedding,
}

impl Default for SwapConfig {
    fn default() -> Self {
        SwapConfig {
            interval_ms: 30_000,
            walk_htl: 10,
            step_timeout_ms: 10_000,
            max_relays: 64,
            walks_per_peer: 8,
            crowding_check: true,
            paused: false,
            embedding: Embedding::Swap,
        }
    }
}

/// An input to the [`Swapper`].
#[derive(Clone, Debug)]
pub enum SwapEvent<P> {
    /// A swap message from a neighbour.
    Message { from: P, msg: SwapMessage },
    /// The link to a neighbour is gone.
    LinkDown { peer: P },
    /// Time passed: expire steps, maybe start an attempt.
    Tick,
}

/// An output of the [`Swapper`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapAction<P> {
    /// Send a swap message to a neighbour.
    Send { to: P, msg: SwapMessage },
    /// This node swapped: its location (already set in the router) moved.
    Swapped { from: Location, to: Location },
    /// A neighbour announced a new location (already set in the router).
    NeighbourMoved { peer: P, location: Location },
    /// A neighbour broke the swap protocol; the driver drops the link.
    Misbehaved { peer: P, reason: &'static str },
}

/// What this node's swapping came to, for `veil status`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct SwapStats {
    /// Attempts this node started.
    pub attempts: u64,
    /// Swaps done, as initiator or partner.
    pub swaps: u64,
    /// Attempts that ended in a `SwapRejected`, a bad reveal or a lost link.
    pub failed: u64,
    /// Steps that timed out (own attempts, answers and relays).
    pub timed_out: u64,
    /// Walks relayed.
    pub relayed: u64,
    /// Attempts this node answered as partner.
    pub answered: u64,
    /// Walks refused because their neighbour sent too many.
    #[serde(default)]
    pub limited: u64,
    /// Swaps refused because the location to take was crowded.
    #[serde(default)]
    pub refused_crowded: u64,
    /// Fresh random locations drawn because this node's own was crowded.
    #[serde(default)]
    pub relocated: u64,
}
