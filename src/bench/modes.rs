//! `veil bench`, the cost of anonymity: the same gets in each mode over the
//! same network, printed, never asserted.
//!
//! The network ([`NETWORK_EDGES`]) is 8 in-process nodes: the 5-node chain
//! of the per-hop figure, `n0 - n1 - n2 - n3 - n4`, with the requester at
//! `n0` and every block of the file placed at `n4` (4 hops away), plus a loop
//! of three more nodes through the requester, `n0 - n5 - n6 - n7 - n0`. On
//! the bare chain a tunnel walk could only run down the chain towards the
//! data (its exit would sit nearer the data than the requester, flattering
//! the tunnel); with the loop, a walk of mean length 5 (`p_forward` 0.8)
//! has room to wander, and its exit is 1 to 6 hops from the data. Each mode
//! gets a fresh network (fresh stores, nothing cached) with the same
//! locations, edges and files.

use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::inproc::{node_template, shutdown_all, start_network, tempfile_dir};
use super::BenchError;
use crate::client::Client;
use crate::node::RunningNode;
use crate::routing::{Anonymity, TunnelConfig};

/// The per-mode network's edges (see the module's documentation).
pub const NETWORK_EDGES: [(usize, usize); 8] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 0),
];
/// Its node count; node `i` sits at location `(i + 0.5) / NETWORK_NODES`.
pub const NETWORK_NODES: usize = 8;
const REQUESTER: usize = 0;
const HOLDER: usize = 4;
/// The target: a tunnel-mode get takes at most this many times as
/// long as the same get in `none` mode.
pub const TARGET_RATIO: f64 = 2.0;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ModesOptions {
    pub modes: Vec<Anonymity>,
    /// File sizes in bytes.
    pub sizes: Vec<usize>,
    /// Gets of each size in each mode (each a different file).
    pub repeats: usize,
    /// Blocks in flight, as `veil get --concurrency`.
    pub concurrency: usize,
    /// Tunnel settings of every node (tunnel mode).
    pub tunnel: TunnelConfig,
}

impl Default for ModesOptions {
    fn default() -> Self {
        ModesOptions {
            modes: vec![Anonymity::None, Anonymity::Freenet, Anonymity::Tunnel],
            sizes: vec![1 << 20, 8 << 20],
            repeats: 3,
            concurrency: 128,
            tunnel: TunnelConfig::default(),
        }
    }
}

/// One mode and size: the gets' wall-clock times.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ModeFigure {
    pub mode: String,
    pub size_bytes: usize,
    pub gets: usize,
    /// Median, least and greatest time of one whole get (manifest and data
    /// blocks, verified).
    pub seconds_median: f64,
    pub seconds_min: f64,
    pub seconds_max: f64,
    /// `size_bytes` over the median time.
    pub mib_per_s: f64,
}

/// tunnel / none at one size, against [`TARGET_RATIO`].
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TargetCheck {
    pub size_bytes: usize,
    pub none_seconds: f64,
    pub tunnel_seconds: f64,
    pub ratio: f64,
    pub target: f64,
    pub met: bool,
}

/// Everything the per-mode bench measured.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ModesReport {
    pub nodes: usize,
    pub edges: Vec<(usize, usize)>,
    pub requester: usize,
    pub holder: usize,
    pub concurrency: usize,
    pub tunnel: TunnelConfig,
    /// One object per mode and size.
    pub figures: Vec<ModeFigure>,
    /// At the largest size measured in both `none` and `tunnel`.
    pub tunnel_vs_none: Option<TargetCheck>,
}

fn size_text(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

impl ModesReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "anonymity cost: {} in-process nodes, chain n0-n1-n2-n3-n4 plus loop \
             n0-n5-n6-n7-n0; requester n{}, every block at n{}; {} blocks in flight\n",
            self.nodes, self.requester, self.holder, self.concurrency
        );
        out.push_str(&format!(
            "  {:<8} {:>8} {:>5} {:>10} {:>9} {:>9} {:>9}\n",
            "mode", "size", "gets", "median s", "min s", "max s", "MiB/s"
        ));
        for f in &self.figures {
            out.push_str(&format!(
                "  {:<8} {:>8} {:>5} {:>10.3} {:>9.3} {:>9.3} {:>9.2}\n",
                f.mode,
                size_text(f.size_bytes),
                f.gets,
                f.seconds_median,
                f.seconds_min,
                f.seconds_max,
                f.mib_per_s
            ));
        }
        if let Some(c) = &self.tunnel_vs_none {
            out.push_str(&format!(
                "  tunnel/none for {}: {:.2}x ({:.3} s / {:.3} s), target <= {}x: {}\n",
                size_text(c.size_bytes),
                c.ratio,
                c.tunnel_seconds,
                c.none_seconds,
                c.target,
                if c.met { "MET" } else { "MISSED" }
            ));
        }
        out
    }
}

/// The file of `size` bytes for the `repeat`-th get: random bytes (so no two
/// blocks coincide), the same in every mode.
fn bench_file(size: usize, repeat: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(((size as u64) << 16) ^ repeat as u64);
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    data
}

fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    match (v.first(), v.last()) {
        (Some(&lo), Some(&hi)) => (v[v.len() / 2], lo, hi),
        _ => (0.0, 0.0, 0.0),
    }
}

/// Measure every mode and size of `options`; `on_step` hears progress.
pub async fn run(
    options: &ModesOptions,
    on_step: impl Fn(&str),
) -> Result<ModesReport, BenchError> {
    let locations: Vec<f64> = (0..NETWORK_NODES)
        .map(|i| (i as f64 + 0.5) / NETWORK_NODES as f64)
        .collect();
    let repeats = options.repeats.max(1);
    let mut figures = Vec::new();
    for &mode in &options.modes {
        on_step(&format!("{mode}: starting {NETWORK_NODES} nodes"));
        let dir = tempfile_dir()?;
        let mut template = node_template();
        template.anonymity = mode;
        template.router.tunnel = options.tunnel.clone();
        let nodes = start_network(&dir, &locations, &NETWORK_EDGES, &template).await;
        let result = match nodes {
            Ok(nodes) => {
                let r = measure_mode(&nodes, options, repeats, mode, &on_step).await;
                shutdown_all(nodes).await;
                r
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        figures.extend(result?);
    }
    let seconds = |mode: Anonymity, size: usize| {
        figures
            .iter()
            .find(|f| f.mode == mode.as_str() && f.size_bytes == size)
            .map(|f| f.seconds_median)
    };
    let tunnel_vs_none = options
        .sizes
        .iter()
        .copied()
        .filter_map(|size| {
            let (none, tunnel) = (
                seconds(Anonymity::None, size)?,
                seconds(Anonymity::Tunnel, size)?,
            );
            Some((size, none, tunnel))
        })
        .max_by_key(|&(size, _, _)| size)
        .map(|(size_bytes, none_seconds, tunnel_seconds)| {
            let ratio = tunnel_seconds / none_seconds.max(1e-9);
            TargetCheck {
                size_bytes,
                none_seconds,
                tunnel_seconds,
                ratio,
                target: TARGET_RATIO,
                met: ratio <= TARGET_RATIO,
            }
        });
    Ok(ModesReport {
        nodes: NETWORK_NODES,
        edges: NETWORK_EDGES.to_vec(),
        requester: REQUESTER,
        holder: HOLDER,
        concurrency: options.concurrency,
        tunnel: options.tunnel.clone(),
        figures,
        tunnel_vs_none,
    })
}

async fn measure_mode(
    nodes: &[RunningNode],
    options: &ModesOptions,
    repeats: usize,
    mode: Anonymity,
    on_step: &impl Fn(&str),
) -> Result<Vec<ModeFigure>, BenchError> {
    let mut figures = Vec::new();
    for &size in &options.sizes {
        let mut times = Vec::with_capacity(repeats);
        for repeat in 0..repeats {
            let data = bench_file(size, repeat);
            let split = crate::content::split(&data)?;
            {
                let timeout = std::time::Duration::from_secs(10);
                let mut c = Client::connect(&nodes[HOLDER].client, timeout).await?;
                for block in &split.blocks {
                    c.place(block.clone()).await?;
                }
            }
            let requester = &nodes[REQUESTER].client;
            let t = Instant::now();
            let got = crate::client::transfer::get_file(requester, &split.uri, options.concurrency)
                .await?;
            let secs = t.elapsed().as_secs_f64();
            if got != data {
                return Err(BenchError::Differs);
            }
            on_step(&format!(
                "{mode}: {} get {}/{repeats}: {secs:.3} s",
                size_text(size),
                repeat + 1
            ));
            times.push(secs);
        }
        let (median, min, max) = median_min_max(times);
        figures.push(ModeFigure {
            mode: mode.as_str().to_string(),
            size_bytes: size,
            gets: repeats,
            seconds_median: median,
            seconds_min: min,
            seconds_max: max,
            mib_per_s: size as f64 / (1024.0 * 1024.0) / median.max(1e-9),
        });
    }
    Ok(figures)
}
