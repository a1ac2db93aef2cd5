//! docs/veil-node.service: `systemd-analyze verify` accepts it (with its
//! Exec lines pointed at the binary under test, since verify insists that
//! they exist), it keeps the hardening docs/operations.md promises, and
//! systemd's own exposure score for it stays low.

mod common;

use std::path::Path;
use std::process::Command;

const ANALYZE: &str = "/usr/bin/systemd-analyze";

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/veil-node.service");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_unit_is_hardened_as_documented() {
    let unit = unit_text();
    for line in [
        "User=veil",
        "StateDirectory=veil",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "ExecStartPre=/usr/local/bin/veil node /var/lib/veil --check",
        "ExecStart=/usr/local/bin/veil node /var/lib/veil\n",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
    let ops =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    assert!(ops.contains("veil-node.service"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !Path::new(ANALYZE).exists() {
        eprintln!("skipped: {ANALYZE} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("veil-node.service");
    std::fs::write(
        &unit,
        unit_text().replace("/usr/local/bin/veil", common::VEIL),
    )
    .unwrap();
    let out = Command::new(ANALYZE)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("veil-node.service"),
        "verify complains: {stderr}"
    );

    // The exposure score systemd gives the sandbox (0 best, 10 worst).
    let out = Command::new(ANALYZE)
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(score) = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for veil-node.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
    else {
        eprintln!("systemd-analyze security --offline is not supported here: {text}");
        return;
    };
    assert!(score <= 2.0, "exposure {score}: {text}");
}
