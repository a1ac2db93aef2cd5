//! Location swapping in the simulator: routing on a swap-start graph gets
//! better after swapping, measured by the code `veil sim --experiment swap`
//! uses, and the same seed gives the same result.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use veil::sim::graphs;
use veil::sim::runner::SimOptions;
use veil::sim::swap::{converge, mean_link_length, net, rounds_time};

fn opts(seed: u64) -> SimOptions {
    SimOptions {
        nodes: 500,
        degree: 10,
        requests: 300,
        seed,
        topology: "swap".into(),
        ..SimOptions::default()
    }
}

#[test]
fn swapping_makes_greedy_routing_work() {
    let points = converge(&opts(1), &[0, 40]).unwrap();
    assert_eq!(points.len(), 3);
    let (before, after, ideal) = (&points[0], &points[1], &points[2]);
    assert_eq!(before.rounds, Some(0));
    assert_eq!(after.rounds, Some(40));
    assert_eq!(ideal.rounds, None);
    assert!(after.swaps > 0 && after.attempts >= after.swaps);
    // Friends end up closer together...
    assert!(
        after.mean_link_length < 0.7 * before.mean_link_length,
        "link length {} -> {}",
        before.mean_link_length,
        after.mean_link_length
    );
    // ...so lookups fail less often, and what is found is found in fewer
    // hops (the unswapped graph finds by stumbling on the key).
    let (b, a) = (&before.report, &after.report);
    eprintln!(
        "before: {:.3} found, {:.2} hops; after: {:.3}, {:.2}; ordered: {:.3}, {:.2}",
        b.success_rate,
        b.hops_mean,
        a.success_rate,
        a.hops_mean,
        ideal.report.success_rate,
        ideal.report.hops_mean
    );
    assert!(
        a.success_rate > b.success_rate + 0.1,
        "success {} -> {}",
        b.success_rate,
        a.success_rate
    );
    assert!(
        a.hops_mean < b.hops_mean,
        "hops {} -> {}",
        b.hops_mean,
        a.hops_mean
    );
}

#[test]
fn same_seed_same_result() {
    let one = converge(&opts(9), &[0, 5]).unwrap();
    let two = converge(&opts(9), &[0, 5]).unwrap();
    for (x, y) in one.iter().zip(&two) {
        assert_eq!(x.swaps, y.swaps);
        assert_eq!(x.mean_link_length, y.mean_link_length);
        assert_eq!(x.report.success_rate, y.report.success_rate);
        assert_eq!(x.report.hops_mean, y.report.hops_mean);
    }
    let other = converge(&opts(10), &[0, 5]).unwrap();
    assert_ne!(one[1].mean_link_length, other[1].mean_link_length);
}

#[test]
fn swap_messages_only_permute_locations() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut graph = graphs::swap_start(300, 8, &mut rng);
    let adj = graph.adj.clone();
    let mut before = graph.location.clone();
    before.sort_by(f64::total_cmp);
    let start = mean_link_length(&graph);
    let mut net = net(&graph, 4);
    net.run_until(rounds_time(10));
    assert_eq!(net.now(), rounds_time(10));
    // Let the swaps under way finish (a pair mid-swap holds one location
    // twice until the initiator hears the partner's confirmation).
    net.pause();
    net.run_until(rounds_time(12));
    net.permute(&mut graph);
    let tally = net.tally();
    // About one attempt per node per round, each a walk of messages.
    assert!(
        tally.attempts > 2_000 && tally.attempts < 4_000,
        "{tally:?}"
    );
    assert!(tally.swaps > 0 && tally.messages > 10 * tally.attempts);
    // Partners already in their own attempt refuse: the protocol's rule,
    // not the engine's.
    assert!(tally.failed > 0, "{tally:?}");
    assert_eq!(graph.adj, adj, "links never change");
    let mut after = graph.location.clone();
    after.sort_by(f64::total_cmp);
    assert_eq!(before, after, "the multiset of locations never changes");
    assert!(mean_link_length(&graph) < start);
}
