//! `node.toml`: a node's configuration. Every key is documented in
//! `docs/operations.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::PeerKey;
use crate::message::Htl;

/// Name of the config file inside a node directory.
pub const CONFIG_FILE: &str = "node.toml";
/// Name of the identity (static secret key) file inside a node directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A size in bytes, written as a number or a string such as "256MiB".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSetting {
    Bytes(u64),
    Text(String),
}

impl SizeSetting {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeSetting::Bytes(n) => Ok(*n),
            SizeSetting::Text(t) => crate::store::parse_size(t).map_err(|e| e.to_string()),
        }
    }
}

/// One friend this node links to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Where the peer listens.
    pub address: SocketAddr,
    /// The peer's static public key (base64url).
    pub public_key: PeerKey,
    /// A label for logs and status output (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The contents of `node.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address the node accepts peer links on.
    pub listen: SocketAddr,
    /// Address of the local client API (loopback unless the operator says otherwise).
    pub client: SocketAddr,
    /// Location on the key circle in [0, 1); derived from the public key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<f64>,
    /// Directory of the datastore, relative to the node directory unless absolute.
    #[serde(default = "default_store_dir")]
    pub store_dir: PathBuf,
    /// Bound on the store, and on the cache unless `cache_size` is set.
    #[serde(default = "default_store_size")]
    pub store_size: SizeSetting,
    /// Bound on the cache (defaults to `store_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<SizeSetting>,
    /// Largest hops-to-live accepted, and the budget of requests this node originates.
    #[serde(default = "default_max_htl")]
    pub max_htl: Htl,
    /// Requests one peer may have in flight through this node.
    #[serde(default = "default_max_inflight")]
    pub max_inflight_per_peer: usize,
    /// Allow the client API to listen on a non-loopback address.
    #[serde(default)]
    pub client_public: bool,
    /// Testnet mode: audit logs, and the client API's `place` command.
    #[serde(default)]
    pub testnet: bool,
    /// Friends.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

fn default_store_dir() -> PathBuf {
    PathBuf::from("store")
}
fn default_store_size() -> SizeSetting {
    SizeSetting::Text("256MiB".into())
}
fn default_max_htl() -> Htl {
    crate::routing::DEFAULT_MAX_HTL
}
fn default_max_inflight() -> usize {
    64
}

impl NodeConfig {
    /// A fresh config with defaults.
    pub fn new(listen: SocketAddr, client: SocketAddr, location: Option<f64>) -> NodeConfig {
        NodeConfig {
            listen,
            client,
            location,
            store_dir: default_store_dir(),
            store_size: default_store_size(),
            cache_size: None,
            max_htl: default_max_htl(),
            max_inflight_per_peer: default_max_inflight(),
            client_public: false,
            testnet: false,
            peers: Vec::new(),
        }
    }

    /// Read and validate `DIR/node.toml`.
    pub fn load(dir: &Path) -> Result<NodeConfig, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(config)
    }

    /// Write `DIR/node.toml`.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|source| ConfigError::Write { path, source })
    }

    /// Check values that serde alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(x) = self.location {
            if !(0.0..1.0).contains(&x) {
                return Err(format!("location {x} is not in [0, 1)"));
            }
        }
        if self.max_htl == 0 {
            return Err("max_htl must be at least 1".into());
        }
        if self.max_inflight_per_peer == 0 {
            return Err("max_inflight_per_peer must be at least 1".into());
        }
        self.store_size
            .bytes()
            .map_err(|e| format!("store_size: {e}"))?;
        if let Some(c) = &self.cache_size {
            c.bytes().map_err(|e| format!("cache_size: {e}"))?;
        }
        if !self.client.ip().is_loopback() && !self.client_public {
            return Err(format!(
                "client address {} is not loopback; set client_public = true to allow it",
                self.client
            ));
        }
        Ok(())
    }

    /// The store directory, resolved against the node directory.
    pub fn store_path(&self, dir: &Path) -> PathBuf {
        if self.store_dir.is_absolute() {
            self.store_dir.clone()
        } else {
            dir.join(&self.store_dir)
        }
    }
}
