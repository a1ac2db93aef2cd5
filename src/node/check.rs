//! `veil node DIR --check`: everything `veil node` reads before it opens a
//! socket (node.toml, identity.key, the peers, where the store and the
//! client API would be), loaded the same way and checked, without starting
//! anything. A node directory that passes here starts unless an address is
//! taken or the store cannot be opened.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{NodeError, NodeSetup};
use crate::client::Endpoint;
use crate::identity::PeerKey;

/// The longest path a Unix socket can be bound at (`sun_path` holds 108
/// bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Why a node directory would not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Load(#[from] NodeError),
    #[error("peer {peer} is this node's own public key")]
    PeerIsSelf { peer: String },
    #[error("peers {first} and {second} have the same public key {key}")]
    DuplicatePeer {
        first: String,
        second: String,
        key: PeerKey,
    },
    #[error("peer {peer} is at {addr}, this node's own listen address")]
    PeerAtOwnAddress { peer: String, addr: SocketAddr },
    #[error("peer {peer} has port 0 ({addr}): no node can be reached there")]
    PeerPortZero { peer: String, addr: SocketAddr },
    #[error(
        "client socket {path} is {len} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH} \
         (move the node directory, or set `client` to a TCP address)"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("store {0} exists and is not a directory")]
    StoreNotDir(PathBuf),
}

/// One friend, as the check read it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CheckedPeer {
    /// The peer's label in node.toml, or its index (`#0`, `#1`, ...).
    pub name: String,
    pub address: SocketAddr,
    pub public_key: PeerKey,
}

/// What `veil node DIR --check --json` prints for a directory that would
/// start (docs/formats.md).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct NodeCheck {
    pub version: crate::formats::Version<1>,
    /// The node directory.
    pub dir: PathBuf,
    /// This node's public key (from identity.key).
    pub public_key: PeerKey,
    /// Where the node would accept peer links.
    pub listen: SocketAddr,
    /// Where its client API would be.
    pub client: Endpoint,
    /// Its location on the key circle.
    pub location: f64,
    /// The location comes from node.toml (`false`: derived from the key).
    pub location_configured: bool,
    /// `tunnel`, `freenet` or `none`.
    pub anonymity: String,
    /// Testnet mode (audit logs) on, from node.toml or `--testnet`.
    pub testnet: bool,
    /// The store directory, resolved against the node directory.
    pub store_dir: PathBuf,
    pub store_bytes: u64,
    pub cache_bytes: u64,
    /// The node's memory bound.
    pub memory_bytes: u64,
    /// The async runtime's threads (0: one per core).
    pub worker_threads: usize,
    pub peers: Vec<CheckedPeer>,
    /// Settings that work but are probably not meant (no peers, say).
    pub warnings: Vec<String>,
}

/// Check the node directory `dir` as `veil node DIR` (with `--testnet`
/// when `testnet`) would load it.
pub fn check(dir: &Path, testnet: bool) -> Result<NodeCheck, CheckError> {
    let mut setup = NodeSetup::load(dir)?;
    setup.config.testnet |= testnet;
    let config = &setup.config;
    let own_key = setup.identity.public();

    let mut peers = Vec::with_capacity(config.peers.len());
    let mut seen: Vec<(PeerKey, String)> = Vec::new();
    for (i, p) in config.peers.iter().enumerate() {
        let name = p.name.clone().unwrap_or_else(|| format!("#{i}"));
        if p.public_key == own_key {
            return Err(CheckError::PeerIsSelf { peer: name });
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == p.public_key) {
            return Err(CheckError::DuplicatePeer {
                first: first.clone(),
                second: name,
                key: p.public_key,
            });
        }
        if p.address == config.listen {
            return Err(CheckError::PeerAtOwnAddress {
                peer: name,
                addr: p.address,
            });
        }
        if p.address.port() == 0 {
            return Err(CheckError::PeerPortZero {
                peer: name,
                addr: p.address,
            });
        }
        seen.push((p.public_key, name.clone()));
        peers.push(CheckedPeer {
            name,
            address: p.address,
            public_key: p.public_key,
        });
    }

    let client = Endpoint::of_config(dir, config.client);
    if let Endpoint::Unix { path } = &client {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(CheckError::SocketPathTooLong {
                path: path.clone(),
                len,
            });
        }
    }
    let store_dir = config.store_path(dir);
    if store_dir.exists() && !store_dir.is_dir() {
        return Err(CheckError::StoreNotDir(store_dir));
    }

    let mut warnings = Vec::new();
    if peers.is_empty() {
        warnings.push("no peers: the node will have no links until one is added".to_string());
    }
    if config.listen.port() == 0 {
        warnings.push(format!(
            "listen port 0 ({}): the kernel picks a port, which no friend's node.toml can name",
            config.listen
        ));
    }
    let key_path = dir.join(crate::config::IDENTITY_FILE);
    if let Ok(meta) = std::fs::metadata(&key_path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warnings.push(format!(
                "{} is readable by group or others; it should be mode 0600",
                key_path.display()
            ));
        }
    }
    let addresses: BTreeSet<SocketAddr> = peers.iter().map(|p| p.address).collect();
    if addresses.len() < peers.len() {
        warnings.push("two peers share an address; one of them cannot be reached".to_string());
    }
    // Validated by NodeSetup::load; a setting that failed would have
    // returned an error there.
    let bytes = |r: Result<u64, crate::config::InvalidSetting>| r.unwrap_or(0);
    Ok(NodeCheck {
        version: Default::default(),
        dir: dir.to_path_buf(),
        public_key: own_key,
        listen: config.listen,
        client,
        location: setup.location.as_f64(),
        location_configured: config.location.is_some(),
        anonymity: config.anonymity.to_string(),
        testnet: config.testnet,
        store_dir,
        store_bytes: bytes(config.store_bytes()),
        cache_bytes: bytes(config.cache_bytes()),
        memory_bytes: bytes(config.memory_bytes()),
        worker_threads: config.runtime.worker_threads,
        peers,
        warnings,
    })
}

impl NodeCheck {
    /// A few lines for the operator.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let _ = writeln!(out, "node {} would start", self.dir.display());
        let _ = writeln!(out, "  public key  {}", self.public_key);
        let _ = writeln!(out, "  listen      {}", self.listen);
        let client = match &self.client {
            Endpoint::Unix { path } => format!("unix socket {}", path.display()),
            Endpoint::Tcp { addr, cookie } => {
                format!("tcp {addr} (cookie {})", cookie.display())
            }
        };
        let _ = writeln!(out, "  client API  {client}");
        let from = if self.location_configured {
            "node.toml"
        } else {
            "from the key"
        };
        let _ = writeln!(out, "  location    {:.6} ({from})", self.location);
        let _ = writeln!(
            out,
            "  anonymity   {}{}",
            self.anonymity,
            if self.testnet { ", testnet mode" } else { "" }
        );
        let _ = writeln!(
            out,
            "  store       {} ({:.0} MiB, cache {:.0} MiB), memory {:.0} MiB",
            self.store_dir.display(),
            mib(self.store_bytes),
            mib(self.cache_bytes),
            mib(self.memory_bytes)
        );
        let _ = writeln!(out, "  peers       {}", self.peers.len());
        for p in &self.peers {
            let _ = writeln!(out, "    {:<12} {}", p.name, p.address);
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}
