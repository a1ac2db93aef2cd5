//! Links of a running node: accepting and dialling peers, the hello
//! exchange, and one reader and one writer task per established link.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::fair::{new_request, LinkInput, ReadPacer};
use super::handshake_slots::{HandshakeSlots, NoSlot};
use super::{next_connection, Input};
use crate::config::NodeConfig;
use crate::error::{ErrorKind, HasKind};
use crate::identity::{Identity, PeerKey};
use crate::keys::Location;
use crate::link::{self, LinkConfig, LinkError, LinkReader, LinkWriter, ReplayGuard};
use crate::message::{DecodeError, PeerFrame};

/// Shared by the tasks that set up links.
pub(super) struct LinkContext {
    identity: Identity,
    /// The node's location now (it changes when the node swaps): what a new
    /// link's hello announces.
    location: Arc<AtomicU64>,
    /// Friends whose handshakes are accepted, with the IP address each is
    /// configured at (changed at runtime by `add-peer` / `remove-peer`).
    allowed: RwLock<BTreeMap<PeerKey, IpAddr>>,
    /// The newest handshake timestamp accepted from each friend.
    replay: ReplayGuard,
    input: mpsc::Sender<Input>,
    next_conn: AtomicU64,
    config: LinkConfig,
    /// Messages one link may have waiting for the router.
    link_queue: usize,
    /// Testnet only: how long each frame waits before it is sent.
    link_delay: Duration,
    /// Each peer's request rate limit and burst (`runtime`), which paces
    /// its link's reader ([`ReadPacer`]).
    rate: (u32, u32),
}

impl LinkContext {
    pub(super) fn new(
        identity: Identity,
        location: Arc<AtomicU64>,
        config: &NodeConfig,
        input: mpsc::Sender<Input>,
    ) -> LinkContext {
        LinkContext {
            identity,
            location,
            allowed: RwLock::new(
                config
                    .peers
                    .iter()
                    .map(|p| (p.public_key, p.address.ip()))
                    .collect(),
            ),
            replay: ReplayGuard::default(),
            input,
            next_conn: AtomicU64::new(1),
            config: config.link.clone(),
            link_queue: super::MemoryBudget::new(config).link_queue,
            link_delay: Duration::from_millis(if config.testnet {
                config.link_delay_ms
            } else {
                0
            }),
            rate: (
                config.runtime.peer_requests_per_sec,
                config.runtime.peer_request_burst,
            ),
        }
    }
}

impl LinkContext {
    /// Accept handshakes from `peer`, configured at address `at`; `None`:
    /// refuse them from now on.
    pub(super) fn allow(&self, peer: PeerKey, at: Option<IpAddr>) {
        let mut allowed = self.allowed.write().unwrap_or_else(PoisonError::into_inner);
        match at {
            Some(ip) => allowed.insert(peer, ip),
            None => allowed.remove(&peer),
        };
    }

    fn allows(&self, peer: &PeerKey) -> bool {
        let allowed = self.allowed.read().unwrap_or_else(PoisonError::into_inner);
        allowed.contains_key(peer)
    }

    /// How many friends are configured at `ip`.
    fn friends_at(&self, ip: IpAddr) -> usize {
        let allowed = self.allowed.read().unwrap_or_else(PoisonError::into_inner);
        allowed.values().filter(|at| **at == ip).count()
    }
}

/// Why a link that finished its handshake did not come up.
#[derive(Debug, thiserror::Error)]
enum EstablishError {
    #[error("cannot send hello: {0}")]
    SendHello(#[source] LinkError),
    #[error("no hello within {0:?}")]
    HelloTimeout(Duration),
    #[error("peer closed the link before its hello")]
    ClosedBeforeHello,
    #[error("link failed before the hello: {0}")]
    Link(#[source] LinkError),
    #[error("first frame is not a hello")]
    NotHello,
    #[error("first frame does not decode: {0}")]
    Undecodable(#[source] DecodeError),
    #[error("the node is shutting down")]
    NodeStopping,
}

impl HasKind for EstablishError {
    /// The peer is at fault when it broke the protocol; a timeout, a closed
    /// connection or our own shutdown is not its fault.
    fn kind(&self) -> ErrorKind {
        match self {
            EstablishError::NotHello => ErrorKind::Protocol,
            EstablishError::Undecodable(e) => e.kind(),
            EstablishError::SendHello(e) | EstablishError::Link(e) => e.kind(),
            EstablishError::HelloTimeout(_) => ErrorKind::Timeout,
            EstablishError::ClosedBeforeHello => ErrorKind::NodeDown,
            EstablishError::NodeStopping => ErrorKind::Local,
        }
    }
}

/// Why one dial attempt failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("connect timed out")]
    ConnectTimeout,
    #[error(transparent)]
    Connect(std::io::Error),
    #[error(transparent)]
    Link(LinkError),
    #[error(transparent)]
    Establish(EstablishError),
}

pub(super) async fn accept_peers(
    listener: TcpListener,
    ctx: Arc<LinkContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = HandshakeSlots::new(&ctx.config);
    while let Some((stream, addr)) = next_connection(&listener, &mut shutdown).await {
        let ip = addr.ip().to_canonical();
        let permit = match slots.take(ip, ctx.friends_at(ip)) {
            Ok(slot) => slot,
            Err(NoSlot::Full) => {
                debug!(%addr, "every handshake slot open to it is taken; dropping connection");
                continue;
            }
            Err(NoSlot::Source) => {
                debug!(%addr, "too many handshakes from its address; dropping connection");
                continue;
            }
        };
        // As on a dialled link: a frame goes out when it is written, not
        // when the previous one is acknowledged (Nagle held small frames
        // behind large ones on the accepting side of every link).
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let allowed = |k: &PeerKey| ctx.allows(k);
            // The slot covers the handshake and the hello only; an
            // established link lives on in its own tasks.
            let (id, cfg) = (&ctx.identity, &ctx.config);
            match link::accept_guarded(stream, id, &allowed, &ctx.replay, cfg).await {
                Ok(link) => {
                    let peer = link.peer();
                    let established = establish(link, &ctx).await;
                    drop(permit);
                    if let Err(e) = established {
                        debug!(%peer, error = %e, "inbound link failed before hello");
                    }
                }
                Err(e) if e.kind().peer_at_fault() => {
                    warn!(%addr, error = %e, "inbound handshake refused")
                }
                Err(e) => info!(%addr, error = %e, "inbound handshake refused"),
            }
        });
    }
}

pub(super) async fn dial_peer(
    addr: SocketAddr,
    expected: PeerKey,
    ctx: Arc<LinkContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &ctx.config;
    let mut backoff = Duration::from_millis(cfg.redial_min_ms);
    loop {
        let attempt = async {
            let stream = tokio::time::timeout(
                Duration::from_millis(cfg.connect_timeout_ms),
                TcpStream::connect(addr),
            )
            .await
            .map_err(|_| DialError::ConnectTimeout)?
            .map_err(DialError::Connect)?;
            let _ = stream.set_nodelay(true);
            let link = link::connect(stream, &ctx.identity, &expected, cfg)
                .await
                .map_err(DialError::Link)?;
            establish(link, &ctx).await.map_err(DialError::Establish)
        };
        let outcome = tokio::select! {
            _ = shutdown.changed() => return,
            r = attempt => r,
        };
        match outcome {
            Ok(done) => {
                backoff = Duration::from_millis(cfg.redial_min_ms);
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
        backoff = (backoff * 2).min(Duration::from_millis(cfg.redial_max_ms));
    }
}

/// The peer's hello: the first frame on a new link.
async fn receive_hello(
    reader: &mut LinkReader,
    wait: Duration,
) -> Result<Location, EstablishError> {
    let bytes = match tokio::time::timeout(wait, reader.recv()).await {
        Err(_) => return Err(EstablishError::HelloTimeout(wait)),
        Ok(Ok(None)) => return Err(EstablishError::ClosedBeforeHello),
        Ok(Err(e)) => return Err(EstablishError::Link(e)),
        Ok(Ok(Some(bytes))) => bytes,
    };
    match PeerFrame::decode(&bytes) {
        Ok(PeerFrame::Hello { location }) => Ok(location),
        Ok(PeerFrame::Routing(_) | PeerFrame::Swap(_) | PeerFrame::Neighbours { .. }) => {
            Err(EstablishError::NotHello)
        }
        Err(e) => Err(EstablishError::Undecodable(e)),
    }
}

/// Exchange hellos, hand the link to the router, and start its reader and
/// writer. Returns a receiver that resolves when the link is gone.
async fn establish<S>(
    link: link::Link<S>,
    ctx: &Arc<LinkContext>,
) -> Result<oneshot::Receiver<()>, EstablishError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer();
    let cfg = &ctx.config;
    let (mut reader, mut writer) = link.into_split();
    let hello = PeerFrame::Hello {
        location: Location(ctx.location.load(Ordering::Relaxed)),
    }
    .encode();
    writer
        .send(&hello)
        .await
        .map_err(EstablishError::SendHello)?;
    let location = receive_hello(&mut reader, Duration::from_millis(cfg.hello_timeout_ms))
        .await
        .inspect_err(|e| {
            if e.kind().peer_at_fault() {
                warn!(%peer, "peer misbehaved: {e}; closing link");
            }
        })?;
    let conn = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(cfg.write_queue);
    let (done_tx, done_rx) = oneshot::channel();
    let rx = delayed(rx, ctx.link_delay, cfg.write_queue);
    tokio::spawn(write_link(writer, rx, cfg.clone()));
    let input = ctx.input.clone();
    let (start_tx, start_rx) = oneshot::channel();
    let (queue_tx, queue) = mpsc::channel(ctx.link_queue.max(1));
    let reader_task = tokio::spawn(read_link(
        reader,
        LinkTask {
            peer,
            conn,
            input: input.clone(),
            queue: queue_tx,
            pacer: ReadPacer::new(ctx.rate.0, ctx.rate.1),
        },
        Duration::from_secs(cfg.idle_timeout_secs),
        start_rx,
        done_tx,
    ));
    let registered = input
        .send(Input::LinkUp {
            peer,
            conn,
            location,
            tx,
            queue,
            reader: reader_task.abort_handle(),
        })
        .await;
    if registered.is_err() {
        reader_task.abort();
        return Err(EstablishError::NodeStopping);
    }
    let _ = start_tx.send(());
    Ok(done_rx)
}

/// Testnet `link_delay`: a delay line in front of the link's writer. Each
/// frame is held until `delay` after it was queued, so the link has that
/// much latency but its throughput is not limited. With no delay, `rx`
/// itself.
fn delayed<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
    delay: Duration,
    bound: usize,
) -> mpsc::Receiver<T> {
    if delay.is_zero() {
        return rx;
    }
    let (due_tx, mut due_rx) = mpsc::channel(bound.max(1));
    let (out_tx, out_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let due = tokio::time::Instant::now() + delay;
            if due_tx.send((due, frame)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((due, frame)) = due_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if out_tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    out_rx
}

/// A link's writer: encodes each frame the router queued straight into the
/// frame it seals, and writes what is already waiting together (up to
/// [`link::BATCH_FRAMES`] frames in one write).
async fn write_link(mut writer: LinkWriter, mut rx: mpsc::Receiver<PeerFrame>, cfg: LinkConfig) {
    // One timer for the link's life, re-armed when it fires: a frame
    // written only moves `last_write`, it does not touch the timer.
    let mut wait = cfg.keepalive_wait(&mut rand::thread_rng());
    let mut last_write = tokio::time::Instant::now();
    let keepalive = tokio::time::sleep(wait);
    tokio::pin!(keepalive);
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(frame) => {
                    let mut next = Some(frame);
                    while let Some(frame) = next.take() {
                        if writer.queue_with(|out| frame.encode_into(out)).is_err() {
                            return;
                        }
                        if writer.can_queue() {
                            next = rx.try_recv().ok();
                        }
                    }
                    if writer.flush().await.is_err() {
                        return;
                    }
                    last_write = tokio::time::Instant::now();
                }
                None => return,
            },
            () = &mut keepalive => {
                if last_write.elapsed() >= wait {
                    if writer.send_keepalive().await.is_err() {
                        return;
                    }
                    last_write = tokio::time::Instant::now();
                    wait = cfg.keepalive_wait(&mut rand::thread_rng());
                }
                keepalive.as_mut().reset(last_write + wait);
            }
        }
    }
}

/// Which link a reader task serves, and where its messages go: its own
/// bounded queue, which the router serves in turn with the other links'
/// (`fair.rs`); `input` carries only its `LinkDown`.
struct LinkTask {
    peer: PeerKey,
    conn: u64,
    input: mpsc::Sender<Input>,
    queue: mpsc::Sender<LinkInput>,
    pacer: ReadPacer,
}

async fn read_link(
    mut reader: LinkReader,
    link: LinkTask,
    idle_timeout: Duration,
    start: oneshot::Receiver<()>,
    done: oneshot::Sender<()>,
) {
    let LinkTask {
        peer,
        conn,
        input,
        queue,
        mut pacer,
    } = link;
    // Read nothing until the router has the LinkUp, so that no message
    // of this link can reach it first.
    if start.await.is_err() {
        let _ = done.send(());
        return;
    }
    loop {
        // Decoded where the link decrypted it: no copy of the payload
        // first. A keepalive (empty) decodes to nothing.
        let next = reader.recv_with(|b| (!b.is_empty()).then(|| PeerFrame::decode(b)));
        match tokio::time::timeout(idle_timeout, next).await {
            Err(_) => {
                info!(%peer, "link idle too long; closing");
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(None))) => continue,
            Ok(Ok(Some(Some(decoded)))) => match decoded {
                Ok(PeerFrame::Routing(msg)) => {
                    if new_request(&msg).is_some() {
                        let wait = pacer.wait(tokio::time::Instant::now());
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    if queue.send(LinkInput::Routing(msg)).await.is_err() {
                        break;
                    }
                }
                Ok(PeerFrame::Swap(msg)) => {
                    if queue.send(LinkInput::Swap(msg)).await.is_err() {
                        break;
                    }
                }
                Ok(PeerFrame::Neighbours { locations }) => {
                    if queue.send(LinkInput::Neighbours(locations)).await.is_err() {
                        break;
                    }
                }
                Ok(PeerFrame::Hello { .. }) => {
                    warn!(%peer, "peer misbehaved: second hello; closing link");
                    break;
                }
                Err(e) if e.kind().peer_at_fault() => {
                    warn!(%peer, error = %e, "peer misbehaved: undecodable frame; closing link");
                    break;
                }
                Err(e) => {
                    info!(%peer, error = %e, "cannot decode a frame; closing link");
                    break;
                }
            },
            Ok(Err(e)) if e.kind().peer_at_fault() => {
                warn!(%peer, error = %e, "peer misbehaved: bad frame; closing link");
                break;
            }
            Ok(Err(e)) => {
                info!(%peer, error = %e, "link broke");
                break;
            }
        }
    }
    let _ = input.send(Input::LinkDown { peer, conn }).await;
    let _ = done.send(());
}
