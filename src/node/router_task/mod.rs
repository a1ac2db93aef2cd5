//! The router task: the one owner of the routing core. It turns inputs
//! (link events, messages, client requests) into [`Event`]s, feeds them to
//! the [`Router`], and carries out every [`Action`] the core returns: frames
//! to links, blocks to the datastore, audit lines, client answers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::client_cache::{ClientCache, NodeBlocks};
use super::fair::{new_request, FairInbox, LinkInput, RateLimits};
use super::Input;
use crate::audit::log::AuditLog;
use crate::config::NodeConfig;
use crate::formats::audit_log::outcome_text;
use crate::identity::PeerKey;
use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Message, PeerFrame};
use crate::routing::embed::EmbedEvent;
use crate::routing::htl::policy_for;
use crate::routing::swap::{SwapEvent, Swapper};
use crate::routing::{Action, Anonymity, ClientOutcome, ClientToken, Event, LinkCoins, Router};
use crate::store::{CacheWriter, Datastore, GroupWriter, Written};

/// Most blocks one durable commit covers.
const STORE_BATCH: usize = 256;

/// Most link messages the router serves per wake-up (in turn across links;
/// then timers, client requests and store results get their chance).
const LINK_BATCH: usize = 32;

/// The router's handle on one established link.
struct LinkEntry {
    conn: u64,
    tx: mpsc::Sender<PeerFrame>,
    reader: tokio::task::AbortHandle,
}

mod embed;
mod guards;
mod neighbourhood;
mod status;
mod swap;

mod store_io;
use store_io::{AfterStore, Deferred, ReadDone};

pub(super) struct RouterTask {
    router: Router<PeerKey>,
    /// The swap protocol's state (`swap.rs` drives it).
    swapper: Swapper<PeerKey>,
    /// The tree embedding (`embed.rs`); where the guards are saved (`guards.rs`).
    tree: embed::Tree,
    saved_guards: guards::SavedGuards,
    /// The location new links' hellos announce, moved on a swap.
    shared_location: Arc<AtomicU64>,
    /// The location the node started at.
    initial_location: Location,
    /// FOAF routing: the neighbourhood last announced, and links up since.
    neighbourhood: neighbourhood::Announced,
    /// The identity's secret, from which each link's HTL coins derive.
    coin_secret: Zeroizing<[u8; 32]>,
    store: Arc<Datastore>,
    /// Tunnel mode: what the local client fetched, read only by it.
    client_cache: RefCell<ClientCache>,
    /// The cache's writer thread (`None` if it could not be started: then
    /// nothing is cached).
    cache_writer: Option<CacheWriter>,
    /// Group commit: the store's writer thread (`None` if it could not be
    /// started; then nothing is stored and every insert ending here fails).
    store_writer: Option<GroupWriter<AfterStore>>,
    /// What the `memory` setting gives each queue and cache.
    budget: super::MemoryBudget,
    /// The writer's results, taken by `run`.
    written: Option<mpsc::Receiver<Vec<Written<AfterStore>>>>,
    /// Blocks each peer has waiting at the writer: they count against the
    /// peer's `router.max_inflight_per_peer`, as requests in flight do.
    pending_writes: HashMap<PeerKey, usize>,
    links: HashMap<PeerKey, LinkEntry>,
    /// Blocks read off the task for the event being fed (`store_io.rs`).
    prefetched: HashMap<RoutingKey, Block>,
    /// Store reads on the blocking pool.
    reads: Arc<Semaphore>,
    reads_tx: mpsc::Sender<ReadDone>,
    /// The reads' results, taken by `run`.
    reads_rx: Option<mpsc::Receiver<ReadDone>>,
    /// Lookups read off the task, and inline (not foreseen, or too many
    /// reads at once).
    reads_off_task: u64,
    reads_inline: Cell<u64>,
    /// Every link's queue of messages, served in turn.
    inbox: FairInbox,
    /// Each friend's rate of new requests.
    limits: RateLimits,
    /// Inserts refused because the store's writer was full, the peer had
    /// its share of it waiting, or the peer held its share of a full store.
    store_refused: u64,
    /// Each friend's blocks in the store (`store_share.rs`).
    shares: super::store_share::StoreShares,
    waiters: HashMap<ClientToken, oneshot::Sender<ClientOutcome>>,
    token_uid: HashMap<ClientToken, u64>,
    next_token: ClientToken,
    audit: Option<AuditLog>,
    started: Instant,
    rng: StdRng,
    config: NodeConfig,
    public_key: PeerKey,
    listen: SocketAddr,
    /// Leaving: when to stop waiting, and whom to tell once nothing is in
    /// flight.
    draining: Option<(Instant, oneshot::Sender<()>)>,
}

impl RouterTask {
    pub(super) fn new(
        config: &NodeConfig,
        location: Location,
        store: Arc<Datastore>,
        audit: Option<AuditLog>,
        (public_key, coin_secret): (PeerKey, Zeroizing<[u8; 32]>),
        listen: SocketAddr,
        shared_location: Arc<AtomicU64>,
    ) -> RouterTask {
        let policy = policy_for(
            config.anonymity,
            LinkCoins::for_node(coin_secret.as_slice()),
        );
        let mut router = Router::with_policy(config.router.clone(), location, policy);
        if config.anonymity == Anonymity::Tunnel {
            router.set_client_tunnels(true);
        }
        let mut rng = StdRng::from_entropy();
        // Under the tree embedding the swapper refuses every walk.
        let swaps =
            config.swap && config.swapping.embedding == crate::routing::embed::Embedding::Swap;
        let swapper = Swapper::new(config.swapping.clone(), swaps, 0, &mut rng);
        let budget = super::MemoryBudget::new(config);
        let (written_tx, written) = mpsc::channel(budget.store_queue);
        let (reads_tx, reads_rx) = mpsc::channel(store_io::READS_IN_FLIGHT);
        let done = move |batch| {
            // The router stopped: nobody waits for these answers.
            let _ = written_tx.blocking_send(batch);
        };
        let store_writer =
            match GroupWriter::spawn(store.clone(), budget.store_queue, STORE_BATCH, done) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the store writer; inserts will fail");
                    None
                }
            };
        let cache_writer = CacheWriter::spawn(
            store.clone(),
            config.runtime.cache_writes_in_flight,
            crate::store::CACHE_BATCH_MAX,
        )
        .inspect_err(|e| warn!(error = %e, "cannot start the cache writer; nothing is cached"))
        .ok();
        RouterTask {
            router,
            swapper,
            tree: Default::default(),
            saved_guards: Default::default(),
            shared_location,
            initial_location: location,
            neighbourhood: Default::default(),
            coin_secret,
            store,
            client_cache: RefCell::new(ClientCache::new(budget.client_cache_blocks)),
            cache_writer,
            store_writer,
            budget,
            written: Some(written),
            pending_writes: HashMap::new(),
            links: HashMap::new(),
            prefetched: HashMap::new(),
            reads: Arc::new(Semaphore::new(store_io::READS_IN_FLIGHT)),
            reads_tx,
            reads_rx: Some(reads_rx),
            reads_off_task: 0,
            reads_inline: Cell::new(0),
            inbox: FairInbox::default(),
            limits: RateLimits::new(
                config.runtime.peer_requests_per_sec,
                config.runtime.peer_request_burst,
            ),
            store_refused: 0,
            shares: Default::default(),
            waiters: HashMap::new(),
            token_uid: HashMap::new(),
            next_token: 1,
            audit,
            started: Instant::now(),
            rng,
            config: config.clone(),
            public_key,
            listen,
            draining: None,
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(super) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (Some(mut written), Some(mut reads)) = (self.written.take(), self.reads_rx.take())
        else {
            return;
        };
        if !self.config.swapping.paused {
            self.start_tree();
        }
        loop {
            let deadline = [
                self.router.next_deadline(),
                self.swapper.next_deadline(),
                self.tree_deadline(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|ms| self.started + Duration::from_millis(ms));
            let drained = self.draining.as_ref().map(|(d, _)| *d);
            let deadline = deadline.into_iter().chain(drained).min();
            let wake = {
                let inbox = &mut self.inbox;
                let next = async {
                    tokio::select! {
                        _ = shutdown.changed() => Wake::Stop,
                        input = inputs.recv() => match input {
                            Some(input) => Wake::Input(input),
                            None => Wake::Stop,
                        },
                        Some(batch) = written.recv() => Wake::Written(batch),
                        Some(done) = reads.recv() => Wake::Read(done),
                        (peer, conn, msg) = std::future::poll_fn(|cx| inbox.poll_next(cx)) => {
                            Wake::Link(peer, conn, msg)
                        }
                        _ = sleep_until_opt(deadline) => Wake::Tick,
                    }
                };
                tokio::pin!(next);
                // Audit lines are written when the task has nothing left to do
                // (and at the latest every `audit::log::AUDIT_STALE_US`), not one write per
                // line.
                match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                    Poll::Ready(wake) => wake,
                    Poll::Pending => {
                        if let Some(a) = &mut self.audit {
                            a.flush();
                        }
                        next.await
                    }
                }
            };
            match wake {
                Wake::Stop => break,
                Wake::Input(input) => self.on_input(input),
                Wake::Written(batch) => self.on_written(batch),
                Wake::Read(done) => self.on_read(done),
                Wake::Link(peer, conn, msg) => {
                    self.on_link_input(peer, conn, msg);
                    // Serve what the links queued meanwhile, still in turn,
                    // without a wake-up each.
                    for _ in 1..LINK_BATCH {
                        let Some((peer, conn, msg)) = self.inbox.try_next() else {
                            break;
                        };
                        self.on_link_input(peer, conn, msg);
                    }
                }
                Wake::Tick => {
                    self.feed(Event::Tick);
                    self.feed_swap(SwapEvent::Tick);
                    self.feed_embed(EmbedEvent::Tick);
                }
            }
            self.announce_neighbourhood();
            self.save_guards_if_changed();
            self.check_drained();
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

    /// Leaving: say so once no request is in flight here, or at the deadline.
    fn check_drained(&mut self) {
        let due = self.draining.as_ref().is_some_and(|(deadline, _)| {
            self.router.pending_count() == 0 || Instant::now() >= *deadline
        });
        if due {
            if let Some((_, done)) = self.draining.take() {
                info!(
                    in_flight = self.router.pending_count(),
                    "leaving: closing every link"
                );
                let _ = done.send(());
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::ClientGet { reply, .. } | Input::ClientPut { reply, .. }
                if self.draining.is_some() =>
            {
                let _ = reply.send(ClientOutcome::Failed(crate::routing::Failure::Overloaded));
            }
            Input::Drain { deadline, done } => {
                info!(
                    in_flight = self.router.pending_count(),
                    "leaving: finishing the requests in flight"
                );
                self.draining = Some((deadline, done));
            }
            Input::PeerAdded { peer } => {
                self.config
                    .peers
                    .retain(|p| p.public_key != peer.public_key);
                self.config.peers.push(peer);
            }
            Input::PeerRemoved { peer } => {
                self.config.peers.retain(|p| p.public_key != peer);
                self.shares.forget(&peer);
                // Dropping the link's queue ends its writer, which closes
                // the connection: the peer sees a clean close.
                self.drop_link(peer);
            }
            Input::LinkUp {
                peer,
                conn,
                location,
                tx,
                queue,
                reader,
            } => {
                self.inbox.add(peer, conn, queue);
                if let Some(old) = self.links.insert(peer, LinkEntry { conn, tx, reader }) {
                    old.reader.abort();
                    self.feed(Event::LinkDown { peer });
                    self.feed_swap(SwapEvent::LinkDown { peer });
                    self.feed_embed(EmbedEvent::LinkDown { peer });
                }
                info!(%peer, location = %location, "link up");
                if let Some(a) = &mut self.audit {
                    a.link_up(&peer, location);
                }
                let coins = LinkCoins::for_link(self.coin_secret.as_slice(), &peer.0);
                self.feed(Event::LinkUp {
                    peer,
                    location,
                    coins,
                });
                self.announce_location_to(peer);
                self.feed_embed(EmbedEvent::LinkUp { peer });
                self.neighbourhood.link_up(peer);
            }
            Input::LinkDown { peer, conn } => {
                if self.links.get(&peer).is_some_and(|l| l.conn == conn) {
                    self.drop_link(peer);
                }
            }
            input @ (Input::SetSwapping { .. } | Input::SetRouting { .. }) => {
                self.on_testnet_control(input)
            }
            Input::ClientGet { key, reply } => {
                self.after_read(key, Deferred::ClientGet { key, reply });
            }
            Input::ClientPut { block, reply } => {
                let token = self.new_token(reply);
                self.feed(Event::ClientPut { token, block });
            }
            Input::Place { block, reply } => {
                let mut broken = Vec::new();
                self.store_block(block, AfterStore::Place(reply), &mut broken);
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    /// A message from a link's queue: a new request beyond the peer's rate
    /// is refused at once; everything else goes to the core.
    fn on_link_input(&mut self, peer: PeerKey, conn: u64, input: LinkInput) {
        if self.links.get(&peer).is_none_or(|l| l.conn != conn) {
            return;
        }
        match input {
            LinkInput::Routing(msg) => {
                if let Some(a) = &mut self.audit {
                    a.received(&peer, &msg);
                }
                if let Some(uid) = new_request(&msg) {
                    if !self.limits.admit(peer, Instant::now()) {
                        debug!(%peer, "peer is over its request rate; refusing");
                        let mut broken = Vec::new();
                        self.send(peer, Message::RejectedOverload { uid }, &mut broken);
                        for peer in broken {
                            self.drop_link(peer);
                        }
                        return;
                    }
                }
                match store_io::looked_up(&msg) {
                    Some(key) => self.after_read(key, Deferred::Link { peer, conn, msg }),
                    None => self.feed(Event::Message { from: peer, msg }),
                }
            }
            LinkInput::Swap(msg) => {
                if !self.tree_message(peer, &msg) {
                    self.feed_swap(SwapEvent::Message { from: peer, msg });
                }
            }
            LinkInput::Neighbours(locations) => self.router.set_neighbour_view(&peer, &locations),
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
            self.inbox.remove(&peer);
            self.limits.forget(&peer);
            info!(%peer, "link down");
            if let Some(a) = &mut self.audit {
                a.link_down(&peer);
            }
            self.feed(Event::LinkDown { peer });
            self.feed_swap(SwapEvent::LinkDown { peer });
            self.feed_embed(EmbedEvent::LinkDown { peer });
        }
    }

    /// Hand one event to the core and carry out what it says.
    fn feed(&mut self, event: Event<PeerKey>) {
        let now = self.now();
        let blocks = NodeBlocks {
            store: self.store.as_ref(),
            client: &self.client_cache,
            prefetched: &self.prefetched,
            inline_reads: &self.reads_inline,
        };
        let actions = self.router.handle(now, &mut self.rng, &blocks, event);
        let mut broken = Vec::new();
        let mut actions = actions.into_iter().peekable();
        while let Some(action) = actions.next() {
            match action {
                Action::Send { to, msg } => self.send(to, msg, &mut broken),
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
                    // cache's writer thread keeps blocks in batches, at most
                    // `runtime.cache_writes_in_flight` waiting; beyond that
                    // the block is simply not cached.
                    let key = block.routing_key();
                    let queued = self
                        .cache_writer
                        .as_ref()
                        .is_some_and(|w| w.try_write(block).is_ok());
                    match (queued, &mut self.audit) {
                        (true, Some(a)) => a.block_cached(&key),
                        (true, None) => {}
                        (false, _) => debug!("cache writes saturated; not caching this block"),
                    }
                }
                Action::StoreBlock { block } => {
                    // A sink's answer follows its `StoreBlock` at once; it
                    // waits for the block to be durable.
                    let answer = actions.next_if(|a| {
                        matches!(
                            a,
                            Action::Send {
                                msg: Message::InsertSucceeded { .. }
                                    | Message::RouteNotFound { .. },
                                ..
                            }
                        )
                    });
                    let after = match answer {
                        Some(Action::Send { to, msg }) => AfterStore::Reply { to, msg },
                        _ => AfterStore::Quiet,
                    };
                    self.store_block(block, after, &mut broken);
                }
                Action::Misbehaved { peer, reason } => {
                    warn!(%peer, ?reason, "peer misbehaved; closing link");
                    broken.push(peer);
                }
                Action::ClientCacheBlock { block } => {
                    self.client_cache.borrow_mut().insert(block);
                }
                Action::FlowOriginated { flow, op } => {
                    if let Some(a) = &mut self.audit {
                        a.flow_originated(flow, op);
                    }
                }
                Action::TunnelExit { from, tunnel, keys } => {
                    if let Some(a) = &mut self.audit {
                        a.tunnel_exit(&from, tunnel, keys);
                    }
                }
                // The node sends no `ClientSession` (each client get or put
                // is its own tunnelled request), so this never comes.
                Action::SessionDone { token, .. } => {
                    debug!(token, "session answer with no session asked; ignored");
                }
            }
        }
        for peer in broken {
            self.drop_link(peer);
        }
    }

    /// Send `msg` to `to` if its link is up; a link whose queue is full is
    /// added to `broken`.
    fn send(&mut self, to: PeerKey, msg: Message, broken: &mut Vec<PeerKey>) {
        if let Some(a) = &mut self.audit {
            a.sent(&to, &msg);
        }
        let Some(link) = self.links.get(&to) else {
            return;
        };
        // Encoded by the link's writer, straight into the frame it seals.
        if link.tx.try_send(PeerFrame::Routing(msg)).is_err() {
            warn!(peer = %to, "peer is not reading its link; closing it");
            broken.push(to);
        }
    }
}

/// What woke the router task.
enum Wake {
    Stop,
    Input(Input),
    Written(Vec<Written<AfterStore>>),
    Read(ReadDone),
    Link(PeerKey, u64, LinkInput),
    Tick,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
