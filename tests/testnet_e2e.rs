//! `veil testnet` and `veil audit` end to end, over real node processes.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::VEIL;

/// The longest any one `veil` command of these tests may run.
const DEADLINE: Duration = Duration::from_secs(240);

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// A `veil` child process and the testnet directory it may have started
/// nodes in: on drop (a failed assertion included) the child is killed and
/// any nodes still running there are stopped.
struct Guard {
    child: Option<Child>,
    testnet: Option<PathBuf>,
}

impl Guard {
    fn spawn(args: &[&str], testnet: Option<&Path>, stdout: Stdio) -> Guard {
        let child = Command::new(VEIL)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn veil");
        Guard {
            child: Some(child),
            testnet: testnet.map(Path::to_path_buf),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child still held")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.testnet.take() {
            if dir.join("testnet.json").exists() {
                // `down` gives each node 10 s, then SIGKILLs it.
                let _ = Command::new(VEIL)
                    .args(["testnet", "down", "--dir"])
                    .arg(&dir)
                    .stdin(Stdio::null())
                    .output();
            }
        }
    }
}

/// Read a pipe to its end on a thread (so the child never blocks on it).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Run `veil ARGS` to completion, killing it (and stopping any testnet in
/// `testnet`) if it runs past [`DEADLINE`].
fn veil_within(args: &[&str], testnet: Option<&Path>) -> Output {
    let mut guard = Guard::spawn(args, testnet, Stdio::piped());
    let stdout = drain(guard.child().stdout.take());
    let stderr = drain(guard.child().stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.child().try_wait().expect("wait for veil") {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "veil {args:?} still running after {DEADLINE:?}; killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    guard.child = None;
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// [`veil_within`], insisting on success; returns stdout.
fn veil_ok(args: &[&str], testnet: Option<&Path>) -> String {
    let out = veil_within(args, testnet);
    assert!(
        out.status.success(),
        "veil {args:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A rate is null (undefined) or a finite number in [0, 1].
fn assert_rate(v: &Value, what: &str) {
    if !v.is_null() {
        let x = v.as_f64().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(x.is_finite() && (0.0..=1.0).contains(&x), "{what} = {x}");
    }
}

/// The audit's numbers hang together, whatever the leaks: no violation,
/// every request accounted for, every classifier's confusion matrix
/// covering every observation, rates in [0, 1].
fn assert_audit_consistent(audit: &Value, requests: u64) {
    assert_eq!(audit["violations"]["total"], 0, "{}", audit["violations"]);
    let r = &audit["requests"];
    assert_eq!(count(&r["total"]), requests, "{r}");
    assert_eq!(count(&r["get"]) + count(&r["put"]), requests, "{r}");
    let s = &audit["succeeded"];
    assert!(count(&s["total"]) <= requests, "{s}");
    assert_eq!(
        count(&s["get"]) + count(&s["put"]),
        count(&s["total"]),
        "{s}"
    );
    assert_eq!(count(&audit["hops"]["count"]), count(&s["get"]));
    let a = &audit["anonymity"];
    let observations = count(&a["observations"]);
    let positives = count(&a["positives"]);
    assert!(observations > 0 && positives <= observations, "{a}");
    assert_rate(&a["base_rate"], "base rate");
    let classifiers = a["classifiers"].as_array().unwrap();
    assert!(!classifiers.is_empty());
    for c in classifiers {
        let (tp, fp, fn_, tn) = (
            count(&c["tp"]),
            count(&c["fp"]),
            count(&c["fn"]),
            count(&c["tn"]),
        );
        assert_eq!(tp + fp + fn_ + tn, observations, "{c}");
        assert_eq!(tp + fn_, positives, "{c}");
        assert_rate(&c["precision"], "precision");
        assert_rate(&c["recall"], "recall");
    }
    let e = &a["entropy"];
    assert_eq!(
        count(&e["requests_observed"]) + count(&e["requests_unobserved"]),
        requests,
        "{e}"
    );
    assert_rate(&e["mean_degree"], "mean degree");
    assert_rate(&e["min_degree"], "min degree");
}

#[test]
fn the_seed_example_over_real_processes_matches_the_golden_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("af");
    let topology = repo("testnet/seed-a-f.toml");
    let golden = std::fs::read_to_string(repo("tests/golden/seed-a-f.trace")).unwrap();
    let want: Vec<&str> = golden.lines().collect();
    assert_eq!(want.len(), 13);
    assert_eq!(veil_ok(&["trace", &topology], None), golden);

    let args = [
        "testnet",
        "run",
        "--topology",
        &topology,
        "--dir",
        dir.to_str().unwrap(),
        "--anonymity",
        "none",
    ];
    let out = veil_ok(&args, Some(&dir));
    let first: Vec<&str> = out.lines().take(13).collect();
    assert_eq!(
        first, want,
        "real-process trace differs; full output:\n{out}"
    );
    assert!(out.contains("Invariants (0 violations)"), "{out}");
    assert!(out.contains("testnet run passed"), "{out}");
    let audit: Value =
        serde_json::from_str(&veil_ok(&["audit", dir.to_str().unwrap(), "--json"], None)).unwrap();
    assert_audit_consistent(&audit, 1);
    // The golden path: 6 requests received, 3 DataFound hops.
    assert_eq!(audit["anonymity"]["observations"], 6);
    assert_eq!(audit["anonymity"]["positives"], 1);
    assert_eq!(audit["hops"]["max"], 3.0);

    // Every node wrote an audit log; only A has an origin entry.
    for name in ["A", "B", "C", "D", "E", "F"] {
        let audit = std::fs::read_to_string(dir.join(name).join("audit.jsonl")).unwrap();
        assert!(audit.lines().count() > 0, "{name} has no audit lines");
        let origin =
            std::fs::read_to_string(dir.join(name).join("origin.jsonl")).unwrap_or_default();
        assert_eq!(origin.is_empty(), name != "A", "{name}: {origin}");
    }
    // The nodes are stopped and testnet.json says so.
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    assert_eq!(info["ready"], false);
    assert_eq!(info["nodes"].as_object().unwrap().len(), 6);
}

#[test]
fn a_small_world_workload_verifies_every_fetch_and_audits_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let dir_s = dir.to_str().unwrap();
    let topology = repo("testnet/small-world-32.toml");
    let args = [
        "testnet",
        "run",
        "--topology",
        &topology,
        "--dir",
        dir_s,
        "--files",
        "20",
        "--fetches",
        "3",
        "--anonymity",
        "none",
        "--json",
    ];
    let report: Value = serde_json::from_str(&veil_ok(&args, Some(&dir))).unwrap();
    assert_eq!(report["ok"], true);
    let files = report["workload"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 20);
    assert!(files.iter().all(|f| f["inserted"] == true));
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 60);
    assert!(fetches.iter().all(|f| f["verified"] == true));
    // Each file is one or more block inserts plus one get per fetch and block.
    let audit = &report["audit"];
    let requests = count(&audit["requests"]["total"]);
    assert!(requests >= 80, "{}", audit["requests"]);
    assert_audit_consistent(audit, requests);
    assert_eq!(audit["violations"]["leak"]["checked"], true);
    assert_eq!(audit["violations"]["leak"]["workload_files"], 20);

    // `none` mode leaks: the audit prints the tables and exits non-zero on
    // its ANONYMITY: FAIL verdict (testnet run does not, without
    // --strict-anonymity).
    let r = veil_within(&["audit", dir_s], None);
    assert!(!r.status.success());
    let text = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(text.contains("ANONYMITY: FAIL"), "{text}");
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
    let uid = serde_json::from_str::<Value>(&origin_line).unwrap()["flow"]
        .as_str()
        .unwrap()
        .to_string();
    let trace = veil_ok(&["audit", dir_s, "--trace", &uid], None);
    assert!(trace.lines().next().unwrap().contains(" -> "), "{trace}");

    // Plant a leak: a workload file's first bytes, hex-encoded, in a node log.
    let plain = std::fs::read(dir.join("workload").join("f0.bin")).unwrap();
    let hex: String = plain[..32].iter().map(|b| format!("{b:02x}")).collect();
    let log = dir.join("n05").join("node.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!("oops {hex}\n"));
    std::fs::write(&log, text).unwrap();
    let r = veil_within(&["audit", dir_s], None);
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
    let args = [
        "testnet",
        "up",
        "--topology",
        &repo("testnet/ring-16.toml"),
        "--lookahead",
        "foaf",
        "--dir",
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.push(dir.to_str().unwrap());
    let mut up = Guard::spawn(&args, Some(&dir), Stdio::piped());
    let _stderr = drain(up.child().stderr.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let text = std::fs::read_to_string(dir.join("testnet.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["ready"] == true {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "testnet never became ready");
        assert!(
            up.child().try_wait().unwrap().is_none(),
            "testnet up exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let nodes = info["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 16);
    let mut ports = std::collections::HashSet::new();
    for (name, n) in nodes {
        assert_eq!(n["id"].as_str().unwrap().len(), 43, "{name}");
        assert!(ports.insert(n["listen"].as_str().unwrap().to_string()));
        assert!(ports.insert(n["client"]["addr"].as_str().unwrap().to_string()));
        let pid = n["pid"].as_u64().unwrap();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "{name} not running"
        );
    }

    // FOAF routing: on a ring each neighbour announces its other
    // neighbour's location (the one of this node it also lists is dropped).
    let n00 = &nodes["n00"]["client"];
    let (addr, cookie) = (
        n00["addr"].as_str().unwrap(),
        n00["cookie"].as_str().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = veil_ok(
            &["status", "--node", addr, "--cookie", cookie, "--json"],
            None,
        );
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        let peers = status["peers"].as_array().unwrap();
        let heard: Vec<u64> = peers
            .iter()
            .map(|p| p["neighbours_announced"].as_u64().unwrap())
            .collect();
        if peers.len() == 2 && heard == [1, 1] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "neighbourhoods not heard: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    veil_ok(&["testnet", "down", "--dir", dir.to_str().unwrap()], None);
    for (name, n) in nodes {
        let pid = n["pid"].as_u64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(cmdline.is_empty(), "{name} still running after down");
    }
    // `up` notices its nodes are gone and leaves.
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.child().try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "testnet up did not exit after down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = up.child.take().unwrap().wait_with_output().unwrap();
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
        veil_ok(
            &[
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
            ],
            None,
        );
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

/// `--insert-end sink` reaches every node's `node.toml`, and rule 8 holds
/// over real processes: every fetch verifies while an insert costs about
/// one `RejectedLoop` (under the default `walk`, about 6 on this graph).
#[test]
fn inserts_that_end_at_their_sink_loop_little_and_are_all_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sink");
    let dir_s = dir.to_str().unwrap();
    let topology = repo("testnet/small-world-32.toml");
    let args = [
        "testnet",
        "run",
        "--topology",
        &topology,
        "--dir",
        dir_s,
        "--files",
        "20",
        "--fetches",
        "2",
        "--anonymity",
        "none",
        "--insert-end",
        "sink",
        "--json",
    ];
    let report: Value = serde_json::from_str(&veil_ok(&args, Some(&dir))).unwrap();
    assert_eq!(report["ok"], true);
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 40);
    assert!(fetches.iter().all(|f| f["verified"] == true));
    let config = std::fs::read_to_string(dir.join("n00").join("node.toml")).unwrap();
    assert!(config.contains("insert_end = \"sink\""), "{config}");
    // The audit log says which rule the node ran.
    let log = std::fs::read_to_string(dir.join("n00").join("audit.jsonl")).unwrap();
    let rules = log
        .lines()
        .find(|l| l.contains("\"routing_rules\""))
        .unwrap();
    assert!(rules.contains("\"insert_end\":\"sink\""), "{rules}");
    let audit = &report["audit"];
    let puts = count(&audit["block_requests"]["put"]);
    let put_loops = count(&audit["loops_by_op"]["put"]);
    assert!(puts >= 20, "{}", audit["block_requests"]);
    let per_insert = put_loops as f64 / puts as f64;
    assert!(per_insert <= 1.5, "{per_insert} loops per insert");
}
