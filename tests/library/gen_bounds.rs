//! `veil testnet gen --shape random --min-degree A --max-degree B`: every
//! node's degree within the bounds, connected, deterministic, and refused
//! bounds say why.

use veil::sim::topology::{generate_bounded, DegreeBounds, Topology, TopologyError};

fn degrees(t: &Topology) -> Vec<usize> {
    t.adjacency().iter().map(Vec::len).collect()
}

fn check(n: usize, degree: usize, min: usize, max: usize, seeds: std::ops::Range<u64>) {
    let bounds = DegreeBounds { min, max };
    for seed in seeds {
        let t = generate_bounded(n, degree, bounds, seed)
            .unwrap_or_else(|e| panic!("n={n} [{min},{max}] seed {seed}: {e}"));
        assert_eq!(t.nodes.len(), n);
        assert!(t.is_connected(), "n={n} [{min},{max}] seed {seed}");
        for (i, d) in degrees(&t).into_iter().enumerate() {
            assert!(
                (min..=max).contains(&d),
                "n={n} seed {seed}: node {i} has degree {d}, not in [{min},{max}]"
            );
        }
        let back = Topology::parse(&t.to_toml()).expect("reparses");
        assert_eq!(back.edges, t.edges);
    }
}

#[test]
fn random_48_of_degree_3_to_6_over_many_seeds() {
    check(48, 4, 3, 6, 0..300);
    let t = generate_bounded(48, 4, DegreeBounds { min: 3, max: 6 }, 5).unwrap();
    assert_eq!(
        generate_bounded(48, 4, DegreeBounds { min: 3, max: 6 }, 5).unwrap(),
        t,
        "same seed, same graph"
    );
    let mean = 2.0 * t.edges.len() as f64 / 48.0;
    assert!((3.5..=4.6).contains(&mean), "mean degree {mean}");
    // Not a regular graph: the degrees do spread over the range.
    let ds = degrees(&t);
    assert!(ds.iter().min() < ds.iter().max());
}

#[test]
fn tight_and_small_bounds() {
    check(10, 3, 3, 3, 0..100); // 3-regular
    check(7, 4, 4, 4, 0..100); // 4-regular on 7 nodes
    check(5, 4, 4, 4, 0..5); // the complete graph
    check(2, 1, 1, 1, 0..5);
    check(30, 2, 2, 2, 0..50); // a cycle
    check(200, 8, 6, 10, 0..10);
}

#[test]
fn impossible_bounds_are_refused_with_the_reason() {
    let err = |n, min, max| match generate_bounded(n, 4, DegreeBounds { min, max }, 1) {
        Err(TopologyError::Generate(why)) => why,
        other => panic!("n={n} [{min},{max}] not refused: {other:?}"),
    };
    assert!(err(48, 7, 6).contains("above"));
    assert!(err(6, 3, 6).contains("at least 7 nodes"));
    assert!(err(11, 3, 3).contains("even"));
    assert!(err(10, 0, 3).contains("connected"));
    assert!(err(10, 1, 1).contains("at least 2"));
    assert!(err(1, 1, 1).contains("nodes"));
}
