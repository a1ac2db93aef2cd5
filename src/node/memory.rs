//! One `memory` setting sizes what a node keeps in memory, and `veil
//! status` shows the resident set against it.
//!
//! Of `memory` (default 48 MiB), an eighth goes to redb's page cache; an
//! eighth each bounds the store writer's queue (256 to 512 blocks of 32
//! KiB) and the tunnel client cache; each link's inbound queue holds at most
//! `runtime.link_queue` messages and at most a 64th of `memory`. The rest
//! is the program itself, the runtime's tasks and threads, the links'
//! outbound queues (`link.write_queue` frames each) and the cache's
//! in-memory index (about [`CACHE_INDEX_BYTES_PER_BLOCK`] bytes per block
//! of `cache_size`: 1.2 MiB for the default 256 MiB, so a cache of more
//! than about 2 GiB needs a larger `memory`; see `store/cache.rs`; the
//! blocks themselves are not kept in memory). Settings in `[runtime]` that
//! ask for more than the share are lowered to it.

use crate::config::NodeConfig;
use crate::keys::BLOCK_LEN;
pub use crate::store::CACHE_INDEX_BYTES_PER_BLOCK;

/// The fewest blocks the store writer's queue holds (a client's put keeps
/// up to 128 inserts in flight through its first hop).
const MIN_STORE_QUEUE: usize = 256;
/// The most blocks the store writer's queue holds.
const MAX_STORE_QUEUE: usize = 512;

/// What the `memory` setting gives each consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The bound itself (bytes).
    pub limit: u64,
    /// redb's page cache (bytes).
    pub db_cache: usize,
    /// Blocks waiting for the store's writer.
    pub store_queue: usize,
    /// Messages each link may have waiting for the router.
    pub link_queue: usize,
    /// Blocks in the tunnel client cache.
    pub client_cache_blocks: usize,
    /// What the cache's index takes when the cache is full (bytes, an
    /// estimate), part of the rest of `memory`.
    pub cache_index: u64,
}

impl MemoryBudget {
    /// The budget for `config` (whose `memory` is already validated; an
    /// unreadable one counts as the default).
    pub fn new(config: &NodeConfig) -> MemoryBudget {
        let limit = config
            .memory_bytes()
            .unwrap_or(crate::config::DEFAULT_MEMORY);
        let bytes = usize::try_from(limit).unwrap_or(usize::MAX);
        let blocks = |share: usize| (bytes / share) / BLOCK_LEN;
        MemoryBudget {
            limit,
            db_cache: bytes / 8,
            store_queue: blocks(8).clamp(MIN_STORE_QUEUE, MAX_STORE_QUEUE),
            link_queue: config.runtime.link_queue.min(blocks(64)).max(8),
            client_cache_blocks: config.runtime.client_cache_blocks.min(blocks(8)).max(1),
            cache_index: config
                .cache_bytes()
                .map_or(0, |b| b / BLOCK_LEN as u64)
                .saturating_mul(CACHE_INDEX_BYTES_PER_BLOCK),
        }
    }
}

/// Cap glibc's malloc arenas at two. By default glibc gives each thread
/// that allocates its own arena (up to 8 per core), and freed blocks stay
/// in the arena that held them, so a node whose threads each pass many
/// 32 KiB blocks grows its resident set far beyond what it holds. A no-op
/// elsewhere.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is safe to
    // call at any time, from any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Keep up to this much freed memory at the top of each arena
        // instead of handing it back to the kernel at once: a relay frees
        // and allocates a 32 KiB block many times a second, and every page
        // given back is faulted in and zeroed again by the next one.
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Freed memory each malloc arena may keep (see [`limit_allocator_arenas`]):
/// 2 MiB, at most 6 MiB over the two arenas and the main heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 2 << 20;

/// The process's resident set now and at its peak, in bytes, from
/// `/proc/self/status` (`VmRSS`, `VmHWM`); zeros where there is no
/// `/proc`.
pub fn rss() -> (u64, u64) {
    rss_of("self")
}

/// As [`rss`], for process `pid` (`/proc/PID/status`).
pub fn rss_of(pid: &str) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SizeSetting;

    fn config(memory: Option<&str>) -> NodeConfig {
        let addr = "127.0.0.1:0".parse().unwrap();
        let mut c = NodeConfig::new(addr, Some(addr), None);
        c.memory = memory.map(|m| SizeSetting::Text(m.into()));
        c
    }

    #[test]
    fn shares_follow_the_setting() {
        let small = MemoryBudget::new(&config(None));
        assert_eq!(small.limit, 48 << 20);
        assert_eq!(small.db_cache, 6 << 20);
        assert_eq!(small.store_queue, 256);
        assert_eq!(small.link_queue, 23);
        assert_eq!(small.client_cache_blocks, 191);
        // The default 256 MiB cache: 8187 blocks.
        assert_eq!(small.cache_index, 8187 * CACHE_INDEX_BYTES_PER_BLOCK);
        assert!(small.cache_index < small.limit / 32);
        let big = MemoryBudget::new(&config(Some("1GiB")));
        assert_eq!(big.db_cache, 128 << 20);
        assert_eq!(big.store_queue, 512);
        assert_eq!(big.link_queue, 64);
        assert_eq!(big.client_cache_blocks, 1024);
    }

    #[test]
    fn rss_reads_proc() {
        let (now, peak) = rss();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(now > 0 && peak >= now);
        }
    }
}
