//! `veil bench`: figures measured on this machine, printed, never asserted.
//!
//! - per-hop latency: a 5-node chain of real nodes (in this process, real
//!   TCP on loopback, real Noise links and redb stores); fresh blocks are
//!   placed at distance 1..4 from the requester and fetched, and the
//!   per-hop cost is the slope of median latency over distance;
//! - 16 MiB get throughput across the chain: the file's blocks are placed at
//!   one end and fetched from the other (4 hops each way);
//! - raw ChaCha20-Poly1305 single-core throughput, for comparison.

use std::path::Path;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::Serialize;

use super::{io_err, BenchError};
use crate::client::Client;
use crate::config::{NodeConfig, PeerConfig, SizeSetting, IDENTITY_FILE};
use crate::identity::Identity;
use crate::keys::Chk;
use crate::node::{self, NodeError, NodeSetup, RunningNode};

/// What `veil bench` measured.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BenchReport {
    pub chain_nodes: usize,
    /// Median fetch latency (ms) of a block held `d` hops away, d = 1..4.
    pub latency_by_distance_ms: Vec<f64>,
    /// Least-squares slope of the above: added latency per hop.
    pub per_hop_ms: f64,
    pub samples_per_distance: usize,
    pub get_bytes: usize,
    pub get_seconds: f64,
    pub get_mib_per_s: f64,
    pub chacha_mib_per_s: f64,
}

impl BenchReport {
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{}-node loopback chain (in-process nodes, real TCP + Noise + redb)\n",
            self.chain_nodes
        ));
        for (i, ms) in self.latency_by_distance_ms.iter().enumerate() {
            out.push_str(&format!(
                "  block {} hop(s) away: median {:.3} ms over {} fetches\n",
                i + 1,
                ms,
                self.samples_per_distance
            ));
        }
        out.push_str(&format!(
            "  added latency per hop: {:.3} ms\n",
            self.per_hop_ms
        ));
        out.push_str(&format!(
            "  {} MiB get across the chain: {:.2} s, {:.1} MiB/s\n",
            self.get_bytes / (1024 * 1024),
            self.get_seconds,
            self.get_mib_per_s
        ));
        out.push_str(&format!(
            "raw ChaCha20-Poly1305, one core: {:.1} MiB/s\n",
            self.chacha_mib_per_s
        ));
        out
    }
}

/// Start `n` nodes in a chain under `dir`.
async fn start_chain(dir: &Path, n: usize) -> Result<Vec<RunningNode>, BenchError> {
    let locations: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    let edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    // The chain measures routing per hop: requests travel hop by hop from
    // the requester only in `none` mode (a tunnel's exit would route them).
    let mut template = node_template();
    template.anonymity = crate::routing::Anonymity::None;
    start_network(dir, &locations, &edges, &template).await
}

/// A node config whose addresses, location and peers `start_network` fills in.
pub(crate) fn node_template() -> NodeConfig {
    let unset = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    NodeConfig::new(unset, Some(unset), None)
}

/// Start one in-process node per location under `dir`, linked along
/// `edges`, each configured like `template` (its mode and router settings;
/// addresses, location and peers are filled in), and wait until every link
/// is up.
pub(crate) async fn start_network(
    dir: &Path,
    locations: &[f64],
    edges: &[(usize, usize)],
    template: &NodeConfig,
) -> Result<Vec<RunningNode>, BenchError> {
    let n = locations.len();
    let mut ids = Vec::new();
    for i in 0..n {
        let node_dir = dir.join(format!("n{i}"));
        std::fs::create_dir_all(&node_dir).map_err(io_err(&node_dir))?;
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        identity.save(node_dir.join(IDENTITY_FILE))?;
        ids.push(identity.public());
    }
    let ports = crate::testnet::free_ports(2 * n).map_err(io_err(dir))?;
    let addrs: Vec<_> = ports.chunks(2).map(|p| (p[0], p[1])).collect();
    let mut running = Vec::new();
    for i in 0..n {
        let node_dir = dir.join(format!("n{i}"));
        let mut config = template.clone();
        config.listen = addrs[i].0;
        config.client = Some(addrs[i].1);
        config.location = Some(locations[i]);
        config.testnet = true;
        config.store_size = SizeSetting::Text("128MiB".into());
        config.peers.clear();
        for &(a, b) in edges {
            let j = match (a == i, b == i) {
                (true, false) => b,
                (false, true) => a,
                _ => continue,
            };
            config.peers.push(PeerConfig {
                address: addrs[j].0,
                public_key: ids[j],
                name: Some(format!("n{j}")),
            });
        }
        config.save(&node_dir).map_err(NodeError::from)?;
        match node::start(NodeSetup::load(&node_dir)?).await {
            Ok(node) => running.push(node),
            Err(e) => {
                shutdown_all(running).await;
                return Err(e.into());
            }
        }
    }
    // Wait for every link.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut up = 0;
        for r in &running {
            if let Ok(mut c) = Client::connect(&r.client, Duration::from_secs(2)).await {
                if let Ok(s) = c.status().await {
                    up += s.peers.iter().filter(|p| p.connected).count();
                }
            }
        }
        if up == 2 * edges.len() {
            break;
        }
        if Instant::now() > deadline {
            shutdown_all(running).await;
            return Err(BenchError::ChainNotUp);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(running)
}

/// Stop every node (each flushes its store).
pub(crate) async fn shutdown_all(nodes: Vec<RunningNode>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Least-squares slope of `ys` over distance 1..=ys.len().
pub(super) fn slope(ys: &[f64]) -> f64 {
    let xs: Vec<f64> = (1..=ys.len()).map(|d| d as f64).collect();
    let mx = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let my = ys.iter().sum::<f64>() / ys.len().max(1) as f64;
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Run every benchmark. `samples` fetches per distance; `get_mib` MiB file.
pub async fn run(
    samples: usize,
    get_mib: usize,
    on_step: impl Fn(&str),
) -> Result<BenchReport, BenchError> {
    let n = 5;
    let tmp = tempfile_dir()?;
    let nodes = start_chain(&tmp, n).await?;
    let result = measure(&nodes, samples, get_mib, &on_step).await;
    shutdown_all(nodes).await;
    let _ = std::fs::remove_dir_all(&tmp);
    let (latency_by_distance_ms, per_hop_ms, get_bytes, get_seconds) = result?;
    on_step("measuring raw ChaCha20-Poly1305");
    let chacha_mib_per_s = chacha_throughput();
    Ok(BenchReport {
        chain_nodes: n,
        latency_by_distance_ms,
        per_hop_ms,
        samples_per_distance: samples,
        get_bytes,
        get_seconds,
        get_mib_per_s: get_bytes as f64 / (1024.0 * 1024.0) / get_seconds,
        chacha_mib_per_s,
    })
}

pub(crate) fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    // Unique per call, so two benches in one process never share a directory.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("veil-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(dir)
}

async fn measure(
    nodes: &[RunningNode],
    samples: usize,
    get_mib: usize,
    on_step: &impl Fn(&str),
) -> Result<(Vec<f64>, f64, usize, f64), BenchError> {
    let requester = &nodes[0].client;
    let mut medians = Vec::new();
    for (d, holder) in nodes.iter().enumerate().skip(1) {
        on_step(&format!("latency: blocks {d} hop(s) away"));
        let mut times = Vec::with_capacity(samples);
        for s in 0..samples {
            // A fresh block each time, so no cache on the way can answer.
            let (chk, block) =
                Chk::encode(format!("bench {d} {s} {:?}", Instant::now()).as_bytes())?;
            Client::connect(&holder.client, Duration::from_secs(10))
                .await?
                .place(block)
                .await?;
            let mut c = Client::connect(requester, Duration::from_secs(30)).await?;
            let t = Instant::now();
            c.get(chk.routing).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        medians.push(median(times));
    }
    let slope = slope(&medians);

    on_step(&format!(
        "throughput: placing a {get_mib} MiB file at one end"
    ));
    let data: Vec<u8> = (0..get_mib * 1024 * 1024)
        .map(|i| (i % 251) as u8 ^ (i / 4093) as u8)
        .collect();
    let split = crate::content::split(&data)?;
    let far = nodes.len() - 1;
    {
        let mut c = Client::connect(&nodes[far].client, Duration::from_secs(10)).await?;
        for block in &split.blocks {
            c.place(block.clone()).await?;
        }
    }
    on_step("throughput: fetching it from the other end");
    let t = Instant::now();
    let got = crate::client::transfer::get_file(requester, &split.uri, 8).await?;
    let secs = t.elapsed().as_secs_f64();
    if got != data {
        return Err(BenchError::Differs);
    }
    Ok((medians, slope, data.len(), secs))
}

/// Run `pass` over a 64 KiB buffer, a fresh nonce each time, for about
/// half a second on this thread; MiB/s.
fn per_nonce_throughput(mut pass: impl FnMut(&[u8; 12], &mut [u8])) -> f64 {
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut bytes = 0usize;
    let mut counter = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        counter += 1;
        pass(&nonce, &mut buf);
        std::hint::black_box(&buf);
        bytes += buf.len();
    }
    bytes as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
}

/// The ChaCha20 keystream alone, one core (MiB/s): what a tunnel relay
/// does to each cell it passes.
pub fn stream_throughput() -> f64 {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    per_nonce_throughput(|nonce, buf| {
        let mut cipher = chacha20::ChaCha20::new(&[7u8; 32].into(), nonce.into());
        cipher.apply_keystream(buf);
    })
}

/// ChaCha20-Poly1305 sealing, one core (MiB/s).
pub fn chacha_throughput() -> f64 {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&[7u8; 32]));
    per_nonce_throughput(|nonce, buf| {
        if let Ok(tag) = cipher.encrypt_in_place_detached(Nonce::from_slice(nonce), b"", buf) {
            std::hint::black_box(tag);
        }
    })
}
