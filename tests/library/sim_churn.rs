//! `veil sim` under churn and under the two failure modes: churn costs
//! success and replays from the seed; a node that leaves answers nothing
//! and comes back with its store; removing the most loaded nodes first
//! hurts Napster at least as much as removing them at random (the index
//! goes), and is seeded.

use std::path::PathBuf;
use std::process::Command;

use veil::routing::{Anonymity, RouterConfig};
use veil::sim::churn::ChurnSpec;
use veil::sim::engine::{Engine, Latency};
use veil::sim::graphs;
use veil::sim::harness::block_near;
use veil::sim::model::NodeIx;
use veil::sim::runner::{self, FailMode, SimOptions, SimReport};
use veil::sim::topology::Topology;

/// A report without its timings and memory figure (which vary).
fn figures(r: &SimReport) -> String {
    format!("{:?}", r.without_timings())
}

fn run(system: &str, churn_minutes: f64, fail: f64, fail_mode: FailMode) -> SimReport {
    runner::run(&SimOptions {
        system: system.into(),
        anonymity: Anonymity::None,
        nodes: 1000,
        requests: 400,
        fail,
        fail_mode,
        churn: ChurnSpec {
            minutes: churn_minutes,
            ..ChurnSpec::default()
        },
        seed: 5,
        ..SimOptions::default()
    })
    .expect("run")
}

#[test]
fn churn_costs_success_and_replays_from_the_seed() {
    let calm = run("freenet", 0.0, 0.0, FailMode::Random);
    assert_eq!((calm.churn_leaves, calm.churn_joins), (0, 0));
    assert_eq!(calm.online_fraction, 1.0);
    // Ten hours of Freenet-like sessions: most nodes leave at least once.
    let stormy = run("freenet", 600.0, 0.0, FailMode::Random);
    assert!(stormy.churn_leaves > 500, "{stormy:?}");
    assert!(stormy.churn_joins > 0, "{stormy:?}");
    assert!(
        stormy.online_fraction < 0.8 && stormy.online_fraction > 0.3,
        "{stormy:?}"
    );
    // Keys are cached along every insert's path and a leaving node's
    // neighbours route around it, so the loss is a few percent (5% here),
    // and the paths lengthen.
    assert!(
        stormy.success_rate + 0.02 < calm.success_rate,
        "churn {} vs calm {}",
        stormy.success_rate,
        calm.success_rate
    );
    assert!(stormy.hops_mean > calm.hops_mean, "{stormy:?}");
    assert_eq!(
        figures(&stormy),
        figures(&run("freenet", 600.0, 0.0, FailMode::Random))
    );
    // A baseline churns too (its nodes drop out and come back).
    let chord = run("chord", 600.0, 0.0, FailMode::Random);
    assert!(chord.success_rate < run("chord", 0.0, 0.0, FailMode::Random).success_rate);
}

#[test]
fn a_node_that_leaves_answers_nothing_and_returns_with_its_store() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let topology = Topology::load(&root.join("testnet/seed-a-f.toml")).expect("topology");
    let scenario = topology.scenario.as_ref().expect("scenario");
    let adj = graphs::from_topology(&topology).adj;
    let locations: Vec<_> = topology.nodes.iter().map(|n| n.location).collect();
    let (chk, block) = block_near(scenario.key_location, 0.001);
    let fresh = || {
        let config = RouterConfig {
            max_htl: scenario.htl,
            ..RouterConfig::default()
        };
        let mut engine = Engine::new(
            &adj,
            &locations,
            config,
            Anonymity::None,
            Latency::Fixed(10),
            1,
        );
        for &h in &scenario.holders {
            engine.place(h as NodeIx, block.clone());
        }
        engine
    };
    let requester = scenario.requester as NodeIx;
    assert!(fresh().get(requester, chk.routing).found());
    // Requests that find it cache it on the way: start over each time.
    let mut engine = fresh();
    for &h in &scenario.holders {
        engine.set_online(h as NodeIx, false);
        assert!(!engine.is_alive(h as NodeIx));
    }
    assert!(!engine.get(requester, chk.routing).found());
    for &h in &scenario.holders {
        engine.set_online(h as NodeIx, true);
    }
    assert!(engine.get(requester, chk.routing).found());
    // A failed node never comes back.
    let h = scenario.holders[0] as NodeIx;
    engine.fail(&[h]);
    engine.set_online(h, true);
    assert!(!engine.is_alive(h));
}

#[test]
fn removing_the_most_loaded_first_takes_napsters_index_and_is_seeded() {
    let random = run("napster", 0.0, 0.05, FailMode::Random);
    let loaded = run("napster", 0.0, 0.05, FailMode::Loaded);
    assert_eq!(loaded.fail_mode, "loaded");
    assert!(random.success_rate > 0.5, "{random:?}");
    // The index handled every lookup: it goes first, and with it everything.
    assert_eq!(loaded.success_rate, 0.0, "{loaded:?}");
    assert!(loaded.success_rate <= random.success_rate);
    assert_eq!(
        figures(&loaded),
        figures(&run("napster", 0.0, 0.05, FailMode::Loaded))
    );
    // Kazaa's super-peers carry the load: losing them first costs more.
    let k_random = run("kazaa", 0.0, 0.05, FailMode::Random);
    let k_loaded = run("kazaa", 0.0, 0.05, FailMode::Loaded);
    assert!(
        k_loaded.success_rate < k_random.success_rate,
        "{} vs {}",
        k_loaded.success_rate,
        k_random.success_rate
    );
}

#[test]
fn cli_takes_churn_and_fail_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([
            "sim",
            "--system",
            "freenet",
            "--nodes",
            "300",
            "--requests",
            "60",
            "--fail",
            "0.05",
            "--fail-mode",
            "loaded",
            "--churn",
            "--json",
        ])
        .output()
        .expect("run veil");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["fail_mode"], "loaded");
    assert_eq!(v["churn_minutes"], 60.0);
    for field in [
        "churn_leaves",
        "churn_joins",
        "online_fraction",
        "success_rate",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([
            "sim",
            "--system",
            "freenet",
            "--session",
            "4.5",
            "--churn",
            "10",
        ])
        .output()
        .expect("run veil");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("MU,SIGMA"));
}
