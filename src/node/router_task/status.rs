//! What `veil status` shows of a running node: its peers, store, cache,
//! the router's counters, swapping and load. Part of the router task.

use std::collections::HashMap;

use super::RouterTask;
use crate::client::{LoadStatus, NodeStatus, PeerStatus};
use crate::identity::PeerKey;
use crate::keys::Location;

impl RouterTask {
    pub(super) fn status(&self) -> NodeStatus {
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
                neighbours_announced: self.router.neighbour_view_len(&p.public_key),
            })
            .collect();
        NodeStatus {
            public_key: self.public_key.to_string(),
            listen: self.listen.to_string(),
            location: self.router.location().as_f64(),
            testnet: self.config.testnet,
            tunnels: self.router.client_tunnels(),
            peers,
            usage,
            store_health: self.store.health(),
            cache_health: self.store.cache_stats(),
            stats: stats.clone(),
            pending: self.router.pending_count() as u64,
            swap: self.swap_status(),
            load: self.load_status(),
        }
    }

    fn load_status(&self) -> LoadStatus {
        let (rss_bytes, rss_peak_bytes) = crate::node::rss();
        LoadStatus {
            memory_limit: self.budget.limit,
            rss_bytes,
            rss_peak_bytes,
            db_cache_bytes: self.budget.db_cache as u64,
            link_queued: self.inbox.queued() as u64,
            rate_refused: self.limits.refused.values().sum(),
            store_refused: self.store_refused,
            reads_off_task: self.reads_off_task,
            reads_inline: self.reads_inline.get(),
            worker_threads: tokio::runtime::Handle::current().metrics().num_workers() as u64,
        }
    }
}
