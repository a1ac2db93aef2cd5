//! `veil sim --experiment anonymity`: the audit's combined adversary on
//! simulated runs, in each anonymity mode, against pools of colluders.
//!
//! One Kleinberg small world per mode (the same graph, seed and workload in
//! each), run by an [`AuditedNet`]: every node records what it observes
//! exactly as a real node's audit log would, and the audit
//! ([`crate::audit::MemoryAudit::anonymity`], the scoring behind `veil audit --colluders
//! C`) plays the adversary on those records. The workload is the testnet's
//! in miniature: files of several blocks, each inserted by one node and
//! fetched by others, every originator a different node; a client asks for
//! (or inserts) all of a file's blocks at once and the next file starts a
//! short pause later. See `docs/sim.md`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::index::sample;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audit::AuditOptions;
use crate::keys::{Block, RoutingKey};
use crate::routing::{Anonymity, RouterConfig, Time};
use crate::sim::engine::Latency;
use crate::sim::experiments::{bar, ExperimentOptions, ExperimentResult};
use crate::sim::graphs;
use crate::sim::model::NodeIx;
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::SimError;

mod net;
pub mod predecessor;

pub use net::{AuditedNet, Counts, TunnelLink, TunnelPaths};

/// Events one file's insert or fetch may take before it is cut off (far
/// above what a file needs; a guard, not a limit that binds).
const MAX_EVENTS_PER_STEP: usize = 5_000_000;

/// The experiment's settings.
#[derive(Clone, Debug)]
pub struct AnonymityOptions {
    pub nodes: usize,
    pub degree: usize,
    /// Files inserted, each by a different node.
    pub files: usize,
    /// Blocks per file.
    pub blocks: usize,
    /// Nodes fetching each file (all different, and not its publisher).
    pub fetches: usize,
    /// Colluder pools; `None` is every node its own adversary (`veil audit`
    /// without `--colluders`).
    pub colluders: Vec<Option<usize>>,
    pub modes: Vec<Anonymity>,
    pub latency: Latency,
    pub seed: u64,
}

impl Default for AnonymityOptions {
    fn default() -> Self {
        AnonymityOptions {
            nodes: 10_000,
            degree: 10,
            files: 1_000,
            blocks: 8,
            fetches: 3,
            colluders: vec![None, Some(1), Some(10), Some(100)],
            modes: vec![Anonymity::None, Anonymity::Freenet, Anonymity::Tunnel],
            latency: Latency::default(),
            seed: 1,
        }
    }
}

/// One (mode, colluders) row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AnonymityRow {
    pub mode: String,
    pub nodes: usize,
    /// `None`: every node its own adversary.
    pub colluders: Option<usize>,
    /// What the run did (the same for every row of a mode).
    pub run: Counts,
    /// Observations the adversary scored, and of them sent by their
    /// originator.
    pub observations: usize,
    pub positives: usize,
    pub auc: Option<f64>,
    pub auc_ci: Option<[f64; 2]>,
    /// The worst counted bin: its signal and bin, P, upper bound, support.
    pub worst_signal: Option<String>,
    pub worst_p: Option<f64>,
    pub worst_upper: Option<f64>,
    pub worst_support: Option<usize>,
    pub d_median: Option<f64>,
    /// Requests the adversary observed at all, and those it named with
    /// posterior >= 0.99.
    pub requests_observed: usize,
    pub requests_exposed: usize,
    pub verdict: String,
    /// Wall time of the mode's run and audits, seconds.
    pub wall_seconds: f64,
}

/// File `f`'s blocks.
fn file_blocks(f: usize, blocks: usize) -> Vec<Block> {
    (0..blocks)
        .map(|b| {
            let mut content = [0u8; 16];
            content[..8].copy_from_slice(&(f as u64).to_be_bytes());
            content[8..].copy_from_slice(&(b as u64).to_be_bytes());
            Block::stand_in(&content)
        })
        .collect()
}

/// Run the workload in one mode; the recorded net and the files' keys.
pub fn run_mode(
    opts: &AnonymityOptions,
    mode: Anonymity,
) -> Result<(AuditedNet, Vec<Vec<RoutingKey>>), SimError> {
    let per_file = 1 + opts.fetches;
    let originators = opts.files * per_file;
    if opts.nodes < 2 || originators > opts.nodes || opts.blocks == 0 {
        return Err(SimError::BadArgs(format!(
            "anonymity: {} files x (1 + {} fetches) need that many distinct nodes of {}, \
             and each file at least one block",
            opts.files, opts.fetches, opts.nodes
        )));
    }
    // The same graph and workload in every mode.
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let graph = graphs::kleinberg(opts.nodes, opts.degree, &mut rng);
    let who: Vec<usize> = sample(&mut rng, opts.nodes, originators).into_vec();
    let mut fetches: Vec<(usize, usize)> = (0..opts.files)
        .flat_map(|f| (1..per_file).map(move |k| (f, k)))
        .collect();
    fetches.shuffle(&mut rng);
    let pause = |rng: &mut ChaCha8Rng| -> Time { rng.gen_range(1_000..5_000) };

    let config = RouterConfig::default();
    let mut net = AuditedNet::new(&graph, config, mode, opts.latency, opts.seed);
    let files: Vec<Vec<Block>> = (0..opts.files)
        .map(|f| file_blocks(f, opts.blocks))
        .collect();
    for (f, blocks) in files.iter().enumerate() {
        let publisher = who[f * per_file] as NodeIx;
        for b in blocks {
            net.put(publisher, b.clone());
        }
        net.settle(MAX_EVENTS_PER_STEP);
        net.idle(pause(&mut rng), MAX_EVENTS_PER_STEP);
    }
    for (f, k) in fetches {
        let fetcher = who[f * per_file + k] as NodeIx;
        for b in &files[f] {
            net.get(fetcher, b.routing_key());
        }
        net.settle(MAX_EVENTS_PER_STEP);
        net.idle(pause(&mut rng), MAX_EVENTS_PER_STEP);
    }
    let keys = files
        .iter()
        .map(|bs| bs.iter().map(Block::routing_key).collect())
        .collect();
    Ok((net, keys))
}

/// The audit of one recorded run against each colluder pool.
pub fn audit_rows(
    opts: &AnonymityOptions,
    mode: Anonymity,
    net: &AuditedNet,
    keys: &[Vec<RoutingKey>],
) -> Vec<AnonymityRow> {
    let max_htl = Some(RouterConfig::default().max_htl);
    opts.colluders
        .iter()
        .map(|&c| {
            let options = AuditOptions {
                colluders: c,
                seed: opts.seed,
                ..AuditOptions::default()
            };
            let a = net.audit.anonymity(keys, max_htl, &options);
            let worst = a.max_posterior.as_ref();
            AnonymityRow {
                mode: mode.to_string(),
                nodes: opts.nodes,
                colluders: c,
                run: net.counts,
                observations: a.observations,
                positives: a.positives,
                auc: a.auc,
                auc_ci: a.auc_ci,
                worst_signal: worst.map(|w| format!("{} = {}", w.signal, w.bin)),
                worst_p: worst.map(|w| w.p),
                worst_upper: worst.map(|w| w.upper),
                worst_support: worst.map(|w| w.support),
                d_median: a.d_median,
                requests_observed: a.entropy.requests_observed,
                requests_exposed: a.entropy.requests_exposed,
                verdict: a.verdict,
                wall_seconds: 0.0,
            }
        })
        .collect()
}

/// Every mode's run and audits.
pub fn rows(
    opts: &AnonymityOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<AnonymityRow>, SimError> {
    let mut out = Vec::new();
    for &mode in &opts.modes {
        progress.set_message(mode.to_string());
        let started = Instant::now();
        let (net, keys) = run_mode(opts, mode)?;
        let mut rows = audit_rows(opts, mode, &net, &keys);
        let wall = started.elapsed().as_secs_f64();
        for r in &mut rows {
            r.wall_seconds = wall;
        }
        out.extend(rows);
        progress.inc(1);
    }
    Ok(out)
}

fn pool_label(c: Option<usize>) -> String {
    c.map_or_else(|| "each".to_string(), |c| c.to_string())
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v:.4}"))
}

fn csv(rows: &[AnonymityRow]) -> String {
    let mut out = String::from(
        "mode,nodes,colluders,requests,found,failed,messages,observations,positives,auc,\
         auc_lo,auc_hi,worst_bin,worst_p,worst_upper,worst_support,d_median,\
         requests_observed,requests_exposed,verdict\n",
    );
    for r in rows {
        let ci = |i: usize| opt(r.auc_ci.map(|c| c[i]));
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},\"{}\",{},{},{},{},{},{},{}\n",
            r.mode,
            r.nodes,
            pool_label(r.colluders),
            r.run.requests,
            r.run.found,
            r.run.failed,
            r.run.messages,
            r.observations,
            r.positives,
            opt(r.auc),
            ci(0),
            ci(1),
            r.worst_signal.as_deref().unwrap_or(""),
            opt(r.worst_p),
            opt(r.worst_upper),
            r.worst_support.map_or_else(String::new, |s| s.to_string()),
            opt(r.d_median),
            r.requests_observed,
            r.requests_exposed,
            r.verdict,
        ));
    }
    out
}

/// One line per mode of a figure against the pool size (pools of one or
/// more colluders only; x on a log scale).
fn series(rows: &[AnonymityRow], figure: impl Fn(&AnonymityRow) -> Option<f64>) -> Vec<Series> {
    let mut modes: Vec<&str> = Vec::new();
    for r in rows {
        if !modes.contains(&r.mode.as_str()) {
            modes.push(&r.mode);
        }
    }
    modes
        .into_iter()
        .map(|m| Series {
            name: m.to_string(),
            points: rows
                .iter()
                .filter(|r| r.mode == m)
                .filter_map(|r| Some((r.colluders? as f64, figure(r)?)))
                .collect(),
            dashed: false,
        })
        .collect()
}

/// A horizontal reference line across the pools measured.
fn limit(rows: &[AnonymityRow], name: &str, y: f64) -> Series {
    let xs: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.colluders)
        .map(|c| c as f64)
        .collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    Series {
        name: name.to_string(),
        points: if lo <= hi {
            vec![(lo, y), (hi, y)]
        } else {
            Vec::new()
        },
        dashed: true,
    }
}

/// Write `anonymity.{json,csv,svg}` under `out`.
pub fn write(out: &Path, rows: &[AnonymityRow]) -> Result<Vec<PathBuf>, SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let json_path = out.join("anonymity.json");
    let json = serde_json::to_string_pretty(rows).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let csv_path = out.join("anonymity.csv");
    std::fs::write(&csv_path, csv(rows)).map_err(|e| io(&csv_path, e))?;
    let limits = AuditOptions::default();
    let mut auc = series(rows, |r| r.auc);
    auc.push(limit(rows, "limit", limits.max_auc));
    let mut upper = series(rows, |r| r.worst_upper);
    upper.push(limit(rows, "limit", limits.max_posterior));
    let d = series(rows, |r| r.d_median);
    let panels = [
        Panel {
            title: "combined adversary: AUC",
            x_label: "colluders",
            y_label: "cross-validated AUC",
            log_x: true,
            series: auc,
        },
        Panel {
            title: "worst counted bin",
            x_label: "colluders",
            y_label: "upper bound of P(originator)",
            log_x: true,
            series: upper,
        },
        Panel {
            title: "anonymity degree",
            x_label: "colluders",
            y_label: "median d = H / log2 N",
            log_x: true,
            series: d,
        },
    ];
    let svg_path = out.join("anonymity.svg");
    plot::draw(&svg_path, &panels)?;
    Ok(vec![json_path, csv_path, svg_path])
}

/// The rows as a table for the terminal.
pub fn render(rows: &[AnonymityRow]) -> String {
    let mut out = format!(
        "{:<8} {:>9} {:>12} {:>22} {:>34} {:>8} {:>12}\n",
        "mode",
        "colluders",
        "obs (orig)",
        "AUC [95% CI]",
        "worst bin: upper (n)",
        "med d",
        "verdict"
    );
    for r in rows {
        let auc = match (r.auc, r.auc_ci) {
            (Some(a), Some([lo, hi])) => format!("{a:.3} [{lo:.3}, {hi:.3}]"),
            (Some(a), None) => format!("{a:.3}"),
            _ => "n/a".into(),
        };
        let worst = match (&r.worst_signal, r.worst_upper, r.worst_support) {
            (Some(s), Some(u), Some(n)) => format!("{s}: {u:.3} ({n})"),
            _ => "none counted".into(),
        };
        out.push_str(&format!(
            "{:<8} {:>9} {:>12} {:>22} {:>34} {:>8} {:>12}\n",
            r.mode,
            pool_label(r.colluders),
            format!("{} ({})", r.observations, r.positives),
            auc,
            worst,
            r.d_median
                .map_or_else(|| "n/a".into(), |d| format!("{d:.3}")),
            r.verdict.to_uppercase(),
        ));
    }
    out
}

/// `veil sim --experiment anonymity`.
pub fn experiment(eopts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let defaults = AnonymityOptions::default();
    let opts = AnonymityOptions {
        nodes: eopts.nodes(),
        // --requests counts fetches: a third as many files, fetched 3 times.
        files: eopts
            .requests
            .map_or(defaults.files, |r| (r / defaults.fetches).max(1)),
        seed: eopts.seed,
        ..defaults
    };
    // A bad --out fails now, not after the runs.
    std::fs::create_dir_all(&eopts.out)
        .map_err(|e| SimError::Io(eopts.out.display().to_string(), e))?;
    let progress = bar(eopts, opts.modes.len(), "anonymity");
    let started = Instant::now();
    let rows = rows(&opts, &progress)?;
    progress.finish_and_clear();
    let files = write(&eopts.out, &rows)?;
    let summary = format!(
        "anonymity: {} nodes (Kleinberg, degree {}), {} files x {} blocks, {} fetches each, \
         seed {}, {:.1} s\n{}",
        opts.nodes,
        opts.degree,
        opts.files,
        opts.blocks,
        opts.fetches,
        opts.seed,
        started.elapsed().as_secs_f64(),
        render(&rows)
    );
    Ok(ExperimentResult {
        runs: Vec::new(),
        files,
        summary,
    })
}
