//! `node.toml`: a node's configuration. Every key is documented in
//! `docs/operations.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::PeerKey;
use crate::link::LinkConfig;
use crate::routing::swap::SwapConfig;
use crate::routing::{Anonymity, RouterConfig};
use crate::store::SizeError;

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
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {}", .source.message())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: cannot write the configuration as TOML: {source}")]
    Serialize {
        path: PathBuf,
        #[source]
        source: toml::ser::Error,
    },
    #[error("{path}: {source}")]
    Edit {
        path: PathBuf,
        #[source]
        source: Box<toml_edit::TomlError>,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: InvalidSetting,
    },
}

/// A value that parses but cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidSetting {
    #[error("location {0} is not in [0, 1)")]
    Location(f64),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("link.redial_max_ms must be at least link.redial_min_ms")]
    RedialBounds,
    #[error("{setting}: {source}")]
    Size {
        setting: &'static str,
        #[source]
        source: SizeError,
    },
    #[error(
        "store_size is {0} bytes, smaller than one block ({block} bytes): such a store could hold nothing",
        block = crate::keys::BLOCK_LEN
    )]
    StoreTooSmall(u64),
    #[error("memory is {0} bytes; a node needs at least {min} bytes", min = MIN_MEMORY)]
    MemoryTooSmall(u64),
    #[error("link.reserved_handshakes must be less than link.max_handshakes")]
    ReservedHandshakes,
    #[error("runtime.worker_threads is {0}; at most {MAX_WORKER_THREADS} (0: one per core)")]
    TooManyThreads(usize),
    #[error("client address {0} is not loopback; set client_public = true to allow it")]
    ClientNotLoopback(SocketAddr),
    #[error("gateway address {0} is not loopback; set gateway_public = true to allow it")]
    GatewayNotLoopback(SocketAddr),
    #[error("fcp address {0} is not loopback; set fcp_public = true to allow it")]
    FcpNotLoopback(SocketAddr),
}

/// The default `memory` bound: what suits a small machine.
pub const DEFAULT_MEMORY: u64 = 48 * 1024 * 1024;
/// The smallest `memory` a node accepts.
pub const MIN_MEMORY: u64 = 16 * 1024 * 1024;

/// A size in bytes, written as a number or a string such as "256MiB".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSetting {
    Bytes(u64),
    Text(String),
}

impl SizeSetting {
    pub fn bytes(&self) -> Result<u64, SizeError> {
        match self {
            SizeSetting::Bytes(n) => Ok(*n),
            SizeSetting::Text(t) => crate::store::parse_size(t),
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

/// The node runtime's own bounds and timeouts: the `[runtime]` table of
/// `node.toml`. Every field has a default; see `docs/operations.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Inputs (link messages, client requests) queued for the router task.
    pub router_queue: usize,
    /// Blocks waiting for the cache's writer thread (best effort: beyond
    /// this a block is simply not cached).
    pub cache_writes_in_flight: usize,
    /// Client API connections served at once; a connection beyond them is
    /// answered at once with an error and closed.
    pub client_max_connections: usize,
    /// How long one client request (a get or an insert) may take inside
    /// the node before the client is told it timed out.
    pub client_request_timeout_secs: u64,
    /// A client connection with no request for this long is closed.
    pub client_idle_timeout_secs: u64,
    /// A client that does not take an answer (or, over TCP, send its
    /// cookie) within this time is disconnected.
    pub client_write_timeout_secs: u64,
    /// Blocks the client cache holds (tunnel mode: blocks this node's own
    /// client fetched, read only by that client); least recently used
    /// blocks are dropped beyond it.
    pub client_cache_blocks: usize,
    /// On SIGTERM, how long the node waits for the requests in flight
    /// through it to finish before it closes its links (0: not at all).
    pub shutdown_grace_ms: u64,
    /// Messages one link may have waiting for the router task. Links are
    /// served in turn; a link whose queue is full is not read until the
    /// router catches up, so one flooding friend slows only itself.
    pub link_queue: usize,
    /// New requests (`DataRequest`, `InsertRequest`) a friend may send per
    /// second; beyond it they are answered `RejectedOverload` at once
    /// (0: no limit).
    pub peer_requests_per_sec: u32,
    /// How many requests beyond the rate a friend may send in one burst.
    pub peer_request_burst: u32,
    /// Threads the node's async runtime runs its tasks on (links, router,
    /// client API); 0: one per core. Nodes that share a machine's cores
    /// can do better with 1 (`veil bench --chain` sets it): a message then
    /// passes from a link's reader to the router and on to a link's writer
    /// without waking another thread. At most [`MAX_WORKER_THREADS`].
    pub worker_threads: usize,
}

/// The largest `runtime.worker_threads`.
pub const MAX_WORKER_THREADS: usize = 256;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            router_queue: 1024,
            cache_writes_in_flight: 64,
            client_max_connections: 1024,
            client_request_timeout_secs: 120,
            client_idle_timeout_secs: 300,
            client_write_timeout_secs: 10,
            client_cache_blocks: 1024,
            shutdown_grace_ms: 5_000,
            link_queue: 64,
            peer_requests_per_sec: 4096,
            peer_request_burst: 1024,
            worker_threads: 0,
        }
    }
}

impl RuntimeConfig {
    /// Every bound and timeout by its `node.toml` name: none may be zero.
    pub fn positive_settings(&self) -> [(&'static str, u64); 9] {
        [
            ("runtime.router_queue", self.router_queue as u64),
            (
                "runtime.cache_writes_in_flight",
                self.cache_writes_in_flight as u64,
            ),
            (
                "runtime.client_max_connections",
                self.client_max_connections as u64,
            ),
            (
                "runtime.client_request_timeout_secs",
                self.client_request_timeout_secs,
            ),
            (
                "runtime.client_idle_timeout_secs",
                self.client_idle_timeout_secs,
            ),
            (
                "runtime.client_write_timeout_secs",
                self.client_write_timeout_secs,
            ),
            (
                "runtime.client_cache_blocks",
                self.client_cache_blocks as u64,
            ),
            ("runtime.link_queue", self.link_queue as u64),
            (
                "runtime.peer_request_burst",
                u64::from(self.peer_request_burst),
            ),
        ]
    }
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The contents of `node.toml`.
///
/// Plain settings come first, then the `[router]`, `[link]` and `[runtime]`
/// tables (written only when they differ from the defaults), then the
/// `[[peers]]` (written only when there are some). So a file `veil init`
/// wrote ends in a place where `[[peers]]` entries from `veil id` can be
/// appended, and dotted keys such as `router.max_htl = 1` may be added at
/// the top.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address the node accepts peer links on.
    pub listen: SocketAddr,
    /// TCP address of the local client API (loopback unless the operator
    /// says otherwise; clients need the cookie file). Absent: the client API
    /// is the Unix socket `client.sock` in the node directory, mode 0600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<SocketAddr>,
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
    /// Testing only: the store's file behaves as if it sat on a disk with
    /// this many bytes for it (writes past it fail with "No space left on
    /// device"), to exercise the disk-full path without a small filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_disk_limit: Option<SizeSetting>,
    /// The memory the node may use (its RSS bound): the redb page cache,
    /// the store writer's queue, each link's inbound queue and the client
    /// cache are sized from it (see `docs/operations.md`). Default
    /// [`DEFAULT_MEMORY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeSetting>,
    /// Testing only (testnet nodes): delay every frame this node sends on
    /// a link by this many milliseconds, to bench long-latency paths.
    #[serde(default, skip_serializing_if = "is_default")]
    pub link_delay_ms: u64,
    /// Allow the client API to listen on a non-loopback address.
    #[serde(default)]
    pub client_public: bool,
    /// Testnet mode: audit logs, and the client API's `place` command.
    #[serde(default)]
    pub testnet: bool,
    /// Testnet nodes write `audit.jsonl`/`origin.jsonl` unless this is
    /// `false` (`veil bench --chain` turns it off to measure what a node
    /// outside testnet mode does). Without `testnet` nothing is logged.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub audit_log: bool,
    /// Start the browser gateway on this address (`veil gateway` in the
    /// node's process); loopback unless `gateway_public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<SocketAddr>,
    /// Allow the gateway to listen on a non-loopback address.
    #[serde(default, skip_serializing_if = "is_default")]
    pub gateway_public: bool,
    /// Serve FCPv2 (Freenet's client protocol, docs/fcp.md) on this address
    /// (Freenet's port is 9481); loopback unless `fcp_public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcp: Option<SocketAddr>,
    /// Allow FCP on a non-loopback address: anyone who reaches it can
    /// insert and fetch through this node, and, after a TestDDARequest,
    /// make the node read and write files in directories it can reach.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fcp_public: bool,
    /// How the node hides who originated its client's requests: `"tunnel"`
    /// (the default), `"freenet"` or `"none"`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub anonymity: Anonymity,
    /// Location swapping (Sandberg 2006): attempt swaps on a jittered timer
    /// and relay and answer neighbours' attempts. Off by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub swap: bool,
    /// The routing core's settings (`max_htl`, `max_inflight_per_peer`, ...).
    #[serde(default, skip_serializing_if = "is_default")]
    pub router: RouterConfig,
    /// Link timeouts, redial back-off and queue bounds.
    #[serde(default, skip_serializing_if = "is_default")]
    pub link: LinkConfig,
    /// The node runtime's queues and client API limits.
    #[serde(default, skip_serializing_if = "is_default")]
    pub runtime: RuntimeConfig,
    /// Swap tunables: interval, walk length, timeouts (used with `swap = true`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub swapping: SwapConfig,
    /// Friends. Last, so that `[[peers]]` entries can be appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerConfig>,
}

fn default_store_dir() -> PathBuf {
    PathBuf::from("store")
}
/// Edits of `node.toml` by this process, one at a time.
static EDITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Replace `path` with `text` atomically: written beside it, synced, and
/// renamed over it.
fn replace_file(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ConfigError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn default_store_size() -> SizeSetting {
    SizeSetting::Text("256MiB".into())
}

impl NodeConfig {
    /// A fresh config with defaults.
    pub fn new(
        listen: SocketAddr,
        client: Option<SocketAddr>,
        location: Option<f64>,
    ) -> NodeConfig {
        NodeConfig {
            listen,
            client,
            location,
            store_dir: default_store_dir(),
            store_size: default_store_size(),
            cache_size: None,
            store_disk_limit: None,
            memory: None,
            link_delay_ms: 0,
            client_public: false,
            testnet: false,
            audit_log: true,
            gateway: None,
            gateway_public: false,
            fcp: None,
            fcp_public: false,
            anonymity: Anonymity::default(),
            router: RouterConfig::default(),
            link: LinkConfig::default(),
            runtime: RuntimeConfig::default(),
            swap: false,
            swapping: SwapConfig::default(),
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
        let config: NodeConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        config
            .validate()
            .map_err(|source| ConfigError::Invalid { path, source })?;
        Ok(config)
    }

    /// Write `DIR/node.toml` (whole: comments are not kept). The file is
    /// replaced atomically: a crash leaves the old one or the new one.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|source| ConfigError::Serialize {
            path: path.clone(),
            source,
        })?;
        replace_file(&path, &text)
    }

    /// Load `DIR/node.toml`, change it with `f`, and save it, while no other
    /// edit of this process runs (runtime membership and a swapped location
    /// both edit the file).
    pub fn update<T, E: From<ConfigError>>(
        dir: &Path,
        f: impl FnOnce(&mut NodeConfig) -> Result<T, E>,
    ) -> Result<T, E> {
        let _edit = EDITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut config = NodeConfig::load(dir)?;
        let out = f(&mut config)?;
        config.save(dir)?;
        Ok(out)
    }

    /// Write `location` into `DIR/node.toml`, keeping the rest of the file
    /// (comments, order) as it is: a node that swapped its location keeps
    /// it across restarts.
    pub fn save_location(dir: &Path, location: f64) -> Result<(), ConfigError> {
        let _edit = EDITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|source| ConfigError::Edit {
            path: path.clone(),
            source: Box::new(source),
        })?;
        doc["location"] = toml_edit::value(location);
        replace_file(&path, &doc.to_string())
    }

    /// Check values that serde alone cannot.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(x) = self.location {
            if !(0.0..1.0).contains(&x) {
                return Err(InvalidSetting::Location(x));
            }
        }
        if self.router.max_htl == 0 {
            return Err(InvalidSetting::Zero("router.max_htl"));
        }
        if self.router.max_inflight_per_peer == 0 {
            return Err(InvalidSetting::Zero("router.max_inflight_per_peer"));
        }
        let positive = self.link.positive_settings().into_iter();
        let swapping = [
            ("swapping.interval_ms", self.swapping.interval_ms),
            ("swapping.walk_htl", u64::from(self.swapping.walk_htl)),
            ("swapping.step_timeout_ms", self.swapping.step_timeout_ms),
            ("swapping.max_relays", self.swapping.max_relays as u64),
        ];
        if let Some((name, _)) = positive
            .chain(self.runtime.positive_settings())
            .chain(swapping)
            .find(|(_, v)| *v == 0)
        {
            return Err(InvalidSetting::Zero(name));
        }
        if self.link.reserved_handshakes >= self.link.max_handshakes {
            return Err(InvalidSetting::ReservedHandshakes);
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return Err(InvalidSetting::TooManyThreads(self.runtime.worker_threads));
        }
        if self.link.redial_max_ms < self.link.redial_min_ms {
            return Err(InvalidSetting::RedialBounds);
        }
        let memory = self.memory_bytes()?;
        if memory < MIN_MEMORY {
            return Err(InvalidSetting::MemoryTooSmall(memory));
        }
        let store = self.store_bytes()?;
        if store < crate::keys::BLOCK_LEN as u64 {
            return Err(InvalidSetting::StoreTooSmall(store));
        }
        self.cache_bytes()?;
        self.store_disk_limit()?;
        if let Some(client) = self.client {
            if !client.ip().is_loopback() && !self.client_public {
                return Err(InvalidSetting::ClientNotLoopback(client));
            }
        }
        if let Some(g) = self
            .gateway
            .filter(|g| !g.ip().is_loopback() && !self.gateway_public)
        {
            return Err(InvalidSetting::GatewayNotLoopback(g));
        }
        if let Some(f) = self
            .fcp
            .filter(|f| !f.ip().is_loopback() && !self.fcp_public)
        {
            return Err(InvalidSetting::FcpNotLoopback(f));
        }
        Ok(())
    }

    /// The store's bound in bytes.
    pub fn store_bytes(&self) -> Result<u64, InvalidSetting> {
        self.store_size
            .bytes()
            .map_err(|source| InvalidSetting::Size {
                setting: "store_size",
                source,
            })
    }

    /// The `memory` bound in bytes ([`DEFAULT_MEMORY`] unless set).
    pub fn memory_bytes(&self) -> Result<u64, InvalidSetting> {
        match &self.memory {
            Some(m) => m.bytes().map_err(|source| InvalidSetting::Size {
                setting: "memory",
                source,
            }),
            None => Ok(DEFAULT_MEMORY),
        }
    }

    /// The cache's bound in bytes (the store's unless `cache_size` is set).
    pub fn cache_bytes(&self) -> Result<u64, InvalidSetting> {
        match &self.cache_size {
            Some(c) => c.bytes().map_err(|source| InvalidSetting::Size {
                setting: "cache_size",
                source,
            }),
            None => self.store_bytes(),
        }
    }

    /// The simulated disk size for the store's file, if one is set.
    pub fn store_disk_limit(&self) -> Result<Option<u64>, InvalidSetting> {
        self.store_disk_limit
            .as_ref()
            .map(|s| {
                s.bytes().map_err(|source| InvalidSetting::Size {
                    setting: "store_disk_limit",
                    source,
                })
            })
            .transpose()
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

#[cfg(test)]
mod tests;
