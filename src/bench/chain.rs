//! `veil bench --chain`: a 6-node chain of real `veil node` processes. A
//! file's blocks are placed at n4 and fetched from n0, so the data crosses
//! three relaying nodes (n1, n2, n3). Prints each get's time and
//! throughput, every node's resident set (now and peak, from `/proc`), and
//! the machine's limit for that path:
//!
//! - it measures SHA-256 and ChaCha20-Poly1305 on one core;
//! - the path needs, per byte: one seal and one open on each of its four
//!   links plus the client's open of the content ([`AEAD_PASSES`]), and
//!   one SHA-256 pass at every node that verifies the block (holder, three
//!   relays, requester) plus the client's three: the block against its
//!   routing key, the plaintext against its convergent key, and the whole
//!   file against the hash its root names ([`HASH_PASSES`]);
//! - spread over the machine's cores, that is
//!   `cores / (aead_passes / aead_speed + hash_passes / hash_speed)`.
//!
//! The achieved fraction is the 8 MiB get's throughput over that limit.
//! With `--link-delay-ms` every node delays its frames (testnet only), so
//! the same gets show the latency-bound case.
//!
//! Before the gets it measures the added latency per hop: fresh single
//! blocks placed 1..4 hops from n0 and fetched over one client connection,
//! the slope of the median time over distance, against the loopback round
//! trip of a TCP ping-pong between two sockets in the same run
//! ([`LATENCY_TARGET`]). With `--relay-total` it then passes that many bytes
//! through the chain, a fresh 32 MiB file at a time (no file is held whole),
//! and checks every node's peak resident set against the default `memory`.
//! Last it measures a bare relay chain on the same machine
//! ([`super::floor`]): threads forwarding the same frames and doing
//! only the path's cryptography, the floor any relay implementation stands
//! on, so veil's figures can be read against what the machine allows.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::Digest;

use super::floor::Floor;
use super::inproc::{chacha_throughput, median, slope, tempfile_dir};
use super::BenchError;
use crate::client::{Client, Endpoint};
use crate::config::{NodeConfig, PeerConfig, SizeSetting, DEFAULT_MEMORY, IDENTITY_FILE};
use crate::identity::Identity;
use crate::keys::{Chk, BLOCK_LEN};
use crate::routing::Anonymity;

/// Nodes in the chain.
pub const CHAIN_NODES: usize = 6;
/// Where the file's blocks are placed (n0 fetches them).
pub(super) const HOLDER: usize = 4;
pub use super::limit::{PathPasses, AEAD_PASSES, HASH_PASSES};

/// What to run.
pub struct ChainOptions {
    /// The `veil` binary the nodes run.
    pub exe: PathBuf,
    pub anonymity: Anonymity,
    /// Testnet `link_delay_ms` on every node (0: none).
    pub link_delay_ms: u64,
    /// Whether the nodes write audit logs (testnet `audit_log`). Off by
    /// default: a node outside testnet mode writes none.
    pub audit_log: bool,
    /// Every node's `runtime.worker_threads` (0: one per core).
    pub node_threads: usize,
    /// File sizes fetched, in bytes.
    pub sizes: Vec<usize>,
    /// Blocks in flight per get.
    pub concurrency: usize,
    /// Fetches per distance for the per-hop latency (0: not measured).
    pub latency_samples: usize,
    /// Bytes to pass through the chain for the memory run (0: none).
    pub relay_total: u64,
}

/// The per-hop latency target: at most this many loopback round trips.
pub const LATENCY_TARGET: f64 = 1.5;
/// The memory run's file size: the bytes pass through a file at a time.
pub(super) const RELAY_FILE: usize = 32 << 20;

/// Added latency per hop against the loopback round trip, one run.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct HopLatency {
    /// Median get time (ms) of a fresh block held d hops from n0, d = 1..4.
    pub by_distance_ms: Vec<f64>,
    pub samples: usize,
    /// Least-squares slope of the medians over distance.
    pub per_hop_ms: f64,
    /// Median round trip of a small message between two loopback sockets.
    pub loopback_rtt_ms: f64,
    /// `per_hop_ms / loopback_rtt_ms`.
    pub ratio: f64,
    /// `0 < ratio <= LATENCY_TARGET`.
    pub met: bool,
}

/// The memory run: bytes passed through the chain and the bound.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Relayed {
    pub bytes: u64,
    pub files: usize,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// The default `memory` setting every node ran with.
    pub bound_mib: f64,
    /// The highest peak resident set of any node.
    pub highest_peak_mib: f64,
    /// Every node's peak within the bound.
    pub met: bool,
}

/// One get across the chain.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ChainGet {
    pub bytes: usize,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// `mib_per_s` over the path limit measured in the same run.
    pub of_limit: f64,
}

/// One node's resident set.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NodeRss {
    pub name: String,
    pub rss_mib: f64,
    pub peak_mib: f64,
    /// The node's runtime threads, as its `veil status` reports them.
    pub runtime_threads: u64,
}

/// What `veil bench --chain` measured.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ChainReport {
    pub anonymity: String,
    pub link_delay_ms: u64,
    /// Whether the nodes wrote audit logs.
    pub audit_log: bool,
    /// Every node's `runtime.worker_threads` (0: one per core).
    pub node_threads: usize,
    pub latency: Option<HopLatency>,
    pub gets: Vec<ChainGet>,
    pub relayed: Option<Relayed>,
    pub rss: Vec<NodeRss>,
    pub sha256_mib_per_s: f64,
    pub chacha_mib_per_s: f64,
    /// The ChaCha20 keystream alone (a tunnel relay's layer), one core.
    pub chacha20_mib_per_s: f64,
    pub cores: usize,
    /// What the limit counts per byte in this mode.
    pub passes: PathPasses,
    /// The machine's limit for the path (MiB/s).
    pub limit_mib_per_s: f64,
    /// The largest get's throughput over the limit.
    pub fraction: f64,
    /// The bare relay chain measured in the same run: what this machine
    /// allows any relay doing the path's cryptography.
    pub floor: Floor,
    /// The bare chain's throughput over the limit.
    pub floor_fraction: f64,
    /// The cryptography one relay does on one block before it passes it
    /// on (open, hash, seal of [`BLOCK_LEN`] bytes at the speeds above), in
    /// ms: a floor under the added latency per hop of any relay that checks
    /// a block before forwarding it.
    pub hop_crypto_ms: f64,
}

/// [`ChainReport::hop_crypto_ms`] from the measured speeds (MiB/s).
pub fn hop_crypto_ms(sha_mib_per_s: f64, aead_mib_per_s: f64) -> f64 {
    BLOCK_LEN as f64 / MIB * (2.0 / aead_mib_per_s + 1.0 / sha_mib_per_s) * 1000.0
}

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// The largest get's throughput (MiB/s), 0 without gets.
pub(super) fn best_of(gets: &[ChainGet]) -> f64 {
    gets.last().map_or(0.0, |g| g.mib_per_s)
}

/// Whether an added latency per hop meets [`LATENCY_TARGET`]. A slope
/// that is not positive is no per-hop cost: the times do not grow with
/// distance (in tunnel mode the tunnel's batch delays set them), so it
/// meets nothing.
fn latency_met(per_hop_ms: f64, loopback_rtt_ms: f64) -> bool {
    per_hop_ms > 0.0 && loopback_rtt_ms > 0.0 && per_hop_ms / loopback_rtt_ms <= LATENCY_TARGET
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// The node processes; killed on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Write the chain's node directories under `dir`; their client addresses.
fn lay_out(dir: &Path, opts: &ChainOptions) -> Result<Vec<Endpoint>, BenchError> {
    let n = CHAIN_NODES;
    let mut ids = Vec::new();
    for i in 0..n {
        let node_dir = dir.join(format!("n{i}"));
        std::fs::create_dir_all(&node_dir).map_err(|source| BenchError::Io {
            path: node_dir.clone(),
            source,
        })?;
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        identity.save(node_dir.join(IDENTITY_FILE))?;
        ids.push(identity.public());
    }
    let ports = crate::testnet::free_ports(n).map_err(|source| BenchError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for i in 0..n {
        // The client API on its default Unix socket, as `veil get` uses it.
        let mut config = NodeConfig::new(ports[i], None, Some((i as f64 + 0.5) / n as f64));
        config.testnet = true;
        config.audit_log = opts.audit_log;
        config.runtime.worker_threads = opts.node_threads;
        config.anonymity = opts.anonymity;
        config.link_delay_ms = opts.link_delay_ms;
        config.store_size = SizeSetting::Text("256MiB".into());
        // A get keeps `concurrency` requests in flight through each link.
        config.router.max_inflight_per_peer = config
            .router
            .max_inflight_per_peer
            .max(2 * opts.concurrency);
        for j in [i.wrapping_sub(1), i + 1] {
            if j < n {
                config.peers.push(PeerConfig {
                    address: ports[j],
                    public_key: ids[j],
                    name: Some(format!("n{j}")),
                });
            }
        }
        config
            .save(&dir.join(format!("n{i}")))
            .map_err(crate::node::NodeError::from)?;
    }
    Ok((0..n)
        .map(|i| Endpoint::of_config(&dir.join(format!("n{i}")), None))
        .collect())
}

async fn links_up(clients: &[Endpoint]) -> usize {
    let mut up = 0;
    for c in clients {
        if let Ok(mut c) = Client::connect(c, Duration::from_secs(2)).await {
            if let Ok(s) = c.status().await {
                up += s.peers.iter().filter(|p| p.connected).count();
            }
        }
    }
    up
}

/// SHA-256 on one core, MiB/s (about half a second of hashing).
pub fn sha256_throughput() -> f64 {
    let buf = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < Duration::from_millis(500) {
        std::hint::black_box(sha2::Sha256::digest(&buf));
        bytes += buf.len();
    }
    bytes as f64 / MIB / start.elapsed().as_secs_f64()
}

/// Run the chain bench.
pub async fn run(opts: &ChainOptions, on_step: impl Fn(&str)) -> Result<ChainReport, BenchError> {
    let dir = tempfile_dir()?;
    let result = run_in(&dir, opts, &on_step).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    dir: &Path,
    opts: &ChainOptions,
    on_step: &impl Fn(&str),
) -> Result<ChainReport, BenchError> {
    let clients = lay_out(dir, opts)?;
    let mut procs = Processes(Vec::new());
    for i in 0..CHAIN_NODES {
        let child = crate::testnet::spawn_node(&opts.exe, &dir.join(format!("n{i}")))
            .map_err(|e| BenchError::Spawn(e.to_string()))?;
        procs.0.push(child);
    }
    on_step("waiting for the chain's links");
    let deadline = Instant::now() + Duration::from_secs(30);
    while links_up(&clients).await < 2 * (CHAIN_NODES - 1) {
        if Instant::now() > deadline {
            return Err(BenchError::ChainNotUp);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latency = match opts.latency_samples {
        0 => None,
        n => {
            on_step("per-hop latency: single blocks 1..4 hops away, and a loopback ping-pong");
            let by_distance_ms = hop_latency(&clients, n).await?;
            let loopback_rtt_ms =
                loopback_rtt(n.max(200))
                    .await
                    .map_err(|source| BenchError::Io {
                        path: "127.0.0.1".into(),
                        source,
                    })?;
            let per_hop_ms = slope(&by_distance_ms);
            let ratio = per_hop_ms / loopback_rtt_ms;
            Some(HopLatency {
                by_distance_ms,
                samples: n,
                per_hop_ms,
                loopback_rtt_ms,
                ratio,
                met: latency_met(per_hop_ms, loopback_rtt_ms),
            })
        }
    };
    let mut gets = Vec::new();
    for (k, &size) in opts.sizes.iter().enumerate() {
        on_step(&format!(
            "placing {:.1} MiB at n{HOLDER}",
            size as f64 / MIB
        ));
        let data: Vec<u8> = (0..size)
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8 ^ k as u8)
            .collect();
        let split = crate::content::split(&data)?;
        place_all(&clients[HOLDER], &split.blocks).await?;
        on_step("fetching it from n0");
        let t = Instant::now();
        let got =
            crate::client::transfer::get_file(&clients[0], &split.uri, opts.concurrency).await?;
        let seconds = t.elapsed().as_secs_f64();
        if got != data {
            return Err(BenchError::Differs);
        }
        gets.push(ChainGet {
            bytes: size,
            seconds,
            mib_per_s: size as f64 / MIB / seconds,
            of_limit: 0.0,
        });
    }
    let relayed = match opts.relay_total {
        0 => None,
        total => Some(relay(&clients, opts, total, on_step).await?),
    };
    let mut rss = Vec::with_capacity(CHAIN_NODES);
    for (i, (child, client)) in procs.0.iter().zip(&clients).enumerate() {
        let (now, peak) = crate::node::rss_of(&child.id().to_string());
        let mut c = Client::connect(client, Duration::from_secs(10)).await?;
        rss.push(NodeRss {
            name: format!("n{i}"),
            rss_mib: now as f64 / MIB,
            peak_mib: peak as f64 / MIB,
            runtime_threads: c.status().await?.load.worker_threads,
        });
    }
    drop(procs);
    on_step("measuring SHA-256 and ChaCha20-Poly1305");
    let sha = sha256_throughput();
    let chacha = chacha_throughput();
    let stream = super::inproc::stream_throughput();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let passes = PathPasses::of(opts.anonymity);
    let limit = passes.limit(cores, chacha, stream, sha);
    for g in &mut gets {
        g.of_limit = g.mib_per_s / limit;
    }
    let best = best_of(&gets);
    on_step("measuring a bare relay chain on this machine");
    let floor_samples = opts.latency_samples.max(20);
    let floor_blocks = (opts.sizes.iter().copied().max().unwrap_or(0) / BLOCK_LEN).max(256);
    let floor =
        tokio::task::spawn_blocking(move || super::floor::measure(floor_samples, floor_blocks))
            .await??;
    let relayed = relayed.map(|(bytes, files, seconds)| {
        let bound_mib = DEFAULT_MEMORY as f64 / MIB;
        let highest_peak_mib = rss.iter().map(|r| r.peak_mib).fold(0.0, f64::max);
        Relayed {
            bytes,
            files,
            seconds,
            mib_per_s: bytes as f64 / MIB / seconds,
            bound_mib,
            highest_peak_mib,
            met: highest_peak_mib <= bound_mib,
        }
    });
    Ok(ChainReport {
        anonymity: opts.anonymity.to_string(),
        link_delay_ms: opts.link_delay_ms,
        audit_log: opts.audit_log,
        node_threads: opts.node_threads,
        latency,
        gets,
        relayed,
        rss,
        sha256_mib_per_s: sha,
        chacha_mib_per_s: chacha,
        chacha20_mib_per_s: stream,
        cores,
        passes,
        limit_mib_per_s: limit,
        fraction: best / limit,
        floor_fraction: floor.mib_per_s / limit,
        floor,
        hop_crypto_ms: hop_crypto_ms(sha, chacha),
    })
}

/// Median get time (ms) of a fresh block placed `d` hops from n0, for d =
/// 1..=HOLDER: each block is new, so no cache on the way answers, and one
/// client connection serves every get.
async fn hop_latency(clients: &[Endpoint], samples: usize) -> Result<Vec<f64>, BenchError> {
    let run: u64 = rand::random();
    let mut requester = Client::connect(&clients[0], Duration::from_secs(10)).await?;
    let mut medians = Vec::new();
    for (d, holder) in clients.iter().enumerate().take(HOLDER + 1).skip(1) {
        let mut holder = Client::connect(holder, Duration::from_secs(10)).await?;
        let mut times = Vec::with_capacity(samples);
        for s in 0..samples {
            let (chk, block) = Chk::encode(format!("latency {run} {d} {s}").as_bytes())?;
            holder.place(block).await?;
            let t = Instant::now();
            requester.get(chk.routing).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        medians.push(median(times));
    }
    Ok(medians)
}

/// Median round trip (ms) of a 64-byte message between two TCP sockets on
/// loopback (no delay), over `rounds` round trips after a warm-up.
async fn loopback_rtt(rounds: usize) -> std::io::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let result = async {
        let mut c = tokio::net::TcpStream::connect(addr).await?;
        c.set_nodelay(true)?;
        let mut buf = [0x5au8; 64];
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds + 50 {
            let t = Instant::now();
            c.write_all(&buf).await?;
            c.read_exact(&mut buf).await?;
            if i >= 50 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(median(times))
    }
    .await;
    echo.abort();
    result
}

/// The memory run: `total` bytes through the chain, a fresh
/// [`RELAY_FILE`] file at a time placed at the holder and fetched from n0.
/// Returns the bytes, the files and the seconds spent fetching.
async fn relay(
    clients: &[Endpoint],
    opts: &ChainOptions,
    total: u64,
    on_step: &impl Fn(&str),
) -> Result<(u64, usize, f64), BenchError> {
    let run: u8 = rand::random();
    let mut passed = 0u64;
    let mut files = 0usize;
    let mut seconds = 0.0;
    while passed < total {
        let size = RELAY_FILE.min((total - passed) as usize);
        on_step(&format!(
            "relay run: {:.0} of {:.0} MiB through the chain",
            passed as f64 / MIB,
            total as f64 / MIB
        ));
        let salt = (files as u8) ^ run;
        let data: Vec<u8> = (0..size)
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8 ^ salt ^ (files >> 8) as u8)
            .collect();
        let split = crate::content::split(&data)?;
        place_all(&clients[HOLDER], &split.blocks).await?;
        drop(split.blocks);
        let t = Instant::now();
        let got =
            crate::client::transfer::get_file(&clients[0], &split.uri, opts.concurrency).await?;
        seconds += t.elapsed().as_secs_f64();
        if got != data {
            return Err(BenchError::Differs);
        }
        passed += size as u64;
        files += 1;
    }
    Ok((passed, files, seconds))
}

/// Connections a placing keeps busy: each place waits for its block to be
/// durable, so many at once share the store's group commits.
const PLACERS: usize = 16;

/// Place every block at the node at `holder`, over [`PLACERS`] connections.
async fn place_all(holder: &Endpoint, blocks: &[crate::keys::Block]) -> Result<(), BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PLACERS.min(blocks.len()) {
        // Clones share the blocks' bytes.
        let mine: Vec<_> = blocks.iter().skip(i).step_by(PLACERS).cloned().collect();
        let holder = holder.clone();
        tasks.spawn(async move {
            let mut c = Client::connect(&holder, Duration::from_secs(10)).await?;
            for block in mine {
                c.place(block).await?;
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
