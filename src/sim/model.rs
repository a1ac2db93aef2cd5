//! What every system `veil sim` measures answers to: veil's own router and
//! the lecture's baselines (`sim/baselines/`) are each a [`Model`], run on
//! the same [`Graph`] (where the system uses one), the same keys and the
//! same lookups, and reported with the same figures.
//!
//! Keys are 64-bit identifiers, uniform on the circle `[0, 2^64)`; a system
//! maps them onto its own space (a ring position, a prefix, a CAN point, a
//! veil routing key) under its own rules.

use rand::RngCore;
use std::borrow::Cow;

/// A node's index, `0..nodes`.
pub type NodeIx = u32;

/// An undirected friend graph with a location per node in `[0, 1)`, as the
/// topology generators draw it. Systems that build their own overlay
/// (Napster, Chord, Pastry, CAN, Kazaa) use only `nodes()`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Neighbours of each node, each list sorted, no self-loops, symmetric.
    pub adj: Vec<Vec<NodeIx>>,
    /// Each node's location on the unit circle.
    pub location: Vec<f64>,
}

impl Graph {
    /// How many nodes.
    pub fn nodes(&self) -> usize {
        self.adj.len()
    }
}

/// What one lookup cost and found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The value came back to the requester.
    pub found: bool,
    /// Overlay hops on the path that found it (for a failed lookup, the
    /// hops spent before giving up).
    pub hops: u32,
    /// Every message the lookup caused, replies included.
    pub messages: u64,
    /// Some node other than the requester can name the requester with
    /// certainty, under the model's own rules (the Napster index always can;
    /// a Chord node answering an iterative lookup can; a Freenet neighbour
    /// cannot unless the anonymity mode leaks it).
    pub requester_exposed: bool,
}

/// One simulated system.
pub trait Model {
    /// The name `--system` uses.
    fn name(&self) -> &'static str;
    /// How many nodes (failed ones included).
    fn nodes(&self) -> usize;
    /// Publish `key` from node `from`: place it at its responsible node or
    /// holder, or index it, under the system's rules.
    fn insert(&mut self, from: NodeIx, key: u64, rng: &mut dyn RngCore);
    /// Look `key` up from node `from`.
    fn lookup(&mut self, from: NodeIx, key: u64, rng: &mut dyn RngCore) -> Lookup;
    /// Messages each node has handled (sent or received) so far (borrowed
    /// where the model keeps them in one table).
    fn load(&self) -> Cow<'_, [u64]>;
    /// Take these nodes out: they answer nothing and hold nothing any more.
    /// The survivors keep their routing state (no repair), as a sudden
    /// failure leaves it.
    fn fail(&mut self, nodes: &[NodeIx]);
    /// Churn: `node` goes offline (it answers nothing, keeps what it
    /// holds) or comes back. A system without its own notion of rejoining
    /// treats a departure as a failure and ignores the return.
    fn set_online(&mut self, node: NodeIx, online: bool) {
        if !online {
            self.fail(&[node]);
        }
    }
}
