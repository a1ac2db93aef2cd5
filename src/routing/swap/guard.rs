//! What a node does against dishonest swappers (the Pitch Black attack,
//! Evans, GauthierDickey and Grothoff, ACSAC 2007): a per-neighbour limit
//! on swap walks, and a sample of the locations this node has seen in
//! swap offers, so that it refuses to take a location from a part of the
//! circle that is already crowded.
//!
//! An attacker that keeps handing out locations near a few points of its
//! choice, and never takes the locations it is given, pulls honest nodes'
//! locations into clusters and leaves the rest of the circle empty. The
//! swap rule cannot tell: each swap looks fine on its own. Two limits here
//! bound what it can do:
//!
//! - **Walks per neighbour.** A node answers or relays at most
//!   [`SwapConfig::walks_per_peer`] walks from one neighbour per
//!   [`SwapConfig::interval_ms`] (an honest neighbour sends about one:
//!   its own attempt now and then, and its share of the walks it relays),
//!   so an attacker cannot start walks faster than its links allow.
//! - **Crowding.** Every offer a node sees (as initiator, partner or relay)
//!   adds the offer's location to a sample of the last [`SAMPLE`]. Before
//!   taking a location `L` the node counts the sample within each of
//!   [`SCALES`] of `L`; if one holds a count that a uniform spread would
//!   reach with probability below [`FALSE_ALARM`], it refuses. The finest
//!   scale catches many small clusters (two locations a millionth of the
//!   circle apart), the coarse ones a few large ones.
//! - **Relocation.** A node whose own location is crowded, by the same
//!   test, draws a fresh random one when its next attempt is due, instead
//!   of attempting: the nodes a cluster took go back to the whole circle.
//!   (Freenet resets every node's location now and then, blindly; this
//!   resets only on evidence, so honest convergence is left alone.) Honest locations stay a permutation
//!   of uniform draws, so they are never crowded; a cluster that an
//!   attacker builds shows up in the offers of the nodes it moved.

use std::collections::{BTreeMap, VecDeque};

use crate::keys::Location;
use crate::routing::{PeerId, Time};

/// Locations kept in the sample.
pub const SAMPLE: usize = 256;
/// The sample must hold this many before crowding is judged.
pub const SAMPLE_MIN: usize = 64;
/// Crowding is judged at these half-widths (fractions of the circle),
/// centred on the location to be taken: from about a millionth of the
/// circle, where two honest locations almost never meet, to a sixty-fourth.
pub const SCALES: [f64; 5] = [
    1.0 / 1_048_576.0,
    1.0 / 65_536.0,
    1.0 / 4_096.0,
    1.0 / 256.0,
    1.0 / 64.0,
];
/// A window is crowded when a uniform spread would put that many sample
/// locations in it with probability below this (Poisson tail).
pub const FALSE_ALARM: f64 = 1e-4;

/// A node's defences, beside its [`Swapper`](super::Swapper).
#[derive(Clone, Debug, Default)]
pub struct SwapGuard<P: PeerId> {
    /// Per neighbour: the start of its current window and walks taken in it.
    walks: BTreeMap<P, (Time, u32)>,
    seen: VecDeque<Location>,
}

impl<P: PeerId> SwapGuard<P> {
    pub fn new() -> Self {
        SwapGuard {
            walks: BTreeMap::new(),
            seen: VecDeque::with_capacity(SAMPLE),
        }
    }

    /// May `peer` hand this node one more walk at `now`? Counts it if so.
    pub fn take_walk(&mut self, peer: &P, now: Time, interval: Time, limit: u32) -> bool {
        let entry = self.walks.entry(peer.clone()).or_insert((now, 0));
        if now >= entry.0.saturating_add(interval.max(1)) {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// The link to `peer` is gone.
    pub fn forget(&mut self, peer: &P) {
        self.walks.remove(peer);
    }

    /// An offer's location seen on a walk (once: a node seen again adds
    /// nothing).
    pub fn saw(&mut self, location: Location) {
        if self.seen.contains(&location) {
            return;
        }
        if self.seen.len() == SAMPLE {
            self.seen.pop_front();
        }
        self.seen.push_back(location);
    }

    /// Is `location` in a crowded part of the circle, by the sample? The
    /// location itself is not counted (it may be a node seen before).
    pub fn crowded(&self, location: Location) -> bool {
        let n = self.seen.len();
        if n < SAMPLE_MIN {
            return false;
        }
        const CIRCLE: f64 = 18_446_744_073_709_551_616.0;
        SCALES.iter().any(|&half| {
            let reach = (half * CIRCLE) as u64;
            let near = self
                .seen
                .iter()
                .filter(|&&l| l != location && l.distance(location) <= reach)
                .count();
            near >= alarm(n as f64 * 2.0 * half)
        })
    }

    /// Locations in the sample.
    pub fn sampled(&self) -> usize {
        self.seen.len()
    }
}

/// The least count `k` with `P(Poisson(mean) >= k) < FALSE_ALARM`.
fn alarm(mean: f64) -> usize {
    let (mut term, mut below) = ((-mean).exp(), 0.0);
    for k in 0..10_000usize {
        if 1.0 - below < FALSE_ALARM {
            return k;
        }
        below += term;
        term *= mean / (k + 1) as f64;
    }
    usize::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_gets_its_limit_per_interval() {
        let mut g: SwapGuard<u32> = SwapGuard::new();
        assert!((0..3).all(|_| g.take_walk(&1, 0, 1000, 3)));
        assert!(!g.take_walk(&1, 999, 1000, 3));
        assert!(
            g.take_walk(&2, 999, 1000, 3),
            "another neighbour has its own"
        );
        assert!(g.take_walk(&1, 1000, 1000, 3), "a new interval");
    }

    #[test]
    fn a_uniform_sample_is_never_crowded_and_a_cluster_is() {
        let mut g: SwapGuard<u32> = SwapGuard::new();
        assert!(!g.crowded(Location::from_f64(0.5)), "too few to judge");
        for i in 0..SAMPLE {
            g.saw(Location::from_f64(i as f64 / SAMPLE as f64));
        }
        assert!((0..100).all(|i| !g.crowded(Location::from_f64(i as f64 / 100.0))));
        // A third of the sample pulled to 0.25: crowded there, not opposite.
        for i in 0..SAMPLE / 3 {
            g.saw(Location::from_f64(0.25 + i as f64 * 1e-5));
        }
        assert!(g.crowded(Location::from_f64(0.251)));
        assert!(!g.crowded(Location::from_f64(0.75)));
        // Two locations a hair apart among a uniform sample: crowded there
        // (the finest window), and a location seen twice counts once.
        let mut g: SwapGuard<u32> = SwapGuard::new();
        for i in 0..SAMPLE - 2 {
            g.saw(Location::from_f64((i as f64 + 0.5) / SAMPLE as f64));
        }
        g.saw(Location::from_f64(0.3));
        g.saw(Location::from_f64(0.3));
        assert!(!g.crowded(Location::from_f64(0.3000001)));
        g.saw(Location::from_f64(0.30000005));
        assert!(g.crowded(Location::from_f64(0.3000001)));
        assert!(!g.crowded(Location::from_f64(0.7)));
        assert_eq!(alarm(0.0), 1);
        assert!(alarm(8.0) > 16 && alarm(8.0) < 24, "{}", alarm(8.0));
    }
}
