//! Location swapping (Sandberg 2006, as in Freenet's darknet), sans-IO.
//!
//! Two nodes A and B, at locations `la` and `lb`, each show the other its
//! location and its neighbours' locations (a [`SwapOffer`]). With circular
//! distance `|x − y|`:
//!
//! - `D1 = Π |la − n| over A's neighbours × Π |lb − n| over B's`,
//! - `D2 = Π |lb − n| over A's neighbours × Π |la − n| over B's`
//!   (the same with the two locations exchanged),
//!
//! and they swap if `D2 ≤ D1`, else with probability `D1 / D2` (a
//! Metropolis–Hastings step towards locations where friends sit close
//! together, which is what greedy routing needs). A swap exchanges the two
//! locations only: links stay as they are, so the multiset of locations in
//! the network never changes.
//!
//! When A and B are neighbours, each leaves the other out of its offer: the
//! A–B link's distance is `|la − lb|` before and after, so it cancels.
//!
//! Products are taken as sums of logarithms, so a node with hundreds of
//! neighbours does not underflow. Randomness is injected (`&mut dyn
//! RngCore`), time too ([`SwapSchedule`]); nothing here does I/O.
//!
//! The protocol that carries offers between two nodes is [`Swapper`]
//! (`routing/swapper.rs`): a random walk finds the partner, both sides
//! commit to a random nonce (SHA-256) before revealing it with their offer,
//! and both draw the same coin from the two nonces ([`coin_of`],
//! [`decide_with_coin`]). The simulator (`veil sim --experiment swap`) calls
//! [`decide`] directly, which is the same rule with the coin drawn from an
//! rng.

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::keys::Location;
use crate::message::swap::Nonce;
pub use crate::message::swap::MAX_SWAP_NEIGHBOURS;
use crate::routing::Time;

mod guard;
mod offers;
mod swapper;
mod vocab;
pub use guard::SwapGuard;
pub use offers::offer_commitment;
pub use swapper::Swapper;
pub use vocab::{SwapAction, SwapConfig, SwapEvent, SwapStats};

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("swap offer lists {0} neighbours (at most {MAX_SWAP_NEIGHBOURS})")]
    TooManyNeighbours(usize),
}

/// What one side of a swap shows the other: its location and its
/// neighbours' locations (its partner left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapOffer {
    location: Location,
    neighbours: Vec<Location>,
}

impl SwapOffer {
    /// An offer, refused if it lists more than [`MAX_SWAP_NEIGHBOURS`].
    pub fn new(location: Location, neighbours: Vec<Location>) -> Result<SwapOffer, SwapError> {
        if neighbours.len() > MAX_SWAP_NEIGHBOURS {
            return Err(SwapError::TooManyNeighbours(neighbours.len()));
        }
        Ok(SwapOffer {
            location,
            neighbours,
        })
    }

    /// This node's own offer: its first [`MAX_SWAP_NEIGHBOURS`] neighbours
    /// (a node with more shows no more than a peer would accept).
    pub fn own(location: Location, mut neighbours: Vec<Location>) -> SwapOffer {
        neighbours.truncate(MAX_SWAP_NEIGHBOURS);
        SwapOffer {
            location,
            neighbours,
        }
    }

    pub fn location(&self) -> Location {
        self.location
    }

    pub fn neighbours(&self) -> &[Location] {
        &self.neighbours
    }

    /// The two offers of a pair that may be neighbours, each without the
    /// other: `a` lists `b`'s location and `b` lists `a`'s exactly when they
    /// are linked (locations are 64-bit, so a chance match is negligible),
    /// and that link's length is the same before and after a swap, so it
    /// cancels. Neither side needs to learn who the other is.
    pub fn without_link(a: &SwapOffer, b: &SwapOffer) -> (SwapOffer, SwapOffer) {
        let ia = a.neighbours.iter().position(|&n| n == b.location);
        let ib = b.neighbours.iter().position(|&n| n == a.location);
        let (mut a, mut b) = (a.clone(), b.clone());
        if let (Some(ia), Some(ib)) = (ia, ib) {
            a.neighbours.swap_remove(ia);
            b.neighbours.swap_remove(ib);
        }
        (a, b)
    }
}

/// `ln Π |at − n|` over `neighbours`, distances as fractions of the circle
/// (`-inf` if some neighbour sits exactly at `at`).
pub fn log_distance_product(at: Location, neighbours: &[Location]) -> f64 {
    const CIRCLE: f64 = 18_446_744_073_709_551_616.0;
    neighbours
        .iter()
        .map(|&n| (at.distance(n) as f64 / CIRCLE).ln())
        .sum()
}

/// `ln D1` and `ln D2` for offers `a` and `b` (see the module docs).
pub fn log_products(a: &SwapOffer, b: &SwapOffer) -> (f64, f64) {
    let d1 = log_distance_product(a.location, &a.neighbours)
        + log_distance_product(b.location, &b.neighbours);
    let d2 = log_distance_product(b.location, &a.neighbours)
        + log_distance_product(a.location, &b.neighbours);
    (d1, d2)
}

/// The probability that `a` and `b` swap: 1 if `D2 ≤ D1`, else `D1 / D2`.
pub fn accept_probability(a: &SwapOffer, b: &SwapOffer) -> f64 {
    let (d1, d2) = log_products(a, b);
    if d2 <= d1 {
        1.0
    } else {
        // Distances are at most 1/2, so both logs are negative or −inf;
        // d2 > d1 makes d2 finite, so d1 − d2 is negative or −inf and its
        // exp is in [0, 1).
        (d1 - d2).exp()
    }
}

/// Do `a` and `b` swap? One Metropolis–Hastings draw from `rng`.
pub fn decide(a: &SwapOffer, b: &SwapOffer, rng: &mut dyn RngCore) -> bool {
    decide_with_coin(a, b, rng.gen::<f64>())
}

/// Do `a` and `b` swap, with `coin` uniform in `[0, 1)`? Yes if the
/// [`accept_probability`] is 1 or exceeds the coin.
pub fn decide_with_coin(a: &SwapOffer, b: &SwapOffer, coin: f64) -> bool {
    let p = accept_probability(a, b);
    p >= 1.0 || coin < p
}

/// The coin both sides of a swap draw: the first 53 bits of
/// `SHA-256(initiator's nonce ‖ partner's nonce)` as a fraction in `[0, 1)`.
/// Neither side can steer it once it has committed to its nonce.
pub fn coin_of(initiator: &Nonce, partner: &Nonce) -> f64 {
    let digest = Sha256::new()
        .chain_update(initiator)
        .chain_update(partner)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// When a node next starts a swap attempt, and what its attempts came to.
/// Time is given, never read: `due(now)` with the driver's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapSchedule {
    /// Mean time between attempts.
    pub interval: Time,
    next: Time,
    pub attempts: u64,
    pub swaps: u64,
}

impl SwapSchedule {
    /// The first attempt falls uniformly in `[now, now + interval)`, so nodes
    /// started together do not attempt in step.
    pub fn new(now: Time, interval: Time, rng: &mut dyn RngCore) -> SwapSchedule {
        let interval = interval.max(1);
        SwapSchedule {
            interval,
            next: now + rng.gen_range(0..interval),
            attempts: 0,
            swaps: 0,
        }
    }

    /// When the next attempt is due.
    pub fn next(&self) -> Time {
        self.next
    }

    /// Is an attempt due at `now`? If so, count it and schedule the next one
    /// in `[interval / 2, 3 * interval / 2)` from `now`.
    pub fn due(&mut self, now: Time, rng: &mut dyn RngCore) -> bool {
        if now < self.next {
            return false;
        }
        self.attempts += 1;
        let half = self.interval / 2;
        self.next = now + half + rng.gen_range(0..self.interval.max(1));
        true
    }

    /// Record the outcome of an attempt.
    pub fn record(&mut self, swapped: bool) {
        self.swaps += u64::from(swapped);
    }
}

#[cfg(test)]
mod tests;
