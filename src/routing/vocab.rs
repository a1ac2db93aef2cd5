//! The routing core's driving API: what goes into a [`Router`](super::Router)
//! ([`Event`]), what comes out ([`Action`], [`ClientOutcome`]), its
//! configuration ([`RouterConfig`]) and its counters ([`RouterStats`]).
//! Everything here is re-exported from [`crate::routing`].

use std::fmt::Debug;
use std::hash::Hash;

use crate::error::ErrorKind;
use crate::keys::{Block, Location, RoutingKey};
use crate::message::{Htl, Message, TunnelId, Uid};
use crate::routing::htl::LinkCoins;

/// Milliseconds on whatever clock the driver uses. Only differences matter.
pub type Time = u64;

/// Identifies one request of the local client, chosen by the driver.
pub type ClientToken = u64;

/// What a peer identifier must offer: a total order (for tie-breaks) and
/// hashing. The harness uses node indices, the node runtime public keys.
pub trait PeerId: Clone + Ord + Hash + Debug {}
impl<T: Clone + Ord + Hash + Debug> PeerId for T {}

/// Read access to the node's datastore (store and cache together).
pub trait BlockSource {
    fn lookup(&self, key: &RoutingKey) -> Option<Block>;

    /// The client cache: blocks this node's own client fetched through a
    /// tunnel ([`Action::ClientCacheBlock`]). Only the local client reads it;
    /// it never answers a neighbour. None by default.
    fn client_lookup(&self, _key: &RoutingKey) -> Option<Block> {
        None
    }
}

/// The hops-to-live budget of a request, unless configured otherwise.
pub const DEFAULT_MAX_HTL: Htl = 18;

/// Inserts are stored at every node that accepts them with this HTL or
/// less. Loops and rejections eat the budget near the end of a path, so
/// fewer nodes than the threshold receive such an HTL: on
/// `small-world-32.toml` (HTL 18), 5 left 1.5% of 2570 block inserts at
/// one holder and stored 3.1 copies on average, where 2 left 68% at one.
/// With `insert_end = "sink"` it is also how far an insert goes on after
/// its sink (rule 8 in `docs/protocol.md`).
pub const DEFAULT_REPLICATE_HTL: Htl = 5;

/// Tunables of the routing core (`[router]` in `node.toml`; every field has a default).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Largest HTL accepted; larger values are clamped. Also the budget a
    /// deterministic originator starts with.
    pub max_htl: Htl,
    /// Fixed part of the time to wait on a peer.
    pub timeout_base_ms: u64,
    /// Added per hop of HTL handed to the peer.
    pub timeout_per_hop_ms: u64,
    /// Requests one upstream peer may have in flight through this node.
    pub max_inflight_per_peer: usize,
    /// Requests this node handles at once, all sources together.
    pub max_pending: usize,
    /// Replication: a node that accepts an insert arriving with a
    /// hops-to-live at or below this stores the block durably (not only in
    /// its cache) when the insert ends, besides the sink. 0 stores at the
    /// sink alone. With `insert_end = "sink"`, a sink lets an insert go on
    /// for at most this many hops. See `docs/protocol.md`, "Replication".
    pub replicate_htl: Htl,
    /// Tunnel tunables (`[router.tunnel]`).
    pub tunnel: TunnelConfig,
    /// How a search ranks its candidates: by their own locations (`"none"`,
    /// the lecture's greedy rule) or also by their neighbours' (`"foaf"`).
    pub lookahead: Lookahead,
    /// What a hop costs: one HTL each (`"hop"`, the lecture's rule) or
    /// nothing while it brings the request closer to its key than the node
    /// it came from (`"progress"`).
    pub htl_rule: HtlRule,
    /// Where an insert ends: `"walk"` (its whole budget, the default) or
    /// `"sink"` (near its key, rule 8 of `docs/protocol.md`).
    pub insert_end: InsertEnd,
}

/// What a hop costs of a request's hops-to-live.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HtlRule {
    /// Every node that accepts a request takes one off (under the
    /// anonymity mode's policy): the lecture's rule, and the trace in
    /// `tests/golden/seed-a-f.trace`.
    #[default]
    Hop,
    /// A node closer to the key than the neighbour that sent the request
    /// keeps the HTL it received: progress is free, and the budget is
    /// spent on the hops that lead away from the key, which is where dead
    /// ends and backtracking are. The free hop is paid back if the node
    /// has to try a second neighbour (as any free hop, `docs/protocol.md`
    /// §4), and a request can never revisit a node (loops are refused), so
    /// a search still ends: every free hop strictly approaches the key.
    Progress,
}

words!(HtlRule, "an HTL rule", Hop = "hop", Progress = "progress");

/// Where an insert ends (`[router] insert_end`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum InsertEnd {
    /// An insert spends its whole budget (rule 7), leaving replicas where
    /// it runs out: the most copies, and on a small network a walk through
    /// most of it (a `RejectedLoop` at each revisit).
    #[default]
    Walk,
    /// Rule 8: a sink (a node closer to the key than every neighbour) keeps
    /// a replica and lets the insert go on for at most `replicate_htl`
    /// hops; a replicating node ends it at its first loop. Far fewer loops
    /// and copies placed round the key, but on a badly embedded network an
    /// insert that stops at a local minimum is found less often
    /// (`docs/protocol.md`, rule 8).
    Sink,
}

words!(InsertEnd, "an insert end", Walk = "walk", Sink = "sink");

/// How a search ranks the neighbours it may send a request to.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Lookahead {
    /// By each neighbour's own location: plain greedy routing (the lecture's
    /// rule, and the trace in `tests/golden/seed-a-f.trace`).
    #[default]
    None,
    /// By the closest of each neighbour's location and the locations of its
    /// own neighbours, as they announced them (Hyphanet's FOAF routing,
    /// `PeerManager.closerPeer`; greedy with neighbour-of-neighbour
    /// lookahead, Manku, Naor and Wieder 2004). A neighbour that announced
    /// none is ranked by its own location.
    Foaf,
}

words!(Lookahead, "a lookahead", None = "none", Foaf = "foaf");

/// Tunables of tunnels (see `docs/protocol.md`, "Tunnels").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TunnelConfig {
    /// Hops every tunnel has at least. The last hop is the exit, so with 2
    /// or more the exit is never the originator's neighbour.
    pub min_walk: usize,
    /// Past `min_walk`, the originator adds one more hop with this
    /// probability each time (clamped into `[0, 0.99]`; NaN counts as 0).
    /// Mean length is `min_walk + p / (1 - p)` below `max_walk`.
    pub p_extend: f64,
    /// Hops a tunnel has at most.
    pub max_walk: usize,
    /// How long the originator reuses a tunnel for new sessions.
    pub reuse_ms: u64,
    /// How long the originator keeps a guard: every new tunnel starts at
    /// the primary guard while it is up and can extend, else at the backup;
    /// 0: a random first hop for every tunnel. See `docs/anonymity.md`,
    /// "Predecessor over time".
    pub guard_ms: u64,
    /// A hop forgets a tunnel that carried nothing for this long.
    pub idle_ms: u64,
    /// The originator sends on a clock with this period.
    pub tick_ms: u64,
    /// New work within `reaction_ms` of the tunnel's last answer may be a
    /// reaction to it: the clock then starts after a delay drawn uniformly
    /// from `[delay_min_ms, delay_max_ms]`.
    pub reaction_ms: u64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// A reaction also waits a geometric number of the first hop's round
    /// trips: one more with this probability each time (at most 8; NaN
    /// counts as 0), so that how late it comes does not tell the first hop
    /// that no hop is before it.
    pub p_virtual_hop: f64,
    /// With keys outstanding, a tunnel silent for this long is broken.
    pub progress_timeout_ms: u64,
    /// Rebuilds one session may need before its remaining keys fail.
    pub max_rebuilds: u32,
    /// Keys sent into a tunnel and not yet answered, at most.
    pub window: usize,
    /// Blocks sent into a tunnel and not yet answered, at most.
    pub put_window: usize,
    /// Keys (or blocks) the exit of one tunnel searches for at once.
    pub exit_window: usize,
    /// Tunnels this node relays or exits at once.
    pub max_hops: usize,
    /// Client sessions in flight at once.
    pub max_sessions: usize,
    /// Keys (or blocks) one session may ask for, and one exit may queue.
    pub max_session_items: usize,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            min_walk: 3,
            p_extend: 0.5,
            max_walk: 8,
            reuse_ms: 10 * 60 * 1000,
            guard_ms: 60 * 24 * 60 * 60 * 1000,
            idle_ms: 10 * 60 * 1000,
            tick_ms: 5,
            reaction_ms: 2_000,
            delay_min_ms: 20,
            delay_max_ms: 250,
            p_virtual_hop: 0.75,
            progress_timeout_ms: 60_000,
            max_rebuilds: 4,
            window: 4096,
            put_window: 256,
            exit_window: 64,
            max_hops: 1024,
            max_sessions: 8192,
            max_session_items: 65_536,
        }
    }
}

// `p_extend` is clamped (never NaN) wherever it is used, and
// configurations are compared only in tests and config round trips.
impl Eq for TunnelConfig {}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_htl: DEFAULT_MAX_HTL,
            timeout_base_ms: 5_000,
            timeout_per_hop_ms: 2_000,
            max_inflight_per_peer: 64,
            max_pending: 4_096,
            replicate_htl: DEFAULT_REPLICATE_HTL,
            tunnel: TunnelConfig::default(),
            lookahead: Lookahead::None,
            htl_rule: HtlRule::Hop,
            insert_end: InsertEnd::Walk,
        }
    }
}

impl RouterConfig {
    /// How long to wait for a peer to which a request went with `htl`.
    pub fn timeout_for(&self, htl: Htl) -> u64 {
        self.timeout_base_ms + self.timeout_per_hop_ms * u64::from(htl)
    }
}

/// Whether a request fetches or inserts.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    Put,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }
}

/// An input to the router.
#[derive(Clone, Debug)]
pub enum Event<P> {
    /// An authenticated link to a neighbour is up. `coins` are the link's
    /// HTL coins (used in `freenet` mode; [`LinkCoins::default`] otherwise).
    LinkUp {
        peer: P,
        location: Location,
        coins: LinkCoins,
    },
    /// The link to a neighbour is gone.
    LinkDown { peer: P },
    /// A decoded message arrived from a neighbour.
    Message { from: P, msg: Message },
    /// The local client asks for a key.
    ClientGet { token: ClientToken, key: RoutingKey },
    /// The local client inserts a block.
    ClientPut { token: ClientToken, block: Block },
    /// The local client fetches or inserts many blocks in one session, always
    /// through a tunnel; answered by one [`Action::SessionDone`].
    ClientSession {
        token: ClientToken,
        request: SessionRequest,
    },
    /// Time passed; expire whatever is due.
    Tick,
}

/// What one client session asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionRequest {
    Get(Vec<RoutingKey>),
    Put(Vec<Block>),
}

impl SessionRequest {
    pub fn len(&self) -> usize {
        match self {
            SessionRequest::Get(keys) => keys.len(),
            SessionRequest::Put(blocks) => blocks.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a local request did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Failure {
    /// The hops-to-live ran out somewhere along the way.
    DataNotFound,
    /// Every reachable route was exhausted first.
    RouteNotFound,
    /// A peer did not answer in time.
    Timeout,
    /// This node is handling too many requests, or no peer took the insert.
    Overloaded,
    /// The node has no connected neighbour to ask.
    NoPeers,
    /// An insert under a signed key met a different valid block there: the
    /// original is kept.
    Collision,
    /// The block to insert does not verify (a forged signed block).
    BadBlock,
    /// The insert failed further along its path (`InsertFailed` came back):
    /// a node could not store the block durably (a full or failing disk),
    /// or lost its own next hop.
    NotStored,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::DataNotFound => "data not found",
            Failure::RouteNotFound => "route not found",
            Failure::Timeout => "timed out",
            Failure::Overloaded => "overloaded",
            Failure::NoPeers => "no connected peers",
            Failure::Collision => "collision",
            Failure::BadBlock => "block does not verify",
            Failure::NotStored => "not stored",
        }
    }
}

/// The answer to a local client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    Found(Block),
    Inserted,
    Failed(Failure),
}

/// Ways a neighbour broke the protocol. The driver should drop the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A request with hops-to-live zero.
    ZeroHtl,
    /// A block that does not hash to the key it was sent for.
    BadBlock,
    /// A reply whose kind does not fit the request (e.g. `DataFound` for an insert).
    WrongReply,
    /// A tunnel message that breaks the tunnel protocol (a block that does
    /// not hash to the key asked through the tunnel).
    BadTunnel,
}

/// An output of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send a message to a connected neighbour.
    Send { to: P, msg: Message },
    /// A local client request got this uid (the driver's ground-truth log).
    Originated {
        token: ClientToken,
        uid: Uid,
        key: RoutingKey,
        op: Op,
    },
    /// Answer the local client.
    ClientDone {
        token: ClientToken,
        outcome: ClientOutcome,
    },
    /// A verified block passed through this node: keep it in the cache.
    CacheBlock { block: Block },
    /// This node is a sink for an insert: keep the block in the store.
    StoreBlock { block: Block },
    /// A neighbour broke the protocol.
    Misbehaved { peer: P, reason: Misbehaviour },
    /// A block the local client fetched through a tunnel: keep it in the
    /// client cache ([`BlockSource::client_lookup`]), never in the cache
    /// neighbours can read.
    ClientCacheBlock { block: Block },
    /// The answer to an [`Event::ClientSession`]: one outcome per key or
    /// block, in the order asked.
    SessionDone {
        token: ClientToken,
        outcomes: Vec<ClientOutcome>,
    },
    /// The originator is about to send a message that starts a flow of its
    /// own client's (a tunnel build or a batch; the next [`Action::Send`]).
    /// `flow` is the id on that link, as [`Message::uid`] returns it: the
    /// driver's ground-truth log, never sent anywhere.
    FlowOriginated { flow: Uid, op: Op },
    /// As a tunnel's exit, this node opened these keys (or a block with the
    /// first key) on the tunnel that reaches it from `from` as `tunnel`:
    /// what the exit observes, for the driver's audit log.
    TunnelExit {
        from: P,
        tunnel: TunnelId,
        keys: Vec<RoutingKey>,
    },
}

/// Counters for status reports.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct RouterStats {
    pub requests_received: u64,
    pub requests_originated: u64,
    pub answered_from_store: u64,
    pub loops_rejected: u64,
    pub overloads_sent: u64,
    pub timeouts: u64,
    pub ignored_replies: u64,
    /// Protocol breaches reported against neighbours (a forged or bad block,
    /// a zero HTL, a wrong reply): each one closes that link.
    #[serde(default)]
    pub misbehaviours: u64,
    /// Inserts under a signed key that met a different block here.
    #[serde(default)]
    pub collisions: u64,
}

/// What kind of failure a network failure is, for callers that act on it.
impl From<Failure> for ErrorKind {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::DataNotFound | Failure::RouteNotFound => ErrorKind::NotFound,
            Failure::Timeout => ErrorKind::Timeout,
            Failure::Overloaded => ErrorKind::Overloaded,
            Failure::NoPeers => ErrorKind::NoPeers,
            Failure::Collision => ErrorKind::Refused,
            Failure::BadBlock => ErrorKind::BadData,
            Failure::NotStored => ErrorKind::Refused,
        }
    }
}
