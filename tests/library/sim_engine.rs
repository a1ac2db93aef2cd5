//! `veil sim`'s engine: the same core as the harness (the lecture's trace),
//! same seed same result, the graph generators' shapes, small runs that
//! find their keys, and the CLI contract.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use veil::audit::trace::format_trace_line;
use veil::routing::{Anonymity, Lookahead, RouterConfig};
use veil::sim::engine::{Engine, Latency};
use veil::sim::graphs::{self, is_connected, mean_degree};
use veil::sim::harness::{block_near, run_scenario_in};
use veil::sim::model::NodeIx;
use veil::sim::runner::{self, SimOptions, SimReport};
use veil::sim::topology::Topology;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seed_topology() -> Topology {
    Topology::load(&root().join("testnet/seed-a-f.toml")).expect("load seed-a-f.toml")
}

/// The engine's trace of the seed scenario: (lines, found).
fn engine_trace(topology: &Topology, seed: u64, mode: Anonymity) -> (Vec<String>, bool) {
    let scenario = topology.scenario.as_ref().expect("scenario");
    let config = RouterConfig {
        max_htl: scenario.htl,
        ..RouterConfig::default()
    };
    let adj: Vec<Vec<NodeIx>> = topology
        .adjacency()
        .into_iter()
        .map(|l| l.into_iter().map(|j| j as NodeIx).collect())
        .collect();
    let locations: Vec<_> = topology.nodes.iter().map(|n| n.location).collect();
    // The harness's latency: 10 ms on every link.
    let mut engine = Engine::new(&adj, &locations, config, mode, Latency::Fixed(10), seed);
    let (chk, block) = block_near(scenario.key_location, 0.001);
    for &h in &scenario.holders {
        engine.place(h as NodeIx, block.clone());
    }
    engine.trace = Some(Vec::new());
    let out = engine.get(scenario.requester as NodeIx, chk.routing);
    let name = |i: NodeIx| topology.nodes[i as usize].name.as_str();
    let lines = engine
        .trace
        .unwrap_or_default()
        .iter()
        .map(|(from, to, msg)| format_trace_line(name(*from), name(*to), msg))
        .collect();
    (lines, out.found())
}

#[test]
fn engine_and_harness_give_the_lectures_trace() {
    let topology = seed_topology();
    let golden = std::fs::read_to_string(root().join("tests/golden/seed-a-f.trace"))
        .expect("read tests/golden/seed-a-f.trace");
    let golden: Vec<&str> = golden
        .lines()
        .filter(|l| !l.starts_with("outcome"))
        .collect();
    let (lines, found) = engine_trace(&topology, 1, Anonymity::None);
    assert!(found);
    assert_eq!(lines, golden);
    let harness = run_scenario_in(&topology, 1, Anonymity::None).expect("scenario");
    assert_eq!(lines, harness.lines);
}

#[test]
fn engine_and_harness_agree_in_every_mode_and_seed() {
    let topology = seed_topology();
    for mode in [Anonymity::None, Anonymity::Freenet] {
        for seed in 1..=5 {
            let (lines, found) = engine_trace(&topology, seed, mode);
            let harness = run_scenario_in(&topology, seed, mode).expect("scenario");
            assert_eq!(lines, harness.lines, "mode {mode}, seed {seed}");
            assert_eq!(found, harness.found, "mode {mode}, seed {seed}");
        }
    }
}

/// A report without its timings and memory figure (which vary).
fn figures(r: &SimReport) -> String {
    format!("{:?}", r.without_timings())
}

fn small(mode: Anonymity, fail: f64, seed: u64) -> SimReport {
    runner::run(&SimOptions {
        anonymity: mode,
        nodes: 400,
        requests: 200,
        fail,
        seed,
        ..SimOptions::default()
    })
    .expect("run")
}

/// Hyphanet's routing criterion (`RealNodeRoutingTest`): 100 nodes on a
/// Kleinberg graph of degree 10, HTL 5, at least 98% of lookups succeed.
fn hyphanet_criterion(lookahead: Lookahead, seed: u64) -> SimReport {
    runner::run(&SimOptions {
        nodes: 100,
        degree: 10,
        htl: 5,
        requests: 1000,
        lookahead,
        seed,
        ..SimOptions::default()
    })
    .expect("run")
}

#[test]
fn foaf_routing_meets_hyphanets_criterion_where_greedy_falls_short() {
    for seed in [11, 12, 13, 14] {
        let greedy = hyphanet_criterion(Lookahead::None, seed);
        let foaf = hyphanet_criterion(Lookahead::Foaf, seed);
        assert!(foaf.success_rate >= 0.98, "seed {seed}: {foaf:?}");
        assert!(
            foaf.success_rate > greedy.success_rate && foaf.hops_mean < greedy.hops_mean,
            "seed {seed}: foaf {foaf:?} against greedy {greedy:?}"
        );
    }
}

#[test]
fn same_seed_same_result() {
    let a = small(Anonymity::Freenet, 0.1, 7);
    let b = small(Anonymity::Freenet, 0.1, 7);
    assert_eq!(figures(&a), figures(&b));
    let c = small(Anonymity::Freenet, 0.1, 8);
    assert_ne!(figures(&a), figures(&c));
}

#[test]
fn small_runs_find_most_keys_in_every_mode() {
    for mode in [Anonymity::None, Anonymity::Freenet, Anonymity::Tunnel] {
        let r = small(mode, 0.0, 1);
        assert!(r.success_rate >= 0.9, "{mode}: {r:?}");
        assert!(
            r.hops_mean >= 1.0 && r.hops_median <= r.hops_p95,
            "{mode}: {r:?}"
        );
        assert!(r.messages_per_lookup >= 2.0 * r.hops_mean, "{mode}: {r:?}");
        assert!(r.max_load_ratio > 1.0, "{mode}: {r:?}");
        // Only mode none hands the first hop htl = max.
        let exposed = r.requester_exposed_rate;
        assert!(if mode == Anonymity::None {
            exposed > 0.9
        } else {
            exposed == 0.0
        });
    }
    // Failures cost success.
    let broken = small(Anonymity::None, 0.4, 1);
    assert!(broken.success_rate < small(Anonymity::None, 0.0, 1).success_rate);
}

#[test]
fn generators_have_their_shape() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 2_000;
    let ring = graphs::ring(n, 10);
    assert!(ring.adj.iter().all(|l| l.len() == 10));
    assert!(is_connected(&ring));
    // Node 0's neighbours are its 5 nearest on either side.
    assert_eq!(
        ring.adj[0],
        vec![1, 2, 3, 4, 5, 1995, 1996, 1997, 1998, 1999]
    );

    let k = graphs::kleinberg(n, 10, &mut rng);
    assert!(is_connected(&k));
    let d = mean_degree(&k);
    assert!((9.0..=10.5).contains(&d), "kleinberg mean degree {d}");
    // Long links follow 1/d: about as many within distance 1..10 as 10..100.
    let ring_dist = |a: usize, b: usize| {
        let d = a.abs_diff(b);
        d.min(n - d)
    };
    let count = |lo: usize, hi: usize| {
        (0..n)
            .flat_map(|i| k.adj[i].iter().map(move |&j| ring_dist(i, j as usize)))
            .filter(|&d| d >= lo && d < hi)
            .count() as f64
    };
    let (near, far) = (count(2, 20), count(20, 200));
    assert!(
        far > 0.6 * near && far < 1.6 * near,
        "near {near}, far {far}"
    );

    let r = graphs::random_regular(n, 10, &mut rng);
    assert!(is_connected(&r));
    assert!(r.adj.iter().all(|l| l.len() <= 10));
    assert!(mean_degree(&r) > 9.9);

    let s = graphs::swap_start(n, 10, &mut rng);
    let mut locations = s.location.clone();
    locations.sort_by(f64::total_cmp);
    assert_eq!(locations, graphs::ring(n, 2).location);
    assert_ne!(s.location, locations);

    let file = graphs::from_topology(&seed_topology());
    assert_eq!(file.nodes(), 6);
    assert_eq!(file.adj[1], vec![0, 2, 4, 5]);
    assert!(is_connected(&file));
}

#[test]
fn latency_is_per_link_seeded_and_parsed() {
    let l = Latency::default();
    assert_eq!(l.of_link(1, 3, 9), l.of_link(1, 9, 3));
    let draws: Vec<u64> = (0..1000).map(|j| l.of_link(1, 0, j)).collect();
    assert!(draws.iter().all(|&ms| (1..=400).contains(&ms)));
    let mut sorted = draws.clone();
    sorted.sort_unstable();
    assert!((30..=50).contains(&sorted[500]), "median {}", sorted[500]);
    assert_eq!("fixed:10".parse::<Latency>(), Ok(Latency::Fixed(10)));
    assert_eq!(
        "uniform:5-100".parse::<Latency>(),
        Ok(Latency::Uniform { min: 5, max: 100 })
    );
    assert!("uniform:9-2".parse::<Latency>().is_err());
    assert!("lognormal:x".parse::<Latency>().is_err());
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `veil ARGS` with a deadline: (success, stdout, stderr). The
/// outputs are small, well under a pipe's buffer, so they are read at the end.
fn veil(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run veil");
    let mut child = KillOnDrop(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "veil {args:?} hung"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).expect("utf-8 output");
        }
        text
    };
    let out = read(child.0.stdout.as_mut().map(|p| p as &mut dyn Read));
    let err = read(child.0.stderr.as_mut().map(|p| p as &mut dyn Read));
    (status.success(), out, err)
}

#[test]
fn cli_prints_the_contracts_json_and_refuses_what_is_missing() {
    let (ok, out, err) = veil(&[
        "sim",
        "--system",
        "freenet",
        "--anonymity",
        "freenet",
        "--topology",
        "ring",
        "--nodes",
        "200",
        "--degree",
        "6",
        "--htl",
        "12",
        "--requests",
        "50",
        "--fail",
        "0.1",
        "--seed",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for field in [
        "system",
        "nodes",
        "requests",
        "success_rate",
        "hops_mean",
        "hops_median",
        "hops_p95",
        "messages_per_lookup",
        "max_load_ratio",
        "requester_exposed_rate",
        "wall_seconds",
        "success_after_top1pct_removed",
        "bytes_per_node",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {out}");
    }
    assert_eq!(v["system"], "freenet");
    assert_eq!(v["nodes"], 200);

    let (ok, out, err) = veil(&[
        "sim",
        "--system",
        "freenet",
        "--topology",
        "testnet/seed-a-f.toml",
        "--requests",
        "20",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("6 nodes"), "{out}");

    let (ok, _, err) = veil(&["sim", "--system", "nosuch"]);
    assert!(!ok && err.contains("unknown system"), "{err}");
    let (ok, _, err) = veil(&["sim", "--experiment", "nosuch"]);
    assert!(!ok && err.contains("unknown experiment"), "{err}");
    // An output directory that cannot be made fails before any run.
    let (ok, _, err) = veil(&["sim", "--experiment", "anonymity", "--out", "Cargo.toml/x"]);
    assert!(!ok && err.contains("Cargo.toml/x"), "{err}");
}

/// The baselines experiment runs veil under the lecture's rules and the
/// new ones beside the other systems, labels them apart in every output,
/// and on the same graph and workload the new rules find keys in fewer
/// hops.
#[test]
fn the_baselines_experiment_compares_the_lecture_rules_with_the_new_ones() {
    let out = tempfile::tempdir().unwrap();
    let opts = veil::sim::experiments::ExperimentOptions {
        out: out.path().to_path_buf(),
        nodes: Some(2_000),
        requests: Some(300),
        ..Default::default()
    };
    let result = veil::sim::experiments::run("baselines", &opts).unwrap();
    let veil_runs: Vec<&SimReport> = result
        .runs
        .iter()
        .filter(|r| r.system == "freenet")
        .collect();
    let rules: Vec<&str> = veil_runs
        .iter()
        .filter_map(|r| r.routing.as_deref())
        .collect();
    assert_eq!(rules, ["none/hop", "foaf/progress"]);
    let (old, new) = (veil_runs[0], veil_runs[1]);
    assert!(new.success_rate >= old.success_rate, "{new:?} {old:?}");
    assert!(
        new.hops_mean < old.hops_mean,
        "{} against {}",
        new.hops_mean,
        old.hops_mean
    );
    // The other systems carry no routing rules; the table names both runs.
    assert_eq!(
        result.runs.iter().filter(|r| r.routing.is_some()).count(),
        2
    );
    assert!(
        result.summary.contains("freenet foaf/progress"),
        "{}",
        result.summary
    );
    let csv = std::fs::read_to_string(out.path().join("baselines.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",routing"));
    assert!(csv.contains(",foaf/progress\n"), "{csv}");
}
