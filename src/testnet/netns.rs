//! `--netns`: every node of a testnet in a network namespace of its own,
//! with its own IPv4 address on a bridge the testnet owns.
//!
//! For testnet `ID` (four hex digits drawn at `up`) and node `i`:
//! namespace `veil-ID-i`; a veth pair whose outer end `vhID-i` is a port of
//! the bridge `vbID` and whose inner end is `eth0` in the namespace, with
//! address `10.77.x.y/16` (`i`th from 10.77.0.1). The bridge has no address:
//! the nodes reach each other and nothing else. A node's client API is its
//! Unix socket (a path in the file system, reachable from outside the
//! namespace).
//!
//! Before creating anything `up` writes the whole plan to `DIR/netns.json`;
//! [`teardown`] deletes whatever of it exists. `down`, the end of `up` and
//! `run` (Ctrl-C included) and a new `up` in the same directory after a
//! crash all call it.
//!
//! A bandwidth cap is a `tc` token bucket (`tbf`) on both ends of the
//! node's veth: the outer end shapes what the node receives, the inner end
//! what it sends. `cut` sets the outer end down (the node's packets go
//! nowhere, and nobody's reach it); `heal` sets it up again.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::net::Bandwidth;

/// The testnet's state file: what `up` created (or was about to).
pub const NETNS_FILE: &str = "netns.json";

/// Why the namespaces could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "--netns needs root (network namespaces, veth pairs and a bridge); \
         run as root, or use the loopback testnet (the same command without --netns)"
    )]
    NotRoot,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} has no netns.json: it is not a --netns testnet")]
    NotNetns(String),
    #[error("the testnet has no node {0}")]
    UnknownNode(String),
    #[error("{path}: {message}")]
    State { path: String, message: String },
    #[error(
        "this kernel has no netem, so a --netns testnet cannot add latency or loss; \
         the topology asks for {0}. Use `veil testnet export --shadow` \
         (docs/shadow.md) for links with latency and loss"
    )]
    NoNetem(String),
}

/// One node's namespace, link and address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetnsNode {
    /// The node's name in the topology.
    pub name: String,
    /// The network namespace (`ip netns`).
    pub namespace: String,
    /// The outer end of its veth pair, a port of the bridge.
    pub veth: String,
    /// Its address inside the namespace (on `eth0`, /16).
    pub address: Ipv4Addr,
    /// Its bandwidth cap in bits per second, both ways (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bps: Option<u64>,
}

/// `netns.json`: what a `--netns` testnet created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetnsPlan {
    /// The schema version (docs/formats.md).
    pub version: crate::formats::Version<1>,
    /// The testnet's id (four hex digits), in every name below.
    pub id: String,
    /// The bridge every node's veth is a port of.
    pub bridge: String,
    pub nodes: Vec<NetnsNode>,
}

/// Is this process root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Node `i`'s address: 10.77.0.1 upwards.
pub fn node_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 0, 1)) + i as u32)
}

impl NetnsPlan {
    /// Names for `names.len()` nodes under a fresh id, each with its cap.
    pub fn new(names: &[String], caps: &[Option<Bandwidth>]) -> NetnsPlan {
        use rand::Rng;
        let id = format!("{:04x}", rand::thread_rng().gen::<u16>());
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| NetnsNode {
                name: name.clone(),
                namespace: format!("veil-{id}-{i}"),
                veth: format!("vh{id}-{i}"),
                address: node_address(i),
                bandwidth_bps: caps.get(i).copied().flatten().map(|b| b.0),
            })
            .collect();
        NetnsPlan {
            version: Default::default(),
            bridge: format!("vb{id}"),
            id,
            nodes,
        }
    }

    pub fn load(dir: &Path) -> Result<Option<NetnsPlan>, NetnsError> {
        let path = dir.join(NETNS_FILE);
        let state = |message: String| NetnsError::State {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| state(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state(e.to_string())),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), NetnsError> {
        let path = dir.join(NETNS_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| NetnsError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text + "\n").map_err(|e| NetnsError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Node `name`'s entry.
    pub fn node(&self, name: &str) -> Result<&NetnsNode, NetnsError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| NetnsError::UnknownNode(name.to_string()))
    }

    /// Create the bridge, and every node's namespace, veth pair, address
    /// and cap. On failure, whatever was made is removed again.
    pub fn create(&self) -> Result<(), NetnsError> {
        let made = self.create_all();
        if made.is_err() {
            self.teardown();
        }
        made
    }

    fn create_all(&self) -> Result<(), NetnsError> {
        let br = self.bridge.as_str();
        ip(&["link", "add", br, "type", "bridge"])?;
        ip(&["link", "set", br, "up"])?;
        for node in &self.nodes {
            let (ns, veth) = (node.namespace.as_str(), node.veth.as_str());
            let inner = format!("vn{}", &veth[2..]);
            ip(&["netns", "add", ns])?;
            ip(&["link", "add", veth, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", ns])?;
            ip(&["-n", ns, "link", "set", &inner, "name", "eth0"])?;
            let addr = format!("{}/16", node.address);
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["link", "set", veth, "master", br])?;
            ip(&["link", "set", veth, "up"])?;
            if let Some(bps) = node.bandwidth_bps {
                cap(None, veth, bps)?;
                cap(Some(ns), "eth0", bps)?;
            }
        }
        Ok(())
    }

    /// Delete every namespace, veth and the bridge of the plan that exists
    /// (deleting a namespace deletes its end of the veth, and the pair with
    /// it). Errors are ignored: a part already gone is what is wanted.
    pub fn teardown(&self) {
        for node in &self.nodes {
            let _ = ip(&["netns", "del", &node.namespace]);
            let _ = ip(&["link", "del", &node.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }

    /// Cut node `name` off (`up = false`) or reconnect it.
    pub fn set_link(&self, name: &str, up: bool) -> Result<(), NetnsError> {
        let node = self.node(name)?;
        ip(&["link", "set", &node.veth, if up { "up" } else { "down" }])
    }

    /// Does every namespace of the plan exist?
    pub fn exists(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| Path::new("/run/netns").join(&n.namespace).exists())
    }
}

/// A token bucket of `bps` on `dev` (in namespace `ns`): bursts of 10 ms
/// of traffic (at least 16 KiB), packets queued at most 100 ms.
fn cap(ns: Option<&str>, dev: &str, bps: u64) -> Result<(), NetnsError> {
    let rate = format!("{bps}bit");
    let burst = (bps / 8 / 100).max(16 * 1024).to_string();
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend([
        "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency",
        "100ms",
    ]);
    run("tc", &args)
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run("ip", args)
}

/// Run `program args`, at most 10 s; its stderr is the error.
fn run(program: &str, args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetnsError::Command {
                    command,
                    stderr: "did not finish within 10 s".into(),
                });
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.by_ref().take(4096).read_to_string(&mut stderr);
    }
    Err(NetnsError::Command {
        command,
        stderr: stderr.trim().to_string(),
    })
}

/// Refuse a `[net]` table that asks for latency or loss: this kernel has
/// no netem to emulate them.
pub fn refuse_delay_or_loss(net: &super::net::NetSpec) -> Result<(), NetnsError> {
    if !net.wants_delay_or_loss() {
        return Ok(());
    }
    let what = if net.links.values().any(|l| l.loss.is_some_and(|p| p > 0.0)) {
        "packet loss"
    } else {
        "link latency"
    };
    Err(NetnsError::NoNetem(what.into()))
}
