//! Testnets started elsewhere, by their directory: stop them (`down`),
//! kill or cut off one node, and recognise their node processes.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{io_err, netns, TestnetError};
use crate::formats::testnet::{TestnetInfo, TESTNET_FILE};

pub(super) fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Is `pid` a running `veil node` process for a directory under `dir`?
pub(super) fn is_our_node(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let dir_text = dir.to_string_lossy();
    args.iter().any(|a| a == "node") && args.iter().any(|a| a.starts_with(dir_text.as_ref()))
}

/// Stop a testnet started elsewhere, from its `testnet.json`, and remove
/// the namespaces its `netns.json` lists. Returns how many nodes were
/// signalled.
pub fn down(dir: &Path) -> Result<usize, TestnetError> {
    let dir = &std::path::absolute(dir).map_err(|e| io_err(dir, e))?;
    let stopped = stop_nodes(dir);
    if let Some(plan) = netns::NetnsPlan::load(dir)? {
        if !netns::is_root() {
            return Err(netns::NetnsError::NotRoot.into());
        }
        plan.teardown();
        let path = dir.join(netns::NETNS_FILE);
        match std::fs::remove_file(&path) {
            // The `up` that made it may have removed it as its nodes exited.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path, e)),
            _ => {}
        }
    }
    stopped
}

/// SIGKILL node `name` of a testnet started elsewhere. False when it was
/// not running.
pub fn kill(dir: &Path, name: &str) -> Result<bool, TestnetError> {
    let dir = &std::path::absolute(dir).map_err(|e| io_err(dir, e))?;
    let info = TestnetInfo::load(dir)?;
    let node = info
        .nodes
        .get(name)
        .ok_or_else(|| TestnetError::UnknownNode(name.to_string()))?;
    if !is_our_node(node.pid, dir) {
        return Ok(false);
    }
    if let Ok(pid) = i32::try_from(node.pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    Ok(true)
}

/// Cut node `name` of a `--netns` testnet off (`up = false`), or reconnect it.
pub fn set_link(dir: &Path, name: &str, up: bool) -> Result<(), TestnetError> {
    let plan = netns::NetnsPlan::load(dir)?
        .ok_or_else(|| netns::NetnsError::NotNetns(dir.display().to_string()))?;
    if !netns::is_root() {
        return Err(netns::NetnsError::NotRoot.into());
    }
    Ok(plan.set_link(name, up)?)
}

/// Every node `testnet.json` lists: SIGTERM, 10 s, SIGKILL.
pub(super) fn stop_nodes(dir: &Path) -> Result<usize, TestnetError> {
    if !dir.join(TESTNET_FILE).exists() {
        return Ok(0);
    }
    let info = TestnetInfo::load(dir)?;
    let mut signalled = Vec::new();
    for node in info.nodes.values() {
        if is_our_node(node.pid, dir) {
            terminate(node.pid);
            signalled.push(node.pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && signalled.iter().any(|&p| is_our_node(p, dir)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &signalled {
        if is_our_node(pid, dir) {
            if let Ok(p) = i32::try_from(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
    }
    Ok(signalled.len())
}
