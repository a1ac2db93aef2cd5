//! What `veil status` shows: a node's peers, store, cache, counters, load
//! and swapping ([`NodeStatus`]), as the client API carries it and as text.

use serde::{Deserialize, Serialize};

use crate::routing::swap::SwapStats;
use crate::routing::RouterStats;
use crate::store::{CacheStats, StoreHealth, Usage};

/// A peer as `veil status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct PeerStatus {
    pub name: Option<String>,
    pub public_key: String,
    pub address: String,
    pub connected: bool,
    pub location: Option<f64>,
    /// Locations of its own neighbours it announced (FOAF routing).
    #[serde(default)]
    pub neighbours_announced: usize,
}

/// A node's state, for `veil status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct NodeStatus {
    pub public_key: String,
    pub listen: String,
    pub location: f64,
    pub testnet: bool,
    /// The client's requests go through tunnels (the `tunnel` mode): a
    /// get then asks for its whole window at once ([`crate::client::transfer`]).
    #[serde(default)]
    pub tunnels: bool,
    pub peers: Vec<PeerStatus>,
    /// How full the store and the cache are.
    #[serde(flatten)]
    pub usage: Usage,
    /// Whether the store's disk is fine, was reopened, or is read-only.
    #[serde(default)]
    pub store_health: StoreHealth,
    /// Blocks the cache could not write, and cached blocks found damaged.
    #[serde(default)]
    pub cache_health: CacheStats,
    /// The routing core's counters.
    #[serde(flatten)]
    pub stats: RouterStats,
    /// Requests in flight through the node.
    pub pending: u64,
    /// Location swapping: on or off, and what it came to.
    #[serde(default)]
    pub swap: SwapStatus,
    /// Memory against its bound, and what load refused.
    #[serde(default)]
    pub load: LoadStatus,
}

/// Memory use against the `memory` bound, and the node's load counters, as
/// `veil status` shows them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct LoadStatus {
    /// The `memory` setting (bytes).
    pub memory_limit: u64,
    /// Resident set now and at its peak (bytes; 0 without `/proc`).
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    /// What redb's page cache may use (bytes).
    pub db_cache_bytes: u64,
    /// Messages waiting in the links' inbound queues.
    pub link_queued: u64,
    /// Requests answered `RejectedOverload` because their friend was over
    /// its rate, and inserts refused because the store's writer was full.
    pub rate_refused: u64,
    pub store_refused: u64,
    /// Store lookups read off the router task, and inline on it.
    pub reads_off_task: u64,
    pub reads_inline: u64,
    /// Threads the node's async runtime runs on (`runtime.worker_threads`,
    /// or one per core).
    #[serde(default)]
    pub worker_threads: u64,
}

/// Location swapping as `veil status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SwapStatus {
    /// `swap = true` in node.toml: the node finds its own location.
    pub enabled: bool,
    /// Own attempts paused (the node still relays and answers); under the
    /// tree embedding, the node takes no part in the tree.
    pub paused: bool,
    /// How the node finds its location (`[swapping] embedding`).
    #[serde(default)]
    pub embedding: crate::routing::embed::Embedding,
    /// The tree embedding's state, while the node takes part in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeStatus>,
    #[serde(flatten)]
    pub stats: SwapStats,
}

/// Where a node sits in the tree embedding (`routing/embed/`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TreeStatus {
    /// It takes part in the tree now (not paused).
    pub taking_part: bool,
    /// Hops below the root it follows (0: it is the root).
    pub depth: u32,
    /// Nodes in its subtree, itself included.
    pub size: u64,
    /// Whether its parent has given it an interval (so it has a location).
    pub located: bool,
    /// Times the tree moved its location.
    pub moves: u64,
}

impl NodeStatus {
    /// What `veil status` prints.
    pub fn render_text(&self) -> String {
        let u = &self.usage;
        let s = &self.stats;
        let up = self.peers.iter().filter(|p| p.connected).count();
        let mut out = format!(
            "node      {} (location {:.6})\nlisten    {}{}\npeers     {up}/{} connected\n",
            self.public_key,
            self.location,
            self.listen,
            if self.testnet { "  [testnet]" } else { "" },
            self.peers.len()
        );
        for p in &self.peers {
            let announced = match p.neighbours_announced {
                0 => String::new(),
                n => format!(" ({n} neighbours announced)"),
            };
            out.push_str(&format!(
                "  {} {:<8} {} {}{announced}\n",
                if p.connected { "up  " } else { "down" },
                p.name.as_deref().unwrap_or("-"),
                p.address,
                p.public_key
            ));
        }
        out.push_str(&format!(
            "store     {} blocks, {} / {} bytes\ncache     {} blocks, {} / {} bytes, \
             {} write errors, {} damaged\n",
            u.store_blocks,
            u.store_bytes,
            u.store_limit,
            u.cache_blocks,
            u.cache_bytes,
            u.cache_limit,
            self.cache_health.write_errors,
            self.cache_health.damaged
        ));
        out.push_str(&format!("disk      {}\n", self.store_health.render()));
        out.push_str(&format!(
            "requests  {} received, {} originated, {} answered from store, {} loops rejected, \
             {} overloads sent ({} by routing, {} over rate, {} store refused), {} timeouts, \
             {} in flight\n",
            s.requests_received,
            s.requests_originated,
            s.answered_from_store,
            s.loops_rejected,
            s.overloads_sent + self.load.rate_refused + self.load.store_refused,
            s.overloads_sent,
            self.load.rate_refused,
            self.load.store_refused,
            s.timeouts,
            self.pending
        ));
        let l = &self.load;
        out.push_str(&format!(
            "memory    rss {} / {} bytes (peak {}), db cache {}\n\
             load      {} queued, {} reads off task, {} inline; runtime threads {}\n",
            l.rss_bytes,
            l.memory_limit,
            l.rss_peak_bytes,
            l.db_cache_bytes,
            l.link_queued,
            l.reads_off_task,
            l.reads_inline,
            l.worker_threads
        ));
        let w = &self.swap;
        if w.enabled {
            out.push_str(&format!(
                "swapping  on{}: {} swaps, {} attempts ({} failed), {} timeouts, \
                 {} walks relayed, {} answered\n",
                if w.paused {
                    " (own attempts paused)"
                } else {
                    ""
                },
                w.stats.swaps,
                w.stats.attempts,
                w.stats.failed,
                w.stats.timed_out,
                w.stats.relayed,
                w.stats.answered
            ));
        } else {
            out.push_str("swapping  off\n");
        }
        out
    }
}
