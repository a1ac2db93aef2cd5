//! A swapping node keeps the location it swapped to: three real nodes in a
//! triangle (where every swap is accepted: it leaves the distances along
//! the links as they were) swap, stop, and each `node.toml` then names the
//! location its `veil status` last reported, with the operator's comments
//! kept; the three locations are still the three they started with; and
//! the neighbours' audit logs record the moves they were told of.

mod common;

use std::time::{Duration, Instant};

use common::*;
use veil::client::Client;

const STARTS: [f64; 3] = [0.1, 0.4, 0.7];

#[test]
fn a_swapped_location_is_written_to_node_toml_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = TestNode::at(tmp.path(), &STARTS);
    nodes[0].befriend(&nodes[1]);
    nodes[1].befriend(&nodes[2]);
    nodes[2].befriend(&nodes[0]);
    for n in &nodes {
        n.set("swap = true");
        n.set("testnet = true");
        n.set("anonymity = \"none\"");
        n.set("swapping.interval_ms = 150");
        // A walk longer than two hops comes back round the triangle to its
        // initiator, which refuses it as a loop; with one hop (and the coin
        // at the maximum) three attempts in four find a partner.
        n.set("swapping.walk_htl = 1");
        let path = n.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# the operator's note\n{text}")).unwrap();
    }
    for n in &mut nodes {
        n.start(&[]);
    }
    for n in &nodes {
        n.wait_peers(&rt, 2);
    }

    // Swap until every node has swapped at least once (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| n.status(&rt).swap.stats.swaps == 0) {
        assert!(Instant::now() < deadline, "the nodes did not all swap");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Pause the attempts, let those under way end, and note where each
    // node is now.
    let mut last = Vec::new();
    for n in &nodes {
        rt.block_on(async {
            let mut c = Client::connect(&n.client, Duration::from_secs(5))
                .await
                .unwrap();
            c.set_swapping(false).await.unwrap();
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    for n in &nodes {
        last.push(n.status(&rt).location);
    }
    for n in &mut nodes {
        n.stop();
    }

    let mut saved = Vec::new();
    for (n, now) in nodes.iter().zip(&last) {
        let text = std::fs::read_to_string(n.dir.join("node.toml")).unwrap();
        assert!(text.starts_with("# the operator's note\n"), "{text}");
        let config = veil::config::NodeConfig::load(&n.dir).unwrap();
        let at = config.location.expect("a location in node.toml");
        assert!(
            (at - now).abs() < 1e-9,
            "node.toml says {at}, status said {now}"
        );
        saved.push(at);
    }
    saved.sort_by(f64::total_cmp);
    for (s, start) in saved.iter().zip(STARTS) {
        assert!(
            (s - start).abs() < 1e-9,
            "locations {saved:?}, started {STARTS:?}"
        );
    }
    let moved: usize = nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(n.dir.join("audit.jsonl"))
                .unwrap()
                .matches("\"event\":\"neighbour_moved\"")
                .count()
        })
        .sum();
    assert!(
        moved >= 2,
        "{moved} neighbour_moved lines in the audit logs"
    );
    // A restarted node starts where it stopped.
    nodes[0].start(&[]);
    assert!((nodes[0].status(&rt).location - last[0]).abs() < 1e-9);
}
