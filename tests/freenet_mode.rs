//! The `freenet` anonymity mode: Hyphanet's probabilistic HTL with coins
//! drawn once per link and kept across restarts, its caching thresholds, its
//! bound on hops, the harness and a real testnet in that mode, and the
//! `anonymity` setting and options around it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use veil::config::NodeConfig;
use veil::identity::PeerKey;
use veil::keys::{Block, Chk, Location, RoutingKey};
use veil::message::{Htl, Message, Uid};
use veil::node::NodeSetup;
use veil::routing::htl::{policy_for, FreenetHtl};
use veil::routing::{
    Action, Anonymity, BlockSource, ClientOutcome, Event, LinkCoins, Router, RouterConfig,
    DEFAULT_MAX_HTL,
};
use veil::sim::harness::{run_scenario_in, Harness};
use veil::sim::topology::{generate, Shape, Topology};

use common::{run_within, veil, veil_ok, Down, VEIL};

const MAX: Htl = DEFAULT_MAX_HTL;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

// ---- coins ---------------------------------------------------------------

#[test]
fn coins_derive_from_the_on_disk_identity_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    veil_ok(&["init", dir.to_str().unwrap(), "--location", "0.3"]);
    let peers: Vec<PeerKey> = (0..64u8).map(|i| PeerKey([i; 32])).collect();
    let first = NodeSetup::load(&dir).unwrap();
    let before: Vec<LinkCoins> = peers.iter().map(|p| first.link_coins(p)).collect();
    let node_before = first.node_coins();
    drop(first);
    // "Restart": load the directory again, as `veil node` does at start.
    let again = NodeSetup::load(&dir).unwrap();
    let after: Vec<LinkCoins> = peers.iter().map(|p| again.link_coins(p)).collect();
    assert_eq!(before, after);
    assert_eq!(node_before, again.node_coins());
    // They are per link: 64 peers do not all get the same coins.
    let distinct: std::collections::HashSet<_> = before.iter().collect();
    assert!(distinct.len() > 1, "{before:?}");
    // Another identity gets other coins for the same peers.
    let other = tmp.path().join("m");
    veil_ok(&["init", other.to_str().unwrap(), "--location", "0.3"]);
    let other = NodeSetup::load(&other).unwrap();
    let theirs: Vec<LinkCoins> = peers.iter().map(|p| other.link_coins(p)).collect();
    assert_ne!(before, theirs);
}

#[test]
fn harness_coins_are_seeded_and_hit_hyphanets_probabilities() {
    assert_eq!(Harness::link_coins(5, 1, 2), Harness::link_coins(5, 1, 2));
    let (mut at_max, mut at_min, mut n) = (0u32, 0u32, 0u32);
    for seed in 0..20u64 {
        for from in 0..30usize {
            for to in 0..30usize {
                let c = Harness::link_coins(seed, from, to);
                at_max += u32::from(c.decrement_at_max);
                at_min += u32::from(c.decrement_at_min);
                n += 1;
            }
        }
    }
    let pmax = f64::from(at_max) / f64::from(n);
    let pmin = f64::from(at_min) / f64::from(n);
    assert!((pmax - 0.5).abs() < 0.02, "P(decrement at max) = {pmax}");
    assert!((pmin - 0.25).abs() < 0.02, "P(decrement at 1) = {pmin}");
}

// ---- caching -------------------------------------------------------------

#[derive(Default)]
struct Store(HashMap<RoutingKey, Block>);

impl BlockSource for Store {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.0.get(key).cloned()
    }
}

/// Relay one request arriving at `htl` from peer 1 through a node in
/// `mode` (peer 2 answers a get with the block) and report whether the
/// node cached the block.
fn relay_caches(mode: Anonymity, insert: bool, htl: Htl) -> bool {
    let (chk, block) = Chk::encode(b"freenet caching").unwrap();
    let mut router = Router::with_policy(
        RouterConfig::default(),
        Location(0),
        policy_for(mode, LinkCoins::default()),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let store = Store::default();
    let mut actions = Vec::new();
    for peer in [1u32, 2] {
        let up = Event::LinkUp {
            peer,
            location: Location::from_f64(0.5),
            coins: LinkCoins::default(),
        };
        actions.extend(router.handle(0, &mut rng, &store, up));
    }
    let msg = if insert {
        Message::InsertRequest {
            uid: 9,
            key: chk.routing,
            htl,
            block: block.clone(),
        }
    } else {
        Message::DataRequest {
            uid: 9,
            key: chk.routing,
            htl,
        }
    };
    actions.extend(router.handle(0, &mut rng, &store, Event::Message { from: 1, msg }));
    if !insert {
        let found = Message::DataFound { uid: 9, block };
        let event = Event::Message {
            from: 2,
            msg: found,
        };
        actions.extend(router.handle(1, &mut rng, &store, event));
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Send {
                    to: 1,
                    msg: Message::DataFound { .. }
                }
            )),
            "{actions:?}"
        );
    }
    actions
        .iter()
        .any(|a| matches!(a, Action::CacheBlock { .. }))
}

#[test]
fn freenet_caches_nothing_above_the_thresholds_and_none_caches_everything() {
    use Anonymity::{Freenet, None};
    for htl in [MAX, MAX - 1] {
        assert!(!relay_caches(Freenet, false, htl), "get at {htl}");
        assert!(relay_caches(None, false, htl), "get at {htl} in none");
    }
    assert!(relay_caches(Freenet, false, MAX - 2));
    for htl in [MAX, MAX - 1, MAX - 2] {
        assert!(!relay_caches(Freenet, true, htl), "insert at {htl}");
        assert!(relay_caches(None, true, htl), "insert at {htl} in none");
    }
    assert!(relay_caches(Freenet, true, MAX - 3));
    assert!(relay_caches(Freenet, true, 1));
}

#[test]
fn the_free_hop_is_the_link_coin() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let keep = LinkCoins {
        decrement_at_max: false,
        decrement_at_min: false,
    };
    let mut p = FreenetHtl::new(LinkCoins::default());
    use veil::routing::htl::HtlPolicy;
    assert_eq!(p.accept(MAX, MAX, keep, &mut rng), MAX);
    assert_eq!(p.accept(1, MAX, keep, &mut rng), 1);
    assert_eq!(p.accept(7, MAX, keep, &mut rng), 6);
    assert_eq!(p.originate(MAX, &mut rng), MAX - 1);
}

// ---- the harness in freenet mode -------------------------------------------

/// One run of random gets and puts on a random graph.
struct Run {
    harness: Harness,
    n: usize,
    requests: usize,
}

fn run_random(seed: u64, modes: &dyn Fn(usize) -> Anonymity) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.gen_range(8..24);
    let degree = rng.gen_range(2..5).min(n - 1);
    let topology: Topology = generate(n, degree, Shape::Random, seed).unwrap();
    let modes: Vec<Anonymity> = (0..n).map(modes).collect();
    let config = RouterConfig {
        max_htl: rng.gen_range(3..=10),
        ..RouterConfig::default()
    };
    let mut h = Harness::with_modes(&topology, config, seed, &modes);
    let requests = 30;
    for i in 0..requests {
        let (chk, block) = Chk::encode(format!("freenet props {seed} {i}").as_bytes()).unwrap();
        let at = rng.gen_range(0..n);
        if rng.gen_bool(0.5) {
            h.place(rng.gen_range(0..n), block);
            h.get(at, chk.routing);
        } else {
            h.put(at, block);
        }
    }
    h.run(500_000);
    Run {
        harness: h,
        n,
        requests,
    }
}

/// Every request got exactly one answer, every message crossed an edge, and
/// every uid respects the documented bound: gets sent <= first HTL + gets
/// sent at max + gets sent at 1, each of those chains at most n - 1 long.
/// Returns the number of free hops seen (requests at max sent by a relay).
fn check_run(run: &Run) -> usize {
    let h = &run.harness;
    assert_eq!(h.clients.len(), run.requests);
    for c in h.clients.values() {
        assert_eq!(c.outcomes.len(), 1, "{c:?}");
    }
    for s in &h.sent {
        assert!(h.adjacency[s.from].contains(&s.to), "{s:?}");
    }
    let max = h.router(0).config().max_htl;
    let origin: HashMap<Uid, usize> = h
        .clients
        .values()
        .filter_map(|c| c.uid.map(|u| (u, c.node)))
        .collect();
    let mut per_uid: BTreeMap<Uid, Vec<(usize, Htl)>> = BTreeMap::new();
    for s in &h.sent {
        if let Message::DataRequest { uid, htl, .. } | Message::InsertRequest { uid, htl, .. } =
            &s.msg
        {
            per_uid.entry(*uid).or_default().push((s.from, *htl));
        }
    }
    let mut free_at_max = 0;
    for (uid, sends) in &per_uid {
        let first = sends[0].1;
        let at_max = sends.iter().filter(|(_, htl)| *htl == max).count();
        let at_one = sends.iter().filter(|(_, htl)| *htl == 1).count();
        assert!(
            sends.len() <= usize::from(first) + at_max + at_one,
            "uid {uid:x}: {sends:?}"
        );
        assert!(at_max < run.n && at_one < run.n, "uid {uid:x}: {sends:?}");
        free_at_max += sends
            .iter()
            .filter(|(from, htl)| *htl == max && origin.get(uid) != Some(from))
            .count();
    }
    free_at_max
}

#[test]
fn freenet_mode_on_random_graphs_keeps_the_properties() {
    let mut free = 0;
    let mut found = 0;
    for seed in 0..24u64 {
        let run = run_random(seed, &|_| Anonymity::Freenet);
        free += check_run(&run);
        found += run
            .harness
            .clients
            .values()
            .filter(|c| matches!(c.outcomes[..], [ClientOutcome::Found(_)]))
            .count();
        // Same seed, same run.
        let again = run_random(seed, &|_| Anonymity::Freenet);
        assert_eq!(run.harness.sent, again.harness.sent, "seed {seed}");
    }
    // The coins are in play: some relays passed a request on at max ...
    assert!(free > 0);
    // ... and routing still works.
    assert!(found > 0);
}

#[test]
fn a_mixed_network_keeps_the_properties() {
    for seed in 100..112u64 {
        let modes = |i: usize| {
            if i.is_multiple_of(2) {
                Anonymity::Freenet
            } else {
                Anonymity::None
            }
        };
        check_run(&run_random(seed, &modes));
    }
}

#[test]
fn none_mode_has_no_free_hops() {
    for seed in 200..206u64 {
        let run = run_random(seed, &|_| Anonymity::None);
        assert_eq!(check_run(&run), 0);
    }
}

// ---- the binary ------------------------------------------------------------

#[test]
fn veil_trace_defaults_to_none_and_accepts_freenet() {
    let topology = repo("testnet/seed-a-f.toml");
    let topology = topology.to_str().unwrap();
    let golden = std::fs::read_to_string(repo("tests/golden/seed-a-f.trace")).unwrap();
    assert_eq!(veil_ok(&["trace", topology]), golden);
    assert_eq!(veil_ok(&["trace", topology, "--anonymity", "none"]), golden);
    let freenet = veil_ok(&["trace", topology, "--anonymity", "freenet"]);
    let t = Topology::load(&repo("testnet/seed-a-f.toml")).unwrap();
    let run = run_scenario_in(&t, 1, Anonymity::Freenet).unwrap();
    assert_eq!(freenet, run.render_text());
    assert!(freenet.ends_with("outcome: found\n") || freenet.ends_with("outcome: not found\n"));
    let tunnel = veil(&["trace", topology, "--anonymity", "tunnel"]);
    assert!(!tunnel.status.success());
    let err = String::from_utf8_lossy(&tunnel.stderr);
    assert!(err.contains("no path to trace"), "{err}");
}

#[test]
fn node_toml_takes_the_anonymity_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    veil_ok(&["init", dir.to_str().unwrap()]);
    let path = dir.join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("anonymity"), "the default is not written");
    assert_eq!(NodeConfig::load(&dir).unwrap().anonymity, Anonymity::Tunnel);
    std::fs::write(&path, format!("anonymity = \"freenet\"\n{text}")).unwrap();
    assert_eq!(
        NodeConfig::load(&dir).unwrap().anonymity,
        Anonymity::Freenet
    );
    std::fs::write(&path, format!("anonymity = \"tunnel\"\n{text}")).unwrap();
    assert_eq!(NodeConfig::load(&dir).unwrap().anonymity, Anonymity::Tunnel);
    std::fs::write(&path, format!("anonymity = \"onion\"\n{text}")).unwrap();
    assert!(NodeConfig::load(&dir).is_err());
}

#[test]
fn a_freenet_testnet_on_small_world_32_runs_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let _down = Down(dir.clone());
    let topology = repo("testnet/small-world-32.toml");
    let mut cmd = Command::new(VEIL);
    cmd.args(["testnet", "run", "--topology"])
        .arg(&topology)
        .arg("--dir")
        .arg(&dir)
        .args(["--files", "3", "--fetches", "2", "--file-size", "20KiB"])
        .args(["--anonymity", "freenet", "--json"]);
    let out = run_within(&mut cmd, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["audit"]["violations"]["total"], 0);
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 6);
    let node = NodeConfig::load(&dir.join("n00")).unwrap();
    assert_eq!(node.anonymity, Anonymity::Freenet);
    // --file-size reached the workload.
    for f in report["workload"]["files"].as_array().unwrap() {
        assert_eq!(f["size"], 20480, "{f}");
    }
}
