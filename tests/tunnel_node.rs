//! Tunnel mode in real node processes: a testnet on small-world-32 where
//! every client get and put goes through a tunnel, with the originators'
//! tunnel builds and batches in the audit's ground truth (`origin.jsonl`),
//! and the client cache answering a second fetch without traffic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use veil::audit::record::{OriginEvent, OriginLine};
use veil::config::NodeConfig;
use veil::routing::Anonymity;

use common::{run_within, VEIL};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Stops whatever testnet is left in the directory, on drop.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if self.0.join("testnet.json").exists() {
            let _ = run_within(
                Command::new(VEIL)
                    .args(["testnet", "down", "--dir"])
                    .arg(&self.0),
                Duration::from_secs(60),
            );
        }
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_tunnel_testnet_on_small_world_32_fetches_everything_with_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let _down = Down(dir.clone());
    let mut cmd = Command::new(VEIL);
    cmd.args(["testnet", "run", "--topology"])
        .arg(repo("testnet/small-world-32.toml"))
        .arg("--dir")
        .arg(&dir)
        .args(["--files", "6", "--fetches", "2"])
        .args(["--anonymity", "tunnel", "--json"]);
    let out = run_within(&mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stdout}\n{stderr}", out.status));
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 12, "{stdout}");
    for f in fetches {
        assert_eq!(f["verified"], true, "{f}");
    }
    assert_eq!(report["audit"]["violations"]["total"], 0, "{stdout}");
    assert_eq!(
        NodeConfig::load(&dir.join("n00")).unwrap().anonymity,
        Anonymity::Tunnel
    );
    // Ground truth: the originators' tunnel builds and batches reached
    // origin.jsonl, each naming the neighbour it went to.
    let (mut builds, mut batches) = (0usize, 0usize);
    let mut flows = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let node = entry.unwrap().path();
        for line in lines_of(&node.join("origin.jsonl")) {
            let line: OriginLine = serde_json::from_str(&line).unwrap();
            if let OriginEvent::FlowStarted { to, .. } = line.event {
                if flows.insert((line.flow, to)) {
                    builds += 1;
                } else {
                    batches += 1;
                }
            }
        }
    }
    assert!(builds > 0, "no tunnel flow in the ground truth");
    assert!(batches > 0, "no batch in the ground truth");
    eprintln!(
        "tunnel testnet: {} fetches verified, {builds} tunnel flows and {batches} later batches \
         in origin.jsonl; audit: {}",
        fetches.len(),
        report["audit"]
    );
    // Every flow the ground truth names is the id of a tunnel build the
    // node sent on that link (its own audit.jsonl says so).
    for entry in std::fs::read_dir(&dir).unwrap() {
        let node = entry.unwrap().path();
        let origin = lines_of(&node.join("origin.jsonl"));
        if origin.is_empty() {
            continue;
        }
        let audit = lines_of(&node.join("audit.jsonl"));
        for line in origin {
            let line: OriginLine = serde_json::from_str(&line).unwrap();
            if let OriginEvent::FlowStarted { to, .. } = line.event {
                let flow = format!("\"flow\":\"{:016x}\"", line.flow);
                let peer = to.to_string();
                assert!(
                    audit
                        .iter()
                        .any(|l| l.contains("\"send\"") && l.contains(&flow) && l.contains(&peer)),
                    "{} to {peer}: no such send in {}",
                    line.flow,
                    node.display()
                );
            }
        }
    }
}
