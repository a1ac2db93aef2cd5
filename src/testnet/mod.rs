//! Local testnets: one real `veil node` process per topology node, on
//! loopback, with audit logging on.
//!
//! `up` lays out `DIR/<name>/` (identity, node.toml with peers from the
//! edges, the topology's location), starts the processes, waits until every
//! edge is connected and writes `DIR/testnet.json`. `stop`/`down` end them.

mod control;
pub mod failures;
pub mod net;
pub mod netns;
mod ports;
pub mod run;
pub mod shadow;
pub mod swap;
pub mod workload;

use control::terminate;
pub use control::{down, kill, set_link};
pub use ports::{free_ports, log_tail};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::audit::AuditError;
use crate::client::{Client, ClientError};
use crate::config::{ConfigError, NodeConfig, PeerConfig, IDENTITY_FILE};
use crate::identity::{Identity, IdentityError};
use crate::message::Htl;
use crate::routing::swap::SwapConfig;
use crate::routing::Anonymity;
use crate::sim::topology::{Topology, TopologyError};

use crate::formats::testnet::{NodeInfo, TestnetInfo, WorkloadInfo, TESTNET_FILE, WORKLOAD_FILE};

/// Exit status of `veil node` when it cannot bind its listen or client
/// address: the one start-up failure `up` cures by drawing new ports.
pub const EXIT_CANNOT_LISTEN: u8 = 3;

/// Why a testnet could not be brought up, run or down.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Topology {
        path: PathBuf,
        #[source]
        source: TopologyError,
    },
    #[error("{0} exists and is not a veil testnet directory; refusing to touch it")]
    ForeignDir(PathBuf),
    #[error("node {name} failed to start:\n{log_tail}")]
    NodeFailed {
        name: String,
        log_tail: String,
        /// It exited with [`EXIT_CANNOT_LISTEN`].
        cannot_listen: bool,
    },
    #[error(
        "links did not all come up within {secs} s ({up}/{total} up); not connected: {missing}"
    )]
    NotReady {
        secs: u64,
        up: usize,
        total: usize,
        missing: String,
    },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("export: {0}")]
    Export(String),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("the topology has no [scenario]")]
    NoScenario,
    #[error("the testnet has no node {0}")]
    UnknownNode(String),
    #[error("node {node}: {source}")]
    Client {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error("the requester's origin log has no entry for the request")]
    NoOriginEntry,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

fn io_err(path: &Path, source: std::io::Error) -> TestnetError {
    TestnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json_err(path: &Path, source: serde_json::Error) -> TestnetError {
    TestnetError::Json {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `value` as pretty JSON (and a newline) to `path`.
fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TestnetError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| json_err(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| io_err(path, e))
}

impl TestnetInfo {
    pub fn load(dir: &Path) -> Result<TestnetInfo, TestnetError> {
        let path = dir.join(TESTNET_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        serde_json::from_str(&text).map_err(|e| json_err(&path, e))
    }

    fn save(&self, dir: &Path) -> Result<(), TestnetError> {
        save_json(&dir.join(TESTNET_FILE), self)
    }
}

impl WorkloadInfo {
    fn save(&self, dir: &Path) -> Result<(), TestnetError> {
        save_json(&dir.join(WORKLOAD_FILE), self)
    }
}

/// Options of `testnet up`.
pub struct UpOptions {
    /// The `veil` binary to run for each node.
    pub exe: PathBuf,
    /// Largest HTL on every node (the scenario's when it has one).
    pub max_htl: Htl,
    /// The `anonymity` setting written into every node's `node.toml`.
    pub anonymity: Anonymity,
    /// `Some`: every node gets `swap = true` and this `[swapping]` table.
    pub swap: Option<SwapConfig>,
    /// Every node's `router.replicate_htl` (0 turns replication off).
    pub replicate_htl: Htl,
    /// Every node's `router.lookahead`.
    pub lookahead: crate::routing::Lookahead,
    /// Every node's `router.htl_rule`.
    pub htl_rule: crate::routing::HtlRule,
    /// Every node's `router.insert_end`.
    pub insert_end: crate::routing::InsertEnd,
    /// Give every node a cache (`false`: `cache_size = 0`, so relays keep
    /// no copy of what passes through).
    pub cache: bool,
    /// `Some`: every node in a network namespace of its own (`netns.rs`).
    pub netns: Option<NetnsOptions>,
    /// How long to wait for every link.
    pub ready_timeout: Duration,
    /// Called with (links up, links in total) while waiting.
    pub on_progress: Box<dyn Fn(usize, usize) + Send>,
}

/// What `--netns` asks for besides the namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetnsOptions {
    /// Each topology node's bandwidth cap (by index; `None`: no cap).
    pub caps: Vec<Option<net::Bandwidth>>,
}

/// Why [`Testnet::wait_until_stopped`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Every node process has exited.
    NodesExited,
}

/// A running testnet: the child processes it started.
pub struct Testnet {
    pub dir: PathBuf,
    pub info: TestnetInfo,
    children: Vec<(String, Child)>,
    /// The `veil` binary the nodes run (to restart one).
    exe: PathBuf,
    /// The namespaces of a `--netns` testnet, until they are torn down.
    netns: Option<netns::NetnsPlan>,
}

/// The port every node of a `--netns` testnet listens on (each at its own
/// address).
pub const NETNS_PORT: u16 = 7400;

/// Make `dir` ready for a fresh testnet: create it, or clear a previous
/// testnet's files (stopping any of its nodes still running). Anything else
/// is left alone and refused.
fn prepare_dir(dir: &Path) -> Result<(), TestnetError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .next()
            .is_none();
        if !empty {
            let netns_state = dir.join(netns::NETNS_FILE).exists();
            if !dir.join(TESTNET_FILE).exists() && !netns_state {
                return Err(TestnetError::ForeignDir(dir.to_path_buf()));
            }
            down(dir)?;
            for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
                let path = entry.map_err(|e| io_err(dir, e))?.path();
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                result.map_err(|e| io_err(&path, e))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))
}

/// Lay out and start a testnet, and wait until every edge is connected.
pub async fn up(topology: &Topology, dir: &Path, opts: UpOptions) -> Result<Testnet, TestnetError> {
    // Another program (another testnet starting at the same instant, say)
    // can take a drawn port before its node binds it. That is the one
    // start-up failure a fresh draw cures, so it is retried.
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        match up_once(topology, dir, &opts).await {
            Err(TestnetError::NodeFailed {
                name,
                cannot_listen: true,
                ..
            }) if attempt < ATTEMPTS => {
                tracing::warn!(node = %name, attempt, "a port was taken before its node bound it; starting over with new ports");
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn up_once(
    topology: &Topology,
    dir: &Path,
    opts: &UpOptions,
) -> Result<Testnet, TestnetError> {
    prepare_dir(dir)?;
    let n = topology.nodes.len();
    let ports = free_ports(3 * n).map_err(|e| io_err(dir, e))?;
    // In namespaces every node has an address of its own (and one port),
    // and its client API is its Unix socket.
    let plan = match &opts.netns {
        None => None,
        Some(o) => {
            if !netns::is_root() {
                return Err(netns::NetnsError::NotRoot.into());
            }
            let names: Vec<String> = topology.nodes.iter().map(|n| n.name.clone()).collect();
            let plan = netns::NetnsPlan::new(&names, &o.caps);
            plan.save(dir)?;
            plan.create()?;
            Some(plan)
        }
    };
    let listens: Vec<SocketAddr> = (0..n)
        .map(|i| match &plan {
            Some(p) => SocketAddr::from((p.nodes[i].address, NETNS_PORT)),
            None => ports[2 * i],
        })
        .collect();
    let loopback = plan.is_none();
    let listen_of = |i: usize| listens[i];
    let client_of = |i: usize| loopback.then(|| ports[2 * i + 1]);
    let fcp_of = |i: usize| loopback.then(|| ports[2 * n + i]);
    let mut identities = Vec::with_capacity(n);
    for node in &topology.nodes {
        let node_dir = dir.join(&node.name);
        std::fs::create_dir_all(&node_dir).map_err(|e| io_err(&node_dir, e))?;
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let key_path = node_dir.join(IDENTITY_FILE);
        identity.save(&key_path)?;
        identities.push(identity.public());
    }
    let adjacency = topology.adjacency();
    for (i, node) in topology.nodes.iter().enumerate() {
        let node_dir = dir.join(&node.name);
        let mut config = NodeConfig::new(listen_of(i), client_of(i), Some(node.location.as_f64()));
        config.testnet = true;
        config.fcp = fcp_of(i);
        config.router.max_htl = opts.max_htl;
        config.router.replicate_htl = opts.replicate_htl;
        config.router.lookahead = opts.lookahead;
        config.router.htl_rule = opts.htl_rule;
        config.router.insert_end = opts.insert_end;
        config.anonymity = opts.anonymity;
        if let Some(swapping) = &opts.swap {
            config.swap = true;
            config.swapping = swapping.clone();
        }
        config.store_size = crate::config::SizeSetting::Text("64MiB".into());
        if !opts.cache {
            config.cache_size = Some(crate::config::SizeSetting::Bytes(0));
        }
        config.peers = adjacency[i]
            .iter()
            .map(|&j| PeerConfig {
                address: listen_of(j),
                public_key: identities[j],
                name: Some(topology.nodes[j].name.clone()),
            })
            .collect();
        config.save(&node_dir)?;
    }

    let mut testnet = Testnet {
        dir: dir.to_path_buf(),
        info: TestnetInfo {
            version: Default::default(),
            ready: false,
            nodes: BTreeMap::new(),
        },
        children: Vec::new(),
        exe: opts.exe.clone(),
        netns: plan,
    };
    for (i, node) in topology.nodes.iter().enumerate() {
        let child = match testnet.spawn(&node.name) {
            Ok(c) => c,
            Err(e) => {
                testnet.stop();
                return Err(e);
            }
        };
        testnet.info.nodes.insert(
            node.name.clone(),
            NodeInfo {
                id: identities[i],
                listen: listen_of(i),
                client: crate::client::Endpoint::of_config(&dir.join(&node.name), client_of(i)),
                fcp: fcp_of(i),
                pid: child.id(),
            },
        );
        testnet.children.push((node.name.clone(), child));
    }
    // Write the description early (ready = false) so `down` works meanwhile.
    testnet.info.save(dir)?;

    let total = topology.edges.len();
    let started = Instant::now();
    loop {
        if let Some((name, code)) = testnet.exited() {
            let tail = log_tail(&dir.join(&name).join("node.log"), 2000);
            testnet.stop();
            return Err(TestnetError::NodeFailed {
                name,
                log_tail: tail,
                cannot_listen: code == Some(i32::from(EXIT_CANNOT_LISTEN)),
            });
        }
        let (up, missing) = testnet.links_up().await;
        (opts.on_progress)(up, total);
        if up >= total {
            break;
        }
        if started.elapsed() > opts.ready_timeout {
            testnet.stop();
            return Err(TestnetError::NotReady {
                secs: opts.ready_timeout.as_secs(),
                up,
                total,
                missing: missing.join(", "),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    testnet.info.ready = true;
    testnet.info.save(dir)?;
    Ok(testnet)
}

/// Start `veil node DIR --testnet` with its output appended to `DIR/node.log`.
pub(crate) fn spawn_node(exe: &Path, node_dir: &Path) -> Result<Child, TestnetError> {
    spawn_node_in(exe, node_dir, None)
}

/// [`spawn_node`], inside network namespace `ns` when given (through
/// `ip netns exec`, which execs the node: the child's pid is the node's).
fn spawn_node_in(exe: &Path, node_dir: &Path, ns: Option<&str>) -> Result<Child, TestnetError> {
    let log_path = node_dir.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io_err(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| io_err(&log_path, e))?;
    let mut command = match ns {
        None => Command::new(exe),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
    };
    command
        .arg("node")
        .arg(node_dir)
        .arg("--testnet")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| io_err(exe, e))
}

impl Testnet {
    /// Start node `name`'s process (in its namespace under `--netns`).
    fn spawn(&self, name: &str) -> Result<Child, TestnetError> {
        let ns = match &self.netns {
            Some(plan) => Some(plan.node(name)?.namespace.clone()),
            None => None,
        };
        spawn_node_in(&self.exe, &self.dir.join(name), ns.as_deref())
    }

    /// The namespaces of a `--netns` testnet.
    pub fn netns(&self) -> Option<&netns::NetnsPlan> {
        self.netns.as_ref()
    }

    /// The name and exit code of a node whose process has exited, if any.
    fn exited(&mut self) -> Option<(String, Option<i32>)> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((name.clone(), status.code()));
            }
        }
        None
    }

    /// Wait for Ctrl-C, SIGTERM, or every node process to exit (a
    /// `testnet down` elsewhere); the nodes are not stopped here.
    pub async fn wait_until_stopped(&mut self) -> Result<Stopped, TestnetError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| io_err(&self.dir, e))?;
        let all_gone = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if self.all_exited() {
                    return;
                }
            }
        };
        Ok(tokio::select! {
            _ = tokio::signal::ctrl_c() => Stopped::Signal,
            _ = term.recv() => Stopped::Signal,
            _ = all_gone => Stopped::NodesExited,
        })
    }

    /// Have all the node processes exited?
    pub fn all_exited(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|(_, c)| !matches!(c.try_wait(), Ok(None)))
    }

    /// Edges up (counted once, both ends agreeing) and the names of nodes
    /// still missing a link.
    async fn links_up(&self) -> (usize, Vec<String>) {
        let mut half_links = 0usize;
        let mut missing = Vec::new();
        for (name, _, peers) in self.peer_counts().await {
            match peers {
                Some((up, total)) => {
                    half_links += up;
                    if up < total {
                        missing.push(name);
                    }
                }
                None => missing.push(name),
            }
        }
        (half_links / 2, missing)
    }

    /// Per node: name, client address, peers up / peers configured (0/0 for
    /// a node that does not answer).
    pub async fn table(&self) -> Vec<(String, crate::client::Endpoint, usize, usize)> {
        self.peer_counts()
            .await
            .into_iter()
            .map(|(name, client, peers)| {
                let (up, total) = peers.unwrap_or((0, 0));
                (name, client, up, total)
            })
            .collect()
    }

    /// Per node: name, client address, and (peers up, peers configured) from
    /// its status, or `None` when it does not answer.
    async fn peer_counts(&self) -> Vec<(String, crate::client::Endpoint, Option<(usize, usize)>)> {
        let mut rows = Vec::with_capacity(self.info.nodes.len());
        for (name, node) in &self.info.nodes {
            let status = match Client::connect(&node.client, Duration::from_secs(2)).await {
                Ok(mut c) => c.status().await.ok(),
                Err(_) => None,
            };
            let peers = status.map(|s| {
                (
                    s.peers.iter().filter(|p| p.connected).count(),
                    s.peers.len(),
                )
            });
            rows.push((name.clone(), node.client.clone(), peers));
        }
        rows
    }

    /// Stop every node: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(&mut self) {
        for (_, child) in &self.children {
            terminate(child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        tracing::warn!(node = %name, "node ignored SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.children.clear();
        self.info.ready = false;
        let _ = self.info.save(&self.dir);
        self.remove_netns();
    }

    /// Tear the namespaces down (once), and their state file with them.
    fn remove_netns(&mut self) {
        if let Some(plan) = self.netns.take() {
            plan.teardown();
            let _ = std::fs::remove_file(self.dir.join(netns::NETNS_FILE));
        }
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop();
        }
        self.remove_netns();
    }
}
