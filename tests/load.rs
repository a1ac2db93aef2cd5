//! A node under load (issue 12): its memory stays within the `memory`
//! setting however much passes through it, and one friend's flood leaves
//! the others their share. Real `veil node` processes; the flooder is the
//! test itself over a real link (`veil::link`), so it can send as fast as
//! the node reads.

mod common;

use std::time::Duration;

use common::*;
use veil::client::{Client, NodeStatus};

/// Read a field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn status(rt: &tokio::runtime::Runtime, node: &TestNode) -> NodeStatus {
    rt.block_on(async {
        let mut c = Client::connect(node.client, Duration::from_secs(5))
            .await
            .unwrap();
        c.status().await.unwrap()
    })
}

const MIB: u64 = 1024 * 1024;

/// 256 MiB of inserts pass through the middle node of a 3-node chain; its
/// peak resident set (`VmHWM` in `/proc`) stays within its `memory`
/// setting (the default, 48 MiB), and `veil status` reports the same bound.
#[test]
fn a_relay_stays_within_its_memory_bound_while_256_mib_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes: Vec<TestNode> = [0.2, 0.5, 0.8]
        .iter()
        .enumerate()
        .map(|(i, loc)| TestNode::init(tmp.path(), &format!("n{i}"), *loc))
        .collect();
    nodes[0].befriend(&nodes[1]);
    nodes[1].befriend(&nodes[2]);
    for n in &nodes {
        n.set("anonymity = \"none\"");
        n.set("store_size = \"400MiB\"");
        n.set("cache_size = \"64MiB\"");
        // The client keeps 128 inserts in flight through its only link.
        n.set("router.max_inflight_per_peer = 256");
    }
    for n in &mut nodes {
        n.start(&[]);
    }
    for (i, n) in nodes.iter().enumerate() {
        n.wait_peers(&rt, if i == 1 { 2 } else { 1 });
    }
    let relay_pid = nodes[1].child.as_ref().unwrap().id();
    let before = proc_kib(relay_pid, "VmRSS:");

    // With its check blocks, a 128 MiB file is 256 MiB of blocks.
    let len = 128 * MIB as usize;
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, bytes(len, 12)).unwrap();
    let first = nodes[0].client.to_string();
    let mut put = std::process::Command::new(env!("CARGO_BIN_EXE_veil"));
    put.args(["put", "--node", &first, input.to_str().unwrap()]);
    let out = run_within(&mut put, Duration::from_secs(400));
    for n in &nodes {
        let s = status(&rt, n);
        println!(
            "{}: {:?} {:?} pending {}",
            n.dir.display(),
            s.load,
            s.stats,
            s.pending
        );
    }
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(std::fs::remove_file(&input));

    let s = status(&rt, &nodes[1]);
    let peak = proc_kib(relay_pid, "VmHWM:");
    let now = proc_kib(relay_pid, "VmRSS:");
    println!(
        "relay: {} requests received; RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB; \
         bound {:.0} MiB; status says rss {:.1} MiB peak {:.1} MiB",
        s.stats.requests_received,
        before as f64 / MIB as f64,
        now as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        s.load.memory_limit as f64 / MIB as f64,
        s.load.rss_bytes as f64 / MIB as f64,
        s.load.rss_peak_bytes as f64 / MIB as f64,
    );
    // Every block of the file and its check blocks crossed the relay.
    let blocks = (2 * len / veil::keys::BLOCK_LEN) as u64;
    assert!(
        s.stats.requests_received >= blocks,
        "only {} inserts reached the relay",
        s.stats.requests_received
    );
    assert_eq!(s.load.memory_limit, veil::config::DEFAULT_MEMORY);
    assert!(s.load.rss_peak_bytes > 0 && s.load.rss_peak_bytes <= peak);
    assert!(
        peak <= s.load.memory_limit,
        "relay peak RSS {peak} over the bound {}",
        s.load.memory_limit
    );
}
