//! Every JSON document veil writes for other programs, as a user makes it
//! (`veil testnet run`, `veil audit --json`, `veil bench … --json`), read
//! by a small Python program against its published schema
//! (`docs/schemas/`, described in `docs/formats.md`). `tests/bench_chain.rs`
//! does the same for `veil bench --chain --json`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{python_jsonschema, python_reads, run_within, veil_ok, VEIL};

/// The files of one kind under every node directory of a testnet.
fn node_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().join(name)))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn refs(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).collect()
}

#[test]
fn a_testnet_s_files_and_reports_read_from_python() {
    if !python_jsonschema() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let topology = tmp.path().join("net.toml");
    let topology_s = topology.to_str().unwrap();
    veil_ok(&[
        "testnet", "gen", "--nodes", "8", "--degree", "3", "--seed", "5", "-o", topology_s,
    ]);
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().unwrap();
    // The default anonymity mode (tunnel), with a random workload.
    let run = veil_ok(&[
        "testnet",
        "run",
        "--topology",
        topology_s,
        "--dir",
        dir_s,
        "--files",
        "3",
        "--fetches",
        "1",
        "--file-size",
        "40000",
        "--json",
    ]);
    let run_file = tmp.path().join("run.json");
    std::fs::write(&run_file, &run).unwrap();
    let audit = run_within(
        std::process::Command::new(VEIL).args(["audit", dir_s, "--json"]),
        Duration::from_secs(120),
    );
    let audit_file = tmp.path().join("audit.json");
    std::fs::write(&audit_file, &audit.stdout).unwrap();

    let read = python_reads("testnet", &[&dir.join("testnet.json")]);
    assert!(read.contains("ok (1 document(s), version [1])"), "{read}");
    python_reads("workload", &[&dir.join("workload.json")]);
    let audit_logs = node_files(&dir, "audit.jsonl");
    assert_eq!(audit_logs.len(), 8);
    python_reads("audit-log", &refs(&audit_logs));
    let origin_logs = node_files(&dir, "origin.jsonl");
    assert!(!origin_logs.is_empty());
    python_reads("origin-log", &refs(&origin_logs));
    python_reads("testnet-run", &[&run_file]);
    python_reads("audit-report", &[&audit_file]);

    // The reader is not a rubber stamp: the client API in the shape Rust's
    // default enum encoding gives is refused.
    let bad = tmp.path().join("bad-testnet.json");
    let text = std::fs::read_to_string(dir.join("testnet.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let node = value["nodes"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .next()
        .unwrap();
    node["client"] = serde_json::json!({"Tcp": {"addr": "127.0.0.1:1", "cookie": "/c"}});
    std::fs::write(&bad, value.to_string()).unwrap();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats/check.py"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas"))
        .args(["testnet", bad.to_str().unwrap()]);
    let out = run_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn the_benches_json_reads_from_python() {
    if !python_jsonschema() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = veil_ok(&[
        "bench",
        "files",
        "--size",
        "256KiB",
        "--dir",
        tmp.path().join("files").to_str().unwrap(),
        "--json",
    ]);
    let files_json = tmp.path().join("files.json");
    std::fs::write(&files_json, files).unwrap();
    python_reads("bench-files", &[&files_json]);

    let modes = veil_ok(&[
        "bench",
        "--no-chain",
        "--modes",
        "none",
        "--sizes",
        "64KiB",
        "--repeats",
        "1",
        "--json",
    ]);
    let modes_json = tmp.path().join("bench.json");
    std::fs::write(&modes_json, modes).unwrap();
    python_reads("bench", &[&modes_json]);
}

#[test]
fn status_and_sim_json_read_from_python() {
    if !python_jsonschema() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::runtime();
    let (a, _b) = common::TestNode::linked_pair(tmp.path(), &rt);
    let Some(dir) = a.dir.to_str() else {
        panic!("node dir is not UTF-8");
    };
    let status = veil_ok(&["status", "--node", dir, "--json"]);
    let status_json = tmp.path().join("status.json");
    std::fs::write(&status_json, status).unwrap();
    python_reads("status", &[&status_json]);

    let sim = veil_ok(&[
        "sim",
        "--system",
        "freenet",
        "--nodes",
        "200",
        "--requests",
        "50",
        "--json",
    ]);
    let sim_json = tmp.path().join("sim.json");
    std::fs::write(&sim_json, sim).unwrap();
    python_reads("sim", &[&sim_json]);
}

/// `veil sim --experiment swap --nodes N --rounds R --json` ends with one
/// JSON line that scripts read: swapping lowered the links' length from
/// random (0.25) toward ordered locations', and routing is measured on both.
#[test]
fn a_one_size_swap_run_ends_with_one_json_line() {
    let tmp = tempfile::TempDir::new().unwrap();
    let out = tmp.path().to_str().unwrap();
    let text = veil_ok(&[
        "sim",
        "--experiment",
        "swap",
        "--nodes",
        "400",
        "--rounds",
        "30",
        "--embedding",
        "swap",
        "--lookahead",
        "none",
        "--htl-rule",
        "hop",
        "--requests",
        "300",
        "--seed",
        "2",
        "--json",
        "--out",
        out,
    ]);
    let last = text.lines().last().expect("a line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        (v["nodes"].as_u64(), v["rounds"].as_u64()),
        (Some(400), Some(30))
    );
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!((0.0..=1.0).contains(&f("success")), "{v}");
    assert!(f("ideal_success") >= 0.95, "{v}");
    assert!(f("hops_mean") > 0.0, "{v}");
    assert!(
        f("link_length") < 0.2 && f("link_length") > f("ideal_link_length"),
        "{v}"
    );
    assert!(v["swaps"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(tmp.path().join("swap.json").exists());
    if python_jsonschema() {
        let line_json = tmp.path().join("swap-line.json");
        std::fs::write(&line_json, last).unwrap();
        python_reads("sim-swap", &[&line_json]);
    }
}

/// `veil sim --experiment pitch-black --nodes N --attackers F --json` ends
/// with one JSON line that scripts read, and the defence is what keeps the
/// attackers from pulling honest nodes' locations to their points.
#[test]
fn a_pitch_black_run_ends_with_one_json_line_and_the_defence_holds() {
    let tmp = tempfile::TempDir::new().unwrap();
    let out = tmp.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "sim",
            "--experiment",
            "pitch-black",
            "--nodes",
            "400",
            "--rounds",
            "40",
            "--attackers",
            "0.01",
            "--requests",
            "300",
            "--seed",
            "2",
            "--json",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let text = veil_ok(&args);
        let last = text.lines().last().expect("a line").to_string();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        (last, v)
    };
    let (line, on) = run(&[]);
    let (_, off) = run(&["--no-defence"]);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(on["defence"], true);
    assert_eq!(off["defence"], false);
    assert_eq!(on["attacker_nodes"].as_u64(), Some(4), "{on}");
    // Undefended, the attackers take most honest locations and routing
    // with bounded stores collapses; defended, almost none, and success
    // stays near the run without attackers.
    assert!(f(&off, "pulled") > 0.5, "{off}");
    assert!(f(&on, "pulled") < 0.1, "{on}");
    assert!(f(&on, "success") > f(&off, "success") + 0.1, "{on} {off}");
    assert!(f(&on, "ratio") >= 0.9, "{on}");
    assert!(on["refused_crowded"].as_u64().unwrap_or(0) > 0, "{on}");
    assert!(tmp.path().join("pitch-black.svg").exists());
    if python_jsonschema() {
        let line_json = tmp.path().join("pitch-black-line.json");
        std::fs::write(&line_json, line).unwrap();
        python_reads("sim-pitch-black", &[&line_json]);
    }
}

/// The tree embedding has no defence against its own Pitch Black: one node
/// that claims the smallest root ticket and hands out intervals of width 1
/// pulls every node onto its point, and routing collapses. The experiment
/// measures it (and this test keeps the measurement honest: if a defence
/// lands, it must change here).
#[test]
fn one_dishonest_root_pulls_the_whole_tree_onto_its_point() {
    let tmp = tempfile::TempDir::new().unwrap();
    let out = tmp.path().to_str().unwrap();
    let text = veil_ok(&[
        "sim",
        "--experiment",
        "pitch-black",
        "--embedding",
        "tree",
        "--lookahead",
        "foaf",
        "--htl-rule",
        "progress",
        "--nodes",
        "500",
        "--rounds",
        "20",
        "--attackers",
        "0.002",
        "--requests",
        "300",
        "--seed",
        "3",
        "--json",
        "--out",
        out,
    ]);
    let last = text.lines().last().expect("a line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(v["embedding"], "tree");
    assert_eq!(v["defence"], false);
    assert_eq!(v["attacker_nodes"].as_u64(), Some(1), "{v}");
    assert!(f("success_without") >= 0.95, "{v}");
    assert!(f("pulled") > 0.9, "{v}");
    assert!(f("ratio") < 0.5, "{v}");
    assert!(tmp.path().join("pitch-black-tree.svg").exists());
}

/// The default one-size `swap` run: locations from the tree embedding's
/// messages, measured with FOAF lookahead and the progress rule; at 3,000
/// nodes it finds nearly everything after a few rounds, with short paths.
#[test]
fn a_one_size_tree_embedding_run_finds_its_keys() {
    let tmp = tempfile::TempDir::new().unwrap();
    let out = tmp.path().to_str().unwrap();
    let text = veil_ok(&[
        "sim",
        "--experiment",
        "swap",
        "--nodes",
        "3000",
        "--rounds",
        "5",
        "--requests",
        "500",
        "--seed",
        "4",
        "--json",
        "--out",
        out,
    ]);
    let last = text.lines().last().expect("a line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["embedding"], "tree", "{v}");
    assert_eq!(v["lookahead"], "foaf", "{v}");
    assert_eq!(v["htl_rule"], "progress", "{v}");
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(f("success") >= 0.95, "{v}");
    assert!(f("hops_mean") > 1.0 && f("hops_mean") < 12.0, "{v}");
    // Pre-order ranks are not short links: the tree does not need them.
    assert!(f("link_length") > f("ideal_link_length"), "{v}");
    assert_eq!(v["swaps"].as_u64(), Some(0), "{v}");
}

/// Churn while the tree forms and during the lookups: nodes leave and come
/// back on Freenet's session model, and a returning node learns its place
/// again; the run still finds most keys, and says how many were online.
#[test]
fn a_tree_embedding_run_under_churn_still_finds_its_keys() {
    let tmp = tempfile::TempDir::new().unwrap();
    let out = tmp.path().to_str().unwrap();
    let text = veil_ok(&[
        "sim",
        "--experiment",
        "swap",
        "--nodes",
        "2000",
        "--rounds",
        "20",
        "--churn",
        "60",
        "--requests",
        "400",
        "--seed",
        "5",
        "--json",
        "--out",
        out,
    ]);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(f("churn_minutes"), 60.0, "{v}");
    assert!(
        f("online_fraction") > 0.5 && f("online_fraction") < 0.95,
        "{v}"
    );
    assert!(f("success") >= 0.85, "{v}");
    // Swapping under churn is not simulated: refused, not ignored.
    let refused = common::veil(&[
        "sim",
        "--experiment",
        "swap",
        "--nodes",
        "500",
        "--rounds",
        "2",
        "--churn",
        "60",
        "--embedding",
        "swap",
        "--out",
        out,
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("tree embedding only"), "{err}");
}
