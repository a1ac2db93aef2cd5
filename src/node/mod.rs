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
//! sender's location (the first frame each way), then routing messages.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::audit::log::AuditLog;
use crate::client::{
    read_frame, write_frame, ClientRequest, ClientResponse, NodeStatus, PeerStatus,
};
use crate::config::{ConfigError, NodeConfig, IDENTITY_FILE};
use crate::identity::{location_from_key, Identity, PeerKey};
use crate::keys::{Block, Location, RoutingKey};
use crate::link::{self, LinkConfig, LinkError, LinkReader, LinkWriter};
use crate::message::{Message, PeerFrame};
use crate::routing::{Action, ClientOutcome, ClientToken, Event, Router, RouterConfig};
use crate::store::Datastore;

/// Frames one link may have queued for writing before it counts as stuck.
const LINK_QUEUE: usize = 256;
/// Inputs queued for the router task.
const ROUTER_QUEUE: usize = 1024;
/// A keepalive goes out after this much write silence.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// A link with no frame at all for this long is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// Waiting for the peer's Hello after the handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Redial back-off bounds.
const REDIAL_MIN: Duration = Duration::from_millis(250);
const REDIAL_MAX: Duration = Duration::from_secs(30);
/// Client API connections served at once.
const MAX_CLIENT_CONNECTIONS: usize = 128;
/// Inbound handshakes in progress at once.
const MAX_HANDSHAKES: usize = 64;
/// Cache writes queued on the blocking pool at once.
const CACHE_WRITES_IN_FLIGHT: usize = 64;
/// How long a client request may take inside the node.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {message}")]
    Identity { path: PathBuf, message: String },
    #[error("store {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: cannot open audit log: {source}")]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Inputs to the router task.
enum Input {
    LinkUp {
        peer: PeerKey,
        conn: u64,
        location: Location,
        tx: mpsc::Sender<Vec<u8>>,
        reader: tokio::task::AbortHandle,
    },
    LinkDown {
        peer: PeerKey,
        conn: u64,
    },
    Message {
        peer: PeerKey,
        conn: u64,
        msg: Message,
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
        reply: oneshot::Sender<Result<(), String>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
}

struct LinkEntry {
    conn: u64,
    tx: mpsc::Sender<Vec<u8>>,
    reader: tokio::task::AbortHandle,
}

/// Everything a started node needs, loaded from its directory.
pub struct NodeSetup {
    pub dir: PathBuf,
    pub config: NodeConfig,
    pub identity: Identity,
    pub location: Location,
}

impl NodeSetup {
    /// Load `DIR/node.toml` and `DIR/identity.key`.
    pub fn load(dir: &Path) -> Result<NodeSetup, NodeError> {
        let config = NodeConfig::load(dir)?;
        let key_path = dir.join(IDENTITY_FILE);
        let identity = Identity::load(&key_path).map_err(|e| NodeError::Identity {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
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
    pub client: SocketAddr,
    pub public_key: PeerKey,
    shutdown: watch::Sender<bool>,
    router: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Stop: fail in-flight client requests, close links, flush the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.router.await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Bind the node's sockets, open its store and start its tasks.
pub async fn start(setup: NodeSetup) -> Result<RunningNode, NodeError> {
    let NodeSetup {
        dir,
        config,
        identity,
        location,
    } = setup;
    let store_path = config.store_path(&dir);
    let store_err = |message: String| NodeError::Store {
        path: store_path.clone(),
        message,
    };
    let store_bytes = config.store_size.bytes().map_err(&store_err)?;
    let cache_bytes = match &config.cache_size {
        Some(c) => c.bytes().map_err(&store_err)?,
        None => store_bytes,
    };
    std::fs::create_dir_all(&store_path).map_err(|e| store_err(e.to_string()))?;
    let store = Arc::new(
        Datastore::open(&store_path.join("blocks.redb"), store_bytes, cache_bytes)
            .map_err(|e| store_err(e.to_string()))?,
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
    let client_listener =
        TcpListener::bind(config.client)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.client,
                source,
            })?;
    let listen = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.listen,
        source,
    })?;
    let client = client_listener
        .local_addr()
        .map_err(|source| NodeError::Bind {
            addr: config.client,
            source,
        })?;

    let public_key = identity.public();
    let audit = if config.testnet {
        Some(
            AuditLog::open(&dir, &public_key).map_err(|source| NodeError::Audit {
                path: dir.clone(),
                source,
            })?,
        )
    } else {
        None
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (input_tx, input_rx) = mpsc::channel(ROUTER_QUEUE);
    let identity = Arc::new(identity);
    let ctx = Arc::new(LinkContext {
        identity: identity.clone(),
        location,
        allowed: config.peers.iter().map(|p| p.public_key).collect(),
        input: input_tx.clone(),
        next_conn: std::sync::atomic::AtomicU64::new(1),
        link_config: LinkConfig::default(),
    });

    let router_config = RouterConfig {
        max_htl: config.max_htl,
        max_inflight_per_peer: config.max_inflight_per_peer,
        ..RouterConfig::default()
    };
    let router_task = RouterTask {
        router: Router::new(router_config, location),
        store: store.clone(),
        cache_writes: Arc::new(Semaphore::new(CACHE_WRITES_IN_FLIGHT)),
        links: HashMap::new(),
        waiters: HashMap::new(),
        token_uid: HashMap::new(),
        next_token: 1,
        audit,
        started: Instant::now(),
        rng: StdRng::from_entropy(),
        config: config.clone(),
        public_key,
        listen,
    };
    let router = tokio::spawn(router_task.run(input_rx, shutdown_rx.clone()));

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(accept_peers(
        listener,
        ctx.clone(),
        shutdown_rx.clone(),
    )));
    for peer in &config.peers {
        // One side of each friendship dials: the one with the smaller key.
        if public_key < peer.public_key {
            tasks.push(tokio::spawn(dial_peer(
                peer.address,
                peer.public_key,
                ctx.clone(),
                shutdown_rx.clone(),
            )));
        }
    }
    tasks.push(tokio::spawn(serve_clients(
        client_listener,
        input_tx,
        config.testnet,
        shutdown_rx,
    )));
    info!(%listen, %client, key = %public_key, location = %location, "node started");
    Ok(RunningNode {
        listen,
        client,
        public_key,
        shutdown: shutdown_tx,
        router,
        tasks,
    })
}

/// Shared by the tasks that set up links.
struct LinkContext {
    identity: Arc<Identity>,
    location: Location,
    allowed: BTreeSet<PeerKey>,
    input: mpsc::Sender<Input>,
    next_conn: std::sync::atomic::AtomicU64,
    link_config: LinkConfig,
}

async fn accept_peers(
    listener: TcpListener,
    ctx: Arc<LinkContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            debug!(%addr, "too many handshakes in progress; dropping connection");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let allowed = |k: &PeerKey| ctx.allowed.contains(k);
            // The slot covers the handshake and the hello only; an
            // established link lives on in its own tasks.
            match link::accept(stream, &ctx.identity, &allowed, &ctx.link_config).await {
                Ok(link) => {
                    let peer = link.peer();
                    let established = establish(link, &ctx).await;
                    drop(permit);
                    if established.is_none() {
                        debug!(%peer, "inbound link failed before hello");
                    }
                }
                Err(e) => warn!(%addr, error = %e, "inbound handshake refused"),
            }
        });
    }
}

async fn dial_peer(
    addr: SocketAddr,
    expected: PeerKey,
    ctx: Arc<LinkContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = REDIAL_MIN;
    loop {
        let attempt = async {
            let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let link = link::connect(stream, &ctx.identity, &expected, &ctx.link_config)
                .await
                .map_err(|e| e.to_string())?;
            establish(link, &ctx)
                .await
                .ok_or_else(|| "no hello".to_string())
        };
        let outcome = tokio::select! {
            _ = shutdown.changed() => return,
            r = attempt => r,
        };
        match outcome {
            Ok(done) => {
                backoff = REDIAL_MIN;
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = done => {}
                }
                debug!(%addr, peer = %expected, "link ended; redialling");
            }
            Err(e) => {
                debug!(%addr, peer = %expected, error = %e, "dial failed");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(REDIAL_MAX);
    }
}

/// Exchange hellos, hand the link to the router, and start its reader and
/// writer. Returns a receiver that resolves when the link is gone.
async fn establish<S>(link: link::Link<S>, ctx: &Arc<LinkContext>) -> Option<oneshot::Receiver<()>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer();
    let (mut reader, mut writer) = link.into_split();
    let hello = PeerFrame::Hello {
        location: ctx.location,
    }
    .encode();
    if let Err(e) = writer.send(&hello).await {
        debug!(%peer, error = %e, "cannot send hello");
        return None;
    }
    let location = match tokio::time::timeout(HELLO_TIMEOUT, reader.recv()).await {
        Ok(Ok(Some(bytes))) => match PeerFrame::decode(&bytes) {
            Ok(PeerFrame::Hello { location }) => location,
            _ => {
                warn!(%peer, "peer misbehaved: first frame is not a hello; closing link");
                return None;
            }
        },
        _ => return None,
    };
    let conn = ctx
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(write_link(writer, rx));
    let input = ctx.input.clone();
    let (start_tx, start_rx) = oneshot::channel();
    let reader_task = tokio::spawn(read_link(
        reader,
        peer,
        conn,
        input.clone(),
        start_rx,
        done_tx,
    ));
    let registered = input
        .send(Input::LinkUp {
            peer,
            conn,
            location,
            tx,
            reader: reader_task.abort_handle(),
        })
        .await;
    if registered.is_err() {
        reader_task.abort();
        return None;
    }
    let _ = start_tx.send(());
    Some(done_rx)
}

async fn write_link(mut writer: LinkWriter, mut rx: mpsc::Receiver<Vec<u8>>) {
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(payload) => {
                    if writer.send(&payload).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = tokio::time::sleep(KEEPALIVE_EVERY) => {
                if writer.send_keepalive().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_link(
    mut reader: LinkReader,
    peer: PeerKey,
    conn: u64,
    input: mpsc::Sender<Input>,
    start: oneshot::Receiver<()>,
    done: oneshot::Sender<()>,
) {
    // Read nothing until the router has the LinkUp, so that no message
    // of this link can reach it first.
    if start.await.is_err() {
        let _ = done.send(());
        return;
    }
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, reader.recv()).await {
            Err(_) => {
                info!(%peer, "link idle too long; closing");
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) if bytes.is_empty() => continue,
            Ok(Ok(Some(bytes))) => match PeerFrame::decode(&bytes) {
                Ok(PeerFrame::Routing(msg)) => {
                    if input
                        .send(Input::Message { peer, conn, msg })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(PeerFrame::Hello { .. }) => {
                    warn!(%peer, "peer misbehaved: second hello; closing link");
                    break;
                }
                Err(e) => {
                    warn!(%peer, error = %e, "peer misbehaved: undecodable frame; closing link");
                    break;
                }
            },
            Ok(Err(e @ (LinkError::Io(_) | LinkError::Truncated | LinkError::Closed))) => {
                info!(%peer, error = %e, "link broke");
                break;
            }
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "peer misbehaved: bad frame; closing link");
                break;
            }
        }
    }
    let _ = input.send(Input::LinkDown { peer, conn }).await;
    let _ = done.send(());
}

struct RouterTask {
    router: Router<PeerKey>,
    store: Arc<Datastore>,
    cache_writes: Arc<Semaphore>,
    links: HashMap<PeerKey, LinkEntry>,
    waiters: HashMap<ClientToken, oneshot::Sender<ClientOutcome>>,
    token_uid: HashMap<ClientToken, u64>,
    next_token: ClientToken,
    audit: Option<AuditLog>,
    started: Instant,
    rng: StdRng,
    config: NodeConfig,
    public_key: PeerKey,
    listen: SocketAddr,
}

impl RouterTask {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self
                .router
                .next_deadline()
                .map(|ms| self.started + Duration::from_millis(ms));
            tokio::select! {
                _ = shutdown.changed() => break,
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => break,
                },
                _ = sleep_until_opt(deadline) => {
                    self.feed(Event::Tick);
                }
            }
        }
        // Shutdown: every waiting client gets an answer, links close, the
        // store is flushed.
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(ClientOutcome::Failed(crate::routing::Failure::Timeout));
        }
        for (_, link) in self.links.drain() {
            link.reader.abort();
        }
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "flushing the store failed");
        }
        info!("node stopped");
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::LinkUp {
                peer,
                conn,
                location,
                tx,
                reader,
            } => {
                if let Some(old) = self.links.insert(peer, LinkEntry { conn, tx, reader }) {
                    old.reader.abort();
                    self.feed(Event::LinkDown { peer });
                }
                info!(%peer, location = %location, "link up");
                if let Some(a) = &mut self.audit {
                    a.link_up(&peer);
                }
                self.feed(Event::LinkUp { peer, location });
            }
            Input::LinkDown { peer, conn } => {
                if self.links.get(&peer).is_some_and(|l| l.conn == conn) {
                    self.drop_link(peer);
                }
            }
            Input::Message { peer, conn, msg } => {
                if self.links.get(&peer).is_none_or(|l| l.conn != conn) {
                    return;
                }
                if let Some(a) = &mut self.audit {
                    a.received(&peer, &msg);
                }
                self.feed(Event::Message { from: peer, msg });
            }
            Input::ClientGet { key, reply } => {
                let token = self.new_token(reply);
                self.feed(Event::ClientGet { token, key });
            }
            Input::ClientPut { block, reply } => {
                let token = self.new_token(reply);
                self.feed(Event::ClientPut { token, block });
            }
            Input::Place { block, reply } => {
                let result = blocking(|| self.store.put_store(&block)).map_err(|e| e.to_string());
                if result.is_ok() {
                    if let Some(a) = &mut self.audit {
                        a.block_stored(&block.routing_key());
                    }
                }
                let _ = reply.send(result);
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn new_token(&mut self, reply: oneshot::Sender<ClientOutcome>) -> ClientToken {
        let token = self.next_token;
        self.next_token += 1;
        self.waiters.insert(token, reply);
        token
    }

    fn drop_link(&mut self, peer: PeerKey) {
        if let Some(link) = self.links.remove(&peer) {
            link.reader.abort();
            info!(%peer, "link down");
            if let Some(a) = &mut self.audit {
                a.link_down(&peer);
            }
            self.feed(Event::LinkDown { peer });
        }
    }

    /// Hand one event to the core and carry out what it says.
    fn feed(&mut self, event: Event<PeerKey>) {
        let now = self.now();
        let actions = self
            .router
            .handle(now, &mut self.rng, self.store.as_ref(), event);
        let mut broken = Vec::new();
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    if let Some(a) = &mut self.audit {
                        a.sent(&to, &msg);
                    }
                    let Some(link) = self.links.get(&to) else {
                        continue;
                    };
                    let payload = PeerFrame::Routing(msg).encode();
                    if link.tx.try_send(payload).is_err() {
                        warn!(peer = %to, "peer is not reading its link; closing it");
                        broken.push(to);
                    }
                }
                Action::Originated {
                    token,
                    uid,
                    key,
                    op,
                } => {
                    self.token_uid.insert(token, uid);
                    if let Some(a) = &mut self.audit {
                        a.origin_started(uid, &key, op);
                    }
                }
                Action::ClientDone { token, outcome } => {
                    if let Some(uid) = self.token_uid.remove(&token) {
                        if let Some(a) = &mut self.audit {
                            a.origin_finished(uid, &outcome_text(&outcome));
                        }
                    }
                    if let Some(w) = self.waiters.remove(&token) {
                        let _ = w.send(outcome);
                    }
                }
                Action::CacheBlock { block } => {
                    // Caching is best effort and must not stall routing: the
                    // write runs on the blocking pool, at most
                    // CACHE_WRITES_IN_FLIGHT at once; beyond that the block
                    // is simply not cached.
                    match self.cache_writes.clone().try_acquire_owned() {
                        Ok(permit) => {
                            if let Some(a) = &mut self.audit {
                                a.block_cached(&block.routing_key());
                            }
                            let store = self.store.clone();
                            tokio::task::spawn_blocking(move || {
                                let _permit = permit;
                                if let Err(e) = store.put_cache(&block) {
                                    warn!(error = %e, "cannot cache block");
                                }
                            });
                        }
                        Err(_) => debug!("cache writes saturated; not caching this block"),
                    }
                }
                Action::StoreBlock { block } => match blocking(|| self.store.put_store(&block)) {
                    Ok(()) => {
                        if let Some(a) = &mut self.audit {
                            a.block_stored(&block.routing_key());
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot store block"),
                },
                Action::Misbehaved { peer, reason } => {
                    warn!(%peer, ?reason, "peer misbehaved; closing link");
                    broken.push(peer);
                }
            }
        }
        for peer in broken {
            self.drop_link(peer);
        }
    }

    fn status(&self) -> NodeStatus {
        let usage = self.store.usage();
        let stats = self.router.stats();
        let located: HashMap<PeerKey, Location> =
            self.router.neighbours().map(|(k, l)| (*k, *l)).collect();
        let peers = self
            .config
            .peers
            .iter()
            .map(|p| PeerStatus {
                name: p.name.clone(),
                public_key: p.public_key.to_string(),
                address: p.address.to_string(),
                connected: self.links.contains_key(&p.public_key),
                location: located.get(&p.public_key).map(|l| l.as_f64()),
            })
            .collect();
        NodeStatus {
            public_key: self.public_key.to_string(),
            listen: self.listen.to_string(),
            location: self.router.location().as_f64(),
            testnet: self.config.testnet,
            peers,
            store_blocks: usage.store_blocks,
            store_bytes: usage.store_bytes,
            store_limit: usage.store_limit,
            cache_blocks: usage.cache_blocks,
            cache_bytes: usage.cache_bytes,
            cache_limit: usage.cache_limit,
            requests_received: stats.requests_received,
            requests_originated: stats.requests_originated,
            answered_from_store: stats.answered_from_store,
            loops_rejected: stats.loops_rejected,
            overloads_sent: stats.overloads_sent,
            timeouts: stats.timeouts,
            pending: self.router.pending_count() as u64,
        }
    }
}

/// Run a synchronous disk write (a durable store commit) from the router
/// task. On a multi-threaded runtime the worker hands its other tasks to
/// the rest of the pool first, so links keep being served while it waits
/// for the disk; the router itself waits, because the core's next action
/// (the insert's answer) must not go out before the block is durable.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How an outcome is written in `origin.jsonl` and client errors.
pub fn outcome_text(outcome: &ClientOutcome) -> String {
    match outcome {
        ClientOutcome::Found(_) => "found".into(),
        ClientOutcome::Inserted => "inserted".into(),
        ClientOutcome::Failed(f) => format!("failed: {}", f.as_str()),
    }
}

async fn serve_clients(
    listener: TcpListener,
    input: mpsc::Sender<Input>,
    testnet: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENT_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let input = input.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            if let Err(e) = serve_client(stream, input, testnet).await {
                debug!(error = %e, "client connection ended with an error");
            }
        });
    }
}

async fn serve_client(
    mut stream: TcpStream,
    input: mpsc::Sender<Input>,
    testnet: bool,
) -> Result<(), crate::client::ClientError> {
    loop {
        let request: ClientRequest =
            match tokio::time::timeout(Duration::from_secs(300), read_frame(&mut stream)).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) | Err(_) => return Ok(()),
                Ok(Err(e)) => {
                    let _ = write_frame(
                        &mut stream,
                        &ClientResponse::Failed {
                            reason: format!("bad request: {e}"),
                        },
                    )
                    .await;
                    return Err(e);
                }
            };
        let response = answer(request, &input, testnet).await;
        write_frame(&mut stream, &response).await?;
    }
}

async fn answer(
    request: ClientRequest,
    input: &mpsc::Sender<Input>,
    testnet: bool,
) -> ClientResponse {
    let failed = |reason: &str| ClientResponse::Failed {
        reason: reason.to_string(),
    };
    match request {
        ClientRequest::Get { key } => {
            let (reply, rx) = oneshot::channel();
            if input.send(Input::ClientGet { key, reply }).await.is_err() {
                return failed("node is shutting down");
            }
            match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, rx).await {
                Ok(Ok(ClientOutcome::Found(block))) => ClientResponse::Found { block },
                Ok(Ok(other)) => failed(&outcome_text(&other)),
                Ok(Err(_)) => failed("node is shutting down"),
                Err(_) => failed("timed out"),
            }
        }
        ClientRequest::Insert { block } => {
            let (reply, rx) = oneshot::channel();
            if input.send(Input::ClientPut { block, reply }).await.is_err() {
                return failed("node is shutting down");
            }
            match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, rx).await {
                Ok(Ok(ClientOutcome::Inserted)) => ClientResponse::Inserted,
                Ok(Ok(other)) => failed(&outcome_text(&other)),
                Ok(Err(_)) => failed("node is shutting down"),
                Err(_) => failed("timed out"),
            }
        }
        ClientRequest::Place { block } => {
            if !testnet {
                return failed("place is refused: the node is not in testnet mode");
            }
            let (reply, rx) = oneshot::channel();
            if input.send(Input::Place { block, reply }).await.is_err() {
                return failed("node is shutting down");
            }
            match rx.await {
                Ok(Ok(())) => ClientResponse::Placed,
                Ok(Err(e)) => failed(&e),
                Err(_) => failed("node is shutting down"),
            }
        }
        ClientRequest::Status => {
            let (reply, rx) = oneshot::channel();
            if input.send(Input::Status { reply }).await.is_err() {
                return failed("node is shutting down");
            }
            match rx.await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(_) => failed("node is shutting down"),
            }
        }
    }
}
