//! The node runtime: tokio tasks that drive the routing core.
//!
//! ```text
//!  listener ─┐                         ┌─> writer task ─> TCP (per link)
//!  dialers ──┼─> handshake ─> reader ──┤
//!            │      tasks     (per     │  bounded mpsc
//!  client ───┘                 link) ──┴─> router task ──> Datastore (redb)
//!  API tasks ───────────────────────────────┘   (owns routing::Router)
//! ```
//!
//! One task, the router task, owns the [`Router`]: every socket read becomes
//! an `Input` on a bounded channel, every [`Action`] the core returns
//! becomes a write to a link's bounded queue, a datastore operation, an audit
//! line or a client answer. No routing decision is made outside the core.
//!
//! On a link, each frame's payload is a [`PeerFrame`]: a `Hello` carrying the
//! sender's location (the first frame each way), then routing messages and
//! swap messages. The router task also owns the swap protocol's state
//! ([`Swapper`], driven in `swap.rs`): with `swap = true` a jittered timer
//! starts attempts, and a swap moves the router's location.
//!
//! [`Swapper`]: crate::routing::swap::Swapper
//!
//! One module per job: this one starts and stops a node ([`NodeSetup`],
//! [`start`], [`RunningNode`]); [`links`] accepts, dials and establishes
//! links and runs their reader and writer tasks; [`router_task`] drives the
//! core and carries out its actions; [`client_api`] serves the local client
//! protocol. Every queue bound and timeout comes from [`NodeConfig`].
//!
//! [`Router`]: crate::routing::Router
//! [`Action`]: crate::routing::Action
//! [`PeerFrame`]: crate::message::PeerFrame

pub mod check;
mod client_api;
mod client_cache;
mod fair;
mod handshake_slots;
mod links;
mod location_keeper;
mod membership;
mod memory;
mod router_task;

mod store_share;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::audit::log::AuditLog;
use crate::client::{Endpoint, NodeStatus};
use crate::config::{ConfigError, InvalidSetting, NodeConfig, IDENTITY_FILE};
use crate::identity::{location_from_key, Identity, IdentityError, PeerKey};
use crate::keys::{Block, Location, RoutingKey};
use crate::routing::{ClientOutcome, LinkCoins};
use crate::store::{Datastore, StoreError, StoreSource};

pub use memory::{rss, rss_of, MemoryBudget};

/// Wait after a failed `accept` before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("store {path}: {source}")]
    Setting {
        path: PathBuf,
        #[source]
        source: InvalidSetting,
    },
    #[error("store {path}: cannot create the directory: {source}")]
    StoreDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("client API {path}: {source}")]
    ClientApi {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot open audit log: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Inputs to the router task.
enum Input {
    LinkUp {
        peer: PeerKey,
        conn: u64,
        location: Location,
        tx: mpsc::Sender<crate::message::PeerFrame>,
        /// The link's own queue of messages for the router.
        queue: mpsc::Receiver<fair::LinkInput>,
        reader: tokio::task::AbortHandle,
    },
    LinkDown {
        peer: PeerKey,
        conn: u64,
    },
    /// Testnet only: pause or resume this node's swap attempts.
    SetSwapping {
        on: bool,
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Testnet only: route from now on by these rules.
    SetRouting {
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
        reply: oneshot::Sender<NodeStatus>,
    },
    ClientGet {
        key: RoutingKey,
        reply: oneshot::Sender<ClientOutcome>,
    },
    ClientPut {
        block: Block,
        reply: oneshot::Sender<ClientOutcome>,
    },
    Place {
        block: Block,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// A friend was added at runtime (already in `node.toml`).
    PeerAdded {
        peer: crate::config::PeerConfig,
    },
    /// A friend was removed at runtime: close its link.
    PeerRemoved {
        peer: PeerKey,
    },
    /// The node is leaving: refuse new client requests and say `done` once
    /// no request is in flight here, or at `deadline`.
    Drain {
        deadline: tokio::time::Instant,
        done: oneshot::Sender<()>,
    },
}

/// Everything a started node needs, loaded from its directory.
pub struct NodeSetup {
    pub dir: PathBuf,
    pub config: NodeConfig,
    pub identity: Identity,
    pub location: Location,
}

impl NodeSetup {
    /// The HTL coins this node uses for requests arriving from `peer`
    /// (`freenet` mode): derived from the on-disk secret and the peer's key,
    /// so they survive a restart.
    pub fn link_coins(&self, peer: &PeerKey) -> LinkCoins {
        LinkCoins::for_link(self.identity.secret_bytes().as_slice(), &peer.0)
    }

    /// The node-wide coins for this node's own requests.
    pub fn node_coins(&self) -> LinkCoins {
        LinkCoins::for_node(self.identity.secret_bytes().as_slice())
    }

    /// Load `DIR/node.toml` and `DIR/identity.key`.
    pub fn load(dir: &Path) -> Result<NodeSetup, NodeError> {
        let config = NodeConfig::load(dir)?;
        let identity = Identity::load(dir.join(IDENTITY_FILE))?;
        let location = match config.location {
            Some(x) => Location::from_f64(x),
            None => location_from_key(&identity.public()),
        };
        Ok(NodeSetup {
            dir: dir.to_path_buf(),
            config,
            identity,
            location,
        })
    }
}

/// A node that is running: its bound addresses and a way to stop it.
pub struct RunningNode {
    pub listen: SocketAddr,
    /// Where its client API is (and, over TCP, its cookie file).
    pub client: Endpoint,
    pub public_key: PeerKey,
    shutdown: watch::Sender<bool>,
    router: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    /// `swap = true`: writes a swapped location into `node.toml`.
    location_keeper: Option<location_keeper::LocationKeeper>,
    input: mpsc::Sender<Input>,
    membership: Arc<membership::Membership>,
}

impl RunningNode {
    /// Stop: fail in-flight client requests, close links, flush the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.router.await;
        if let Some(keeper) = self.location_keeper {
            keeper.finish().await;
        }
        self.membership.stop();
        for t in self.tasks {
            t.abort();
        }
        client_api::remove_socket(&self.client);
    }

    /// Leave the network (SIGTERM): refuse new client requests, let the
    /// requests in flight here finish for at most `grace`, then close every
    /// link cleanly (neighbours see the link end and log it) and stop.
    pub async fn leave(self, grace: Duration) {
        let (done, finished) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + grace;
        if self
            .input
            .send(Input::Drain { deadline, done })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout_at(deadline, finished).await;
        }
        self.shutdown().await;
    }
}

/// Open the datastore the config describes.
fn open_store(dir: &Path, config: &NodeConfig) -> Result<Datastore, NodeError> {
    let path = config.store_path(dir);
    let setting = |source| NodeError::Setting {
        path: path.clone(),
        source,
    };
    let store_bytes = config.store_bytes().map_err(setting)?;
    let cache_bytes = config.cache_bytes().map_err(setting)?;
    std::fs::create_dir_all(&path).map_err(|source| NodeError::StoreDir {
        path: path.clone(),
        source,
    })?;
    let disk_limit = config.store_disk_limit().map_err(setting)?;
    let source = StoreSource::File {
        path: path.join("blocks.redb"),
        disk_limit,
    };
    let budget = MemoryBudget::new(config);
    Datastore::open_sized(source, store_bytes, cache_bytes, budget.db_cache)
        .map_err(|source| NodeError::Store { path, source })
}

/// Bind `addr` and report the address actually bound.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), NodeError> {
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

/// Bind the node's sockets, open its store and start its tasks.
pub async fn start(setup: NodeSetup) -> Result<RunningNode, NodeError> {
    let coin_secret = setup.identity.secret_bytes();
    let NodeSetup {
        dir,
        config,
        identity,
        location,
    } = setup;
    memory::limit_allocator_arenas();
    let store = Arc::new(open_store(&dir, &config)?);
    let (listener, listen) = bind(config.listen).await?;
    let (client_listener, client) = client_api::ClientListener::bind(&dir, &config).await?;

    let public_key = identity.public();
    let audit = if config.testnet && config.audit_log {
        let mut opened = AuditLog::open(&dir, &public_key).map_err(|source| NodeError::Audit {
            path: dir.clone(),
            source,
        })?;
        let router = &config.router;
        opened.routing_rules(router.lookahead, router.htl_rule, router.insert_end);
        Some(opened)
    } else {
        None
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (input_tx, input_rx) = mpsc::channel(config.runtime.router_queue);
    // The location hellos announce; the router task moves it on a swap.
    let shared_location = Arc::new(AtomicU64::new(location.0));
    let ctx = Arc::new(links::LinkContext::new(
        identity,
        shared_location.clone(),
        &config,
        input_tx.clone(),
    ));
    let mut router_task = router_task::RouterTask::new(
        &config,
        location,
        store,
        audit,
        (public_key, coin_secret),
        listen,
        shared_location.clone(),
    );
    router_task.keep_guards_in(&dir);
    let router = tokio::spawn(router_task.run(input_rx, shutdown_rx.clone()));

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(links::accept_peers(
        listener,
        ctx.clone(),
        shutdown_rx.clone(),
    )));
    let membership = Arc::new(membership::Membership::new(
        dir.clone(),
        public_key,
        ctx.clone(),
        input_tx.clone(),
        shutdown_rx.clone(),
    ));
    for peer in &config.peers {
        membership.dial(peer);
    }
    tasks.push(tokio::spawn(client_api::serve_clients(
        client_listener,
        input_tx.clone(),
        client_api::ClientApi::new(&config, membership.clone()),
        shutdown_rx.clone(),
    )));
    if let Some(addr) = config.gateway {
        tasks.push(start_gateway(client.clone(), addr, &config, shutdown_rx.clone()).await?);
    }
    if let Some(addr) = config.fcp {
        let fcp = crate::fcp::FcpConfig {
            addr,
            node: client.clone(),
            spool: dir.join("fcp-spool"),
            state: dir.join("fcp"),
            identity: public_key.to_string(),
            testnet: config.testnet,
        };
        tasks.push(start_fcp(fcp, shutdown_rx.clone()).await?);
    }
    let location_keeper = config
        .swap
        .then(|| location_keeper::LocationKeeper::spawn(dir.clone(), shared_location.clone()));
    info!(%listen, %client, key = %public_key, location = %location, "node started");
    Ok(RunningNode {
        listen,
        client,
        public_key,
        shutdown: shutdown_tx,
        router,
        tasks,
        location_keeper,
        input: input_tx,
        membership,
    })
}

/// `gateway = "ADDR"` in node.toml: the browser gateway, in this process,
/// talking to this node's client API.
async fn start_gateway(
    client: crate::client::Endpoint,
    addr: SocketAddr,
    config: &NodeConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, NodeError> {
    let mut gateway = crate::gateway::GatewayConfig::new(client, addr);
    gateway.public = config.gateway_public;
    let listener = crate::gateway::bind(&gateway)
        .await
        .map_err(|e| NodeError::Bind {
            addr,
            source: std::io::Error::other(e),
        })?;
    info!(gateway = %addr, "gateway started");
    Ok(tokio::spawn(async move {
        if let Err(e) = crate::gateway::serve(listener, gateway, shutdown).await {
            tracing::warn!(error = %e, "the gateway stopped");
        }
    }))
}

/// `fcp = "ADDR"` in node.toml: the FCP server, in this process, talking
/// to this node's client API.
async fn start_fcp(
    config: crate::fcp::FcpConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, NodeError> {
    let addr = config.addr;
    let listener = crate::fcp::bind(addr).await.map_err(|e| NodeError::Bind {
        addr,
        source: std::io::Error::other(e),
    })?;
    info!(fcp = %addr, "FCP server started");
    Ok(tokio::spawn(crate::fcp::serve(listener, config, shutdown)))
}

/// The next connection on `listener`, or `None` once the node shuts down.
/// A failed accept (e.g. out of descriptors) is logged and retried after
/// a short pause.
async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, addr));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
