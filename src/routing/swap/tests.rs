use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

fn loc(x: f64) -> Location {
    Location::from_f64(x)
}

fn offer(at: f64, neighbours: &[f64]) -> SwapOffer {
    SwapOffer::new(loc(at), neighbours.iter().map(|&x| loc(x)).collect()).unwrap()
}

#[test]
fn swaps_always_when_it_brings_friends_closer() {
    // A sits among B's friends and B among A's: exchanging helps both.
    let a = offer(0.1, &[0.8, 0.85]);
    let b = offer(0.9, &[0.15, 0.05]);
    let (d1, d2) = log_products(&a, &b);
    assert!((d1.exp() - 0.3 * 0.25 * 0.25 * 0.15).abs() < 1e-12);
    assert!((d2.exp() - 0.1 * 0.05 * 0.05 * 0.05).abs() < 1e-12);
    assert_eq!(accept_probability(&a, &b), 1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert!((0..100).all(|_| decide(&a, &b, &mut rng)));
}

#[test]
fn swaps_rarely_when_it_scatters_friends() {
    // The same two nodes already well placed: D1 / D2 = 1.25e-5 / 2.8125e-3.
    let a = offer(0.9, &[0.8, 0.85]);
    let b = offer(0.1, &[0.15, 0.05]);
    let p = accept_probability(&a, &b);
    assert!((p - 1.25e-5 / 2.8125e-3).abs() < 1e-9, "p = {p}");
}

#[test]
fn accepts_with_probability_d1_over_d2() {
    // D1 = 0.25 * 0.125, D2 = 0.25 * 0.375: p = 1/3.
    let a = offer(0.0, &[0.25]);
    let b = offer(0.5, &[0.375]);
    let p = accept_probability(&a, &b);
    assert!((p - 1.0 / 3.0).abs() < 1e-12, "p = {p}");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let trials = 30_000;
    let yes = (0..trials).filter(|_| decide(&a, &b, &mut rng)).count();
    let freq = yes as f64 / trials as f64;
    assert!((freq - 1.0 / 3.0).abs() < 0.015, "freq = {freq}");
}

#[test]
fn distance_is_circular() {
    // 0.95 and 0.05 are 0.1 apart round the circle, not 0.9.
    assert!((log_distance_product(loc(0.95), &[loc(0.05)]).exp() - 0.1).abs() < 1e-12);
    // A at 0.95 with a friend at 0.05, B at 0.5 with a friend at 0.45:
    // both are already close; exchanging would scatter them.
    let a = offer(0.95, &[0.05]);
    let b = offer(0.5, &[0.45]);
    let p = accept_probability(&a, &b);
    assert!((p - (0.1 * 0.05) / (0.45 * 0.5)).abs() < 1e-9, "p = {p}");
}

#[test]
fn a_friend_at_the_same_place_blocks_a_swap_away_from_it() {
    // D1 = 0: nothing is closer, so a swap that moves away never happens.
    let a = offer(0.2, &[0.2]);
    let b = offer(0.7, &[0.6]);
    assert_eq!(accept_probability(&a, &b), 0.0);
    // And one towards it always does (D2 = 0 ≤ D1).
    let a = offer(0.7, &[0.2]);
    let b = offer(0.2, &[0.6]);
    assert_eq!(accept_probability(&a, &b), 1.0);
}

#[test]
fn swapping_never_changes_the_multiset_of_locations() {
    // A ring of 40 with shuffled locations, random pairs, many attempts.
    use rand::seq::SliceRandom;
    let n = 40;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut location: Vec<Location> = (0..n).map(|i| loc(i as f64 / n as f64)).collect();
    location.shuffle(&mut rng);
    let mut before = location.clone();
    before.sort();
    let friends = |i: usize| [(i + 1) % n, (i + n - 1) % n, (i + 7) % n, (i + n - 7) % n];
    let mut swaps = 0;
    for _ in 0..2_000 {
        let a = rng.gen_range(0..n);
        let b = rng.gen_range(0..n);
        if a == b {
            continue;
        }
        let side = |me: usize, other: usize| {
            let ns = friends(me)
                .into_iter()
                .filter(|&f| f != other)
                .map(|f| location[f])
                .collect();
            SwapOffer::new(location[me], ns).unwrap()
        };
        if decide(&side(a, b), &side(b, a), &mut rng) {
            location.swap(a, b);
            swaps += 1;
        }
    }
    assert!(swaps > 0);
    let mut after = location.clone();
    after.sort();
    assert_eq!(before, after);
}

#[test]
fn refuses_an_oversized_offer() {
    let many = vec![loc(0.5); MAX_SWAP_NEIGHBOURS + 1];
    assert_eq!(
        SwapOffer::new(loc(0.1), many),
        Err(SwapError::TooManyNeighbours(MAX_SWAP_NEIGHBOURS + 1))
    );
}

#[test]
fn schedule_fires_once_per_interval_or_so() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut s = SwapSchedule::new(0, 1_000, &mut rng);
    assert!(s.next() < 1_000);
    let mut fired = 0;
    for now in (0..100_000).step_by(10) {
        if s.due(now, &mut rng) {
            fired += 1;
            s.record(fired % 2 == 0);
        }
    }
    assert_eq!(s.attempts, fired);
    assert_eq!(s.swaps, fired / 2);
    // Mean gap is the interval: about 100 attempts in 100 intervals.
    assert!((70..=130).contains(&fired), "fired {fired}");
    assert!(!s.due(s.next() - 1, &mut rng));
}
