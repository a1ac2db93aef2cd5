//! A node keeps its tunnel guards across a restart: four real nodes in the
//! default (`tunnel`) mode, `a` befriended with the three others. `a`'s
//! first get builds a tunnel and draws a guard, which it saves in
//! `guards.json` (mode 0600); after a restart, its first tunnel starts at
//! that same guard (its audit log's `TunnelBuild`), not at a new draw.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::*;
use veil::client::Client;
use veil::keys::RoutingKey;

/// The peer `a` sent its tunnel builds to since line `from` of its audit
/// log (as the log writes peers).
fn builds_since(node: &TestNode, from: usize) -> Vec<String> {
    std::fs::read_to_string(node.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .skip(from)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "send" && v["kind"] == "TunnelBuild")
        .filter_map(|v| v["peer"].as_str().map(str::to_string))
        .collect()
}

fn audit_lines(node: &TestNode) -> usize {
    std::fs::read_to_string(node.dir.join("audit.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// A get of a key nobody holds: it builds a tunnel all the same.
fn get_missing(rt: &tokio::runtime::Runtime, node: &TestNode, seed: u8) {
    rt.block_on(async {
        let mut c = Client::connect(&node.client, Duration::from_secs(5))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(60), c.get(RoutingKey([seed; 32])))
            .await
            .expect("the get ended");
    });
}

#[test]
fn a_restarted_node_builds_its_tunnels_through_the_guard_it_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes: Vec<TestNode> = [("a", 0.1), ("b", 0.35), ("c", 0.6), ("d", 0.85)]
        .iter()
        .map(|(name, at)| TestNode::init(tmp.path(), name, *at))
        .collect();
    for i in 1..4 {
        nodes[0].befriend(&nodes[i]);
    }
    nodes[1].befriend(&nodes[2]);
    nodes[2].befriend(&nodes[3]);
    nodes[3].befriend(&nodes[1]);
    for n in &mut nodes {
        n.set("testnet = true");
        n.start(&[]);
    }
    nodes[0].wait_peers(&rt, 3);
    for n in &nodes[1..] {
        n.wait_peers(&rt, 3);
    }

    get_missing(&rt, &nodes[0], 7);
    let first = builds_since(&nodes[0], 0);
    let guard = first.first().expect("a tunnel build").clone();
    let saved = nodes[0].dir.join("guards.json");
    let text = std::fs::read_to_string(&saved).expect("guards.json written");
    assert!(text.contains(&guard), "{text} does not name {guard}");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Three restarts: each time the first build goes to the same guard (a
    // fresh draw among three neighbours would match all three times with
    // probability 1/27).
    for round in 0..3u8 {
        nodes[0].restart(&rt, 3);
        let mark = audit_lines(&nodes[0]);
        get_missing(&rt, &nodes[0], 8 + round);
        let after = builds_since(&nodes[0], mark);
        assert_eq!(
            after.first(),
            Some(&guard),
            "round {round}: built through {after:?}, the saved guard is {guard}"
        );
    }
}
