//! `veil testnet` and `veil audit` end to end, over real node processes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_seed_example_over_real_processes_matches_the_in_process_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("af");
    let topology = repo("testnet/seed-a-f.toml");
    let expected = veil_ok(&["trace", &topology]);
    assert_eq!(expected.lines().count(), 13);

    let out = veil_ok(&[
        "testnet",
        "run",
        "--topology",
        &topology,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let first: Vec<&str> = out.lines().take(13).collect();
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(
        first, want,
        "real-process trace differs; full output:\n{out}"
    );
    assert!(out.contains("Invariants (0 violations)"), "{out}");
    // Deterministic HTL: the audit must show the originator leak plainly.
    assert!(
        out.contains("LEAK: a request arriving with htl = max"),
        "{out}"
    );

    // Every node wrote an audit log; only A has an origin entry.
    for name in ["A", "B", "C", "D", "E", "F"] {
        let audit = std::fs::read_to_string(dir.join(name).join("audit.jsonl")).unwrap();
        assert!(audit.lines().count() > 0, "{name} has no audit lines");
        let origin =
            std::fs::read_to_string(dir.join(name).join("origin.jsonl")).unwrap_or_default();
        assert_eq!(origin.is_empty(), name != "A", "{name}: {origin}");
    }
    // The nodes are stopped and testnet.json says so.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    assert_eq!(info["ready"], false);
    assert_eq!(info["nodes"].as_object().unwrap().len(), 6);
}

#[test]
fn a_small_world_workload_verifies_every_fetch_and_audits_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let dir_s = dir.to_str().unwrap();
    let out = veil(&[
        "testnet",
        "run",
        "--topology",
        &repo("testnet/small-world-32.toml"),
        "--dir",
        dir_s,
        "--files",
        "20",
        "--fetches",
        "3",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 60);
    assert!(fetches.iter().all(|f| f["verified"] == true));
    let audit = &report["audit"];
    for key in ["requests", "succeeded", "hops", "violations", "anonymity"] {
        assert!(!audit[key].is_null(), "audit JSON lacks {key}");
    }
    assert_eq!(audit["violations"]["total"], 0, "{}", audit["violations"]);
    let text = veil_ok(&["audit", dir_s]);
    assert!(text.contains("base rate"), "{text}");
    assert!(
        text.contains("precision") && text.contains("recall"),
        "{text}"
    );

    // --trace prints one request's path from the logs.
    let origin_line = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("origin.jsonl")).ok())
        .find_map(|t| t.lines().next().map(str::to_string))
        .unwrap();
    let uid = serde_json::from_str::<serde_json::Value>(&origin_line).unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let trace = veil_ok(&["audit", dir_s, "--trace", &uid]);
    assert!(trace.lines().next().unwrap().contains(" -> "), "{trace}");

    // Plant a leak: a workload file's first bytes, hex-encoded, in a node log.
    let plain = std::fs::read(dir.join("workload").join("f0.bin")).unwrap();
    let hex: String = plain[..32].iter().map(|b| format!("{b:02x}")).collect();
    let log = dir.join("n05").join("node.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!("oops {hex}\n"));
    std::fs::write(&log, text).unwrap();
    let r = veil(&["audit", dir_s]);
    assert!(!r.status.success(), "audit must fail on a leak");
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("leak: 1"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
}

#[test]
fn testnet_up_writes_its_description_and_down_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ring");
    let mut up = Command::new(VEIL)
        .args([
            "testnet",
            "up",
            "--topology",
            &repo("testnet/ring-16.toml"),
            "--dir",
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let text = std::fs::read_to_string(dir.join("testnet.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["ready"] == true {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "testnet never became ready");
        assert!(up.try_wait().unwrap().is_none(), "testnet up exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    let nodes = info["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 16);
    let mut ports = std::collections::HashSet::new();
    for (name, n) in nodes {
        assert_eq!(n["id"].as_str().unwrap().len(), 43, "{name}");
        assert!(ports.insert(n["listen"].as_str().unwrap().to_string()));
        assert!(ports.insert(n["client"].as_str().unwrap().to_string()));
        let pid = n["pid"].as_u64().unwrap();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "{name} not running"
        );
    }

    veil_ok(&["testnet", "down", "--dir", dir.to_str().unwrap()]);
    for (name, n) in nodes {
        let pid = n["pid"].as_u64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(cmdline.is_empty(), "{name} still running after down");
    }
    // `up` notices its nodes are gone and leaves.
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "testnet up did not exit after down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = up.wait_with_output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("peers up") && table.contains("n00"),
        "{table}"
    );
}

#[test]
fn testnet_gen_writes_parseable_connected_topologies() {
    let tmp = tempfile::tempdir().unwrap();
    for shape in ["ring", "random", "small-world"] {
        let path = tmp.path().join(format!("{shape}.toml"));
        veil_ok(&[
            "testnet",
            "gen",
            "--nodes",
            "40",
            "--degree",
            "4",
            "--shape",
            shape,
            "--seed",
            "3",
            "-o",
            path.to_str().unwrap(),
        ]);
        let t = veil::sim::topology::Topology::load(&path).unwrap();
        assert_eq!(t.nodes.len(), 40);
        assert!(t.is_connected(), "{shape}");
    }
    // The shipped topologies parse and are connected.
    for f in [
        "testnet/seed-a-f.toml",
        "testnet/ring-16.toml",
        "testnet/small-world-32.toml",
    ] {
        let t = veil::sim::topology::Topology::load(Path::new(&repo(f))).unwrap();
        assert!(t.is_connected(), "{f}");
    }
}
