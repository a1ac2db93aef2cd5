//! `veil bench --chain` end to end (real node processes, a tiny file), and
//! the testnet `audit_log` setting it runs its nodes with.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_chain_bench_reports_gets_memory_the_limit_and_the_floor() {
    let size = 96 * 1024;
    let out = run_within(
        Command::new(VEIL).args([
            "bench",
            "--chain",
            "--modes",
            "none",
            "--sizes",
            "96KiB",
            "--samples",
            "2",
            "--node-threads",
            "2",
            "--json",
        ]),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "bench --chain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if python_jsonschema() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("chain.json");
        std::fs::write(&file, &out.stdout).unwrap();
        python_reads("bench-chain", &[&file]);
    }
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["version"], 1);
    let reports = output["runs"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "one report per mode");
    let r = &reports[0];
    assert_eq!(r["anonymity"], "none");
    assert_eq!(
        r["audit_log"], false,
        "the bench measures nodes without logs"
    );

    let gets = r["gets"].as_array().unwrap();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0]["bytes"].as_u64(), Some(size));
    let mib_per_s = gets[0]["mib_per_s"].as_f64().unwrap();
    assert!(mib_per_s > 0.0, "{r}");

    // Every node's memory, peak at least the current.
    let rss = r["rss"].as_array().unwrap();
    assert_eq!(rss.len(), 6);
    for node in rss {
        let (now, peak) = (
            node["rss_mib"].as_f64().unwrap(),
            node["peak_mib"].as_f64().unwrap(),
        );
        assert!(now > 0.0 && peak >= now, "{node}");
        // Each node runs the runtime threads the bench gave it.
        assert_eq!(node["runtime_threads"], 2, "{node}");
    }
    assert_eq!(r["node_threads"], 2);

    // The limit follows from the measured speeds and the pass counts, and
    // the fraction from the get.
    let (sha, aead) = (
        r["sha256_mib_per_s"].as_f64().unwrap(),
        r["chacha_mib_per_s"].as_f64().unwrap(),
    );
    let cores = r["cores"].as_f64().unwrap();
    let limit = r["limit_mib_per_s"].as_f64().unwrap();
    assert_eq!(
        r["passes"],
        serde_json::json!({"aead": 9.0, "stream": 0.0, "hash": 8.0})
    );
    assert!(r["chacha20_mib_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let expected = cores / (9.0 / aead + 8.0 / sha);
    assert!(
        (limit - expected).abs() <= expected * 1e-9,
        "{limit} vs {expected}"
    );
    // One relay's cryptography on one block: two AEAD passes and a hash at
    // the measured speeds.
    let hop = r["hop_crypto_ms"].as_f64().unwrap();
    let block_mib = veil::keys::BLOCK_LEN as f64 / (1024.0 * 1024.0);
    let expected_hop = block_mib * (2.0 / aead + 1.0 / sha) * 1000.0;
    assert!(
        hop > 0.0 && (hop - expected_hop).abs() <= expected_hop * 1e-9,
        "{hop} vs {expected_hop}"
    );
    let fraction = r["fraction"].as_f64().unwrap();
    assert!((fraction - mib_per_s / limit).abs() <= 1e-9, "{r}");
    let of_limit = gets[0]["of_limit"].as_f64().unwrap();
    assert!((of_limit - mib_per_s / limit).abs() <= 1e-9, "{r}");

    // Per-hop latency over distances 1..4, and the bare chain.
    let latency = &r["latency"];
    assert_eq!(latency["by_distance_ms"].as_array().unwrap().len(), 4);
    assert!(latency["loopback_rtt_ms"].as_f64().unwrap() > 0.0);
    let floor = &r["floor"];
    assert!(floor["blocks"].as_u64().unwrap() >= 256);
    assert!(floor["mib_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(floor["by_distance_ms"].as_array().unwrap().len(), 4);
}

#[test]
fn a_testnet_node_with_audit_log_false_writes_no_audit_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut quiet = TestNode::init(tmp.path(), "quiet", 0.25);
    let mut logged = TestNode::init(tmp.path(), "logged", 0.75);
    quiet.befriend(&logged);
    for n in [&quiet, &logged] {
        n.set("testnet = true");
        n.set("anonymity = \"none\"");
    }
    quiet.set("audit_log = false");
    quiet.start(&[]);
    logged.start(&[]);
    quiet.wait_peers(&rt, 1);
    logged.wait_peers(&rt, 1);

    // A file put through `quiet` is inserted towards `logged` and fetched
    // back: both nodes handle requests.
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, bytes(100_000, 7)).unwrap();
    let quiet_api = quiet.client.to_string();
    let uri = veil_ok(&["put", "--node", &quiet_api, input.to_str().unwrap()]);
    let out = tmp.path().join("out.bin");
    veil_ok(&[
        "get",
        "--node",
        &logged.client.to_string(),
        uri.trim(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&input).unwrap());
    quiet.stop();
    logged.stop();

    let lines = |n: &TestNode, file: &str| {
        std::fs::read_to_string(n.dir.join(file)).map_or(0, |t| t.lines().count())
    };
    assert!(lines(&logged, "audit.jsonl") > 0, "the default still logs");
    for file in ["audit.jsonl", "origin.jsonl"] {
        assert_eq!(
            lines(&quiet, file),
            0,
            "{file} of the node with audit_log = false"
        );
    }
}
