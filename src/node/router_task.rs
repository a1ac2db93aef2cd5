//! The router task: the one owner of the routing core. It turns inputs
//! (link events, messages, client requests) into [`Event`]s, feeds them to
//! the [`Router`], and carries out every [`Action`] the core returns: frames
//! to links, blocks to the datastore, audit lines, client answers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::client_cache::{ClientCache, NodeBlocks};
use super::Input;
use crate::audit::log::AuditLog;
use crate::client::{NodeStatus, PeerStatus};
use crate::config::NodeConfig;
use crate::identity::PeerKey;
use crate::keys::Location;
use crate::message::PeerFrame;
use crate::routing::htl::policy_for;
use crate::routing::{Action, Anonymity, ClientOutcome, ClientToken, Event, LinkCoins, Router};
use crate::store::Datastore;

/// The router's handle on one established link.
struct LinkEntry {
    conn: u64,
    tx: mpsc::Sender<Vec<u8>>,
    reader: tokio::task::AbortHandle,
}

pub(super) struct RouterTask {
    router: Router<PeerKey>,
    /// The identity's secret, from which each link's HTL coins derive.
    coin_secret: Zeroizing<[u8; 32]>,
    store: Arc<Datastore>,
    /// Tunnel mode: what the local client fetched, read only by it.
    client_cache: RefCell<ClientCache>,
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
    ) -> RouterTask {
        let policy = policy_for(
            config.anonymity,
            LinkCoins::for_node(coin_secret.as_slice()),
        );
        let mut router = Router::with_policy(config.router.clone(), location, policy);
        if config.anonymity == Anonymity::Tunnel {
            router.set_client_tunnels(true);
        }
        RouterTask {
            router,
            coin_secret,
            store,
            client_cache: RefCell::new(ClientCache::new(config.runtime.client_cache_blocks)),
            cache_writes: Arc::new(Semaphore::new(config.runtime.cache_writes_in_flight)),
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
        loop {
            let deadline = self
                .router
                .next_deadline()
                .map(|ms| self.started + Duration::from_millis(ms));
            let drained = self.draining.as_ref().map(|(d, _)| *d);
            let deadline = deadline.into_iter().chain(drained).min();
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
                // Dropping the link's queue ends its writer, which closes
                // the connection: the peer sees a clean close.
                self.drop_link(peer);
            }
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
                    a.link_up(&peer, location);
                }
                let coins = LinkCoins::for_link(self.coin_secret.as_slice(), &peer.0);
                self.feed(Event::LinkUp {
                    peer,
                    location,
                    coins,
                });
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
                let result = blocking(|| self.store.put_store(&block));
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
        let blocks = NodeBlocks {
            store: self.store.as_ref(),
            client: &self.client_cache,
        };
        let actions = self.router.handle(now, &mut self.rng, &blocks, event);
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
                    // `runtime.cache_writes_in_flight` at once; beyond that the block
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
                Action::ClientCacheBlock { block } => {
                    self.client_cache.borrow_mut().insert(block);
                }
                Action::FlowOriginated { flow, op } => {
                    if let Some(a) = &mut self.audit {
                        a.flow_originated(flow, op);
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
            usage,
            stats: stats.clone(),
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
