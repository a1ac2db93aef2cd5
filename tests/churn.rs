//! `veil testnet run --kill` and `--churn` over real processes on
//! `testnet/small-world-32.toml`, scaled down to fit a test's budget in a
//! debug build (the full-size figures are in `docs/operations.md`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::run_within;
use serde_json::Value;

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// `veil testnet run` on small-world-32 with `extra`, its JSON report.
fn run(dir: &Path, files: &str, size: &str, extra: &[&str]) -> Value {
    let topology = repo("testnet/small-world-32.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veil"));
    cmd.args(["testnet", "run", "--topology", &topology, "--dir"])
        .arg(dir)
        .args(["--files", files, "--file-size", size, "--fetches", "1"])
        .args(["--anonymity", "none", "--json"])
        .args(extra);
    let out = run_within(&mut cmd, Duration::from_secs(240));
    let _ = veil_down(dir);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn veil_down(dir: &Path) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["testnet", "down", "--dir"])
        .arg(dir)
        .output()
}

fn fetched(report: &Value) -> (usize, usize) {
    let fetches = report["workload"]["fetches"].as_array().unwrap();
    let ok = fetches.iter().filter(|f| f["verified"] == true).count();
    (ok, fetches.len())
}

/// A failed fetch is explained: its file lost a block, or the reason says
/// every block had a live holder.
fn reasons(report: &Value) -> Vec<String> {
    report["workload"]["fetches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verified"] != true)
        .map(|f| f["reason"].as_str().unwrap_or("NO REASON").to_string())
        .collect()
}

/// The failure target, scaled down: with FEC (over leaves and
/// manifests), replication and the top block's extra copies, every file
/// survives a quarter of the nodes killed; with FEC and replication off,
/// files are lost (so the test can fail).
#[test]
fn killing_a_quarter_loses_nothing_with_fec_and_replication_and_files_without() {
    let tmp = tempfile::tempdir().unwrap();
    let kill = ["--kill", "0.25", "--no-cache"];
    let on = run(&tmp.path().join("on"), "8", "256KiB", &kill);
    let off_args = [&kill[..], &["--redundancy", "0", "--replicate-htl", "0"]].concat();
    let off = run(&tmp.path().join("off"), "8", "256KiB", &off_args);
    let ((on_ok, n), (off_ok, m)) = (fetched(&on), fetched(&off));
    eprintln!("kill 0.25, no cache: FEC + replication {on_ok}/{n} files; neither {off_ok}/{m}");
    let killed = on["workload"]["failures"]["killed"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        killed >= 6,
        "{killed} killed: a quarter of at least 24 non-fetchers"
    );
    assert_eq!(on_ok, n, "with FEC and replication: {:?}", reasons(&on));
    assert!(off_ok < m, "nothing lost without FEC and replication");
    // Every loss is explained: blocks without a live holder, or (without
    // FEC, one unreached block is enough) every block had one.
    for reason in reasons(&off) {
        assert!(reason.contains("holder that stayed up"), "{reason}");
    }
}

#[test]
fn churn_fails_a_fetch_only_when_a_block_had_no_live_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let report = run(tmp.path(), "8", "128KiB", &["--churn", "0.3"]);
    let failures = &report["workload"]["failures"];
    let churned = failures["churned"].as_array().unwrap().len();
    assert!(
        churned >= 7,
        "{churned} churned: 30% of at least 24 non-fetchers"
    );
    let (ok, n) = fetched(&report);
    eprintln!("churn 0.3: {ok}/{n} fetched; {:?}", reasons(&report));
    for file in failures["files"].as_array().unwrap() {
        let i = file["file"].as_u64().unwrap();
        let fetch = report["workload"]["fetches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"].as_u64() == Some(i))
            .unwrap();
        if file["without_live_holder"] == 0 {
            assert_eq!(fetch["verified"], true, "file {i}: {fetch}");
        } else if fetch["verified"] != true {
            let reason = fetch["reason"].as_str().unwrap();
            assert!(reason.contains("had no holder that stayed up"), "{reason}");
        }
    }
}
