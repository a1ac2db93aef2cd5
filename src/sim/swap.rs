//! Location swapping at simulator scale (`veil sim --experiment swap`):
//! the swap protocol's messages run on a [`SwapNet`] (every node's
//! [`Swapper`](crate::routing::swap::Swapper) beside its router, the real
//! node's state machine, on the engine's latencies), and lookups by the
//! same router ([`runner::run_on_graph`]) measured on the locations it has
//! reached after every few rounds.
//!
//! One round is [`SwapConfig::interval_ms`] of virtual time: each node
//! starts about one attempt in it, on a random walk of
//! [`SwapConfig::walk_htl`] hops; busy partners, refusals and timeouts are
//! the protocol's own.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::routing::embed::Embedding;
use crate::routing::swap::SwapConfig;
use crate::routing::Time;
use crate::sim::churn::Churn;
pub use crate::sim::embed_net::EmbedNet;
use crate::sim::engine::Latency;
use crate::sim::experiments::{self, ExperimentOptions, ExperimentResult};
use crate::sim::graphs;
use crate::sim::model::Graph;
use crate::sim::model::NodeIx;
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::{self, SimError, SimOptions, SimReport};
pub use crate::sim::swap_net::{SwapNet, SwapTally};

/// Node counts of the `swap` experiment.
pub const SWAP_NODES: &[usize] = &[1_000, 10_000, 64_000];
/// Rounds after which the experiment measures routing.
pub const SWAP_CHECKPOINTS: &[usize] = &[0, 1, 2, 5, 10, 20, 50, 100, 200, 500];
/// At 64,000 nodes, the rounds run in the time (see `docs/sim.md`).
pub const SWAP_CHECKPOINTS_LARGE: &[usize] = &[0, 1, 2, 5, 10, 20, 50, 100];

/// A swap net on `graph` with the real node's default [`SwapConfig`].
pub fn net(graph: &Graph, seed: u64) -> SwapNet {
    SwapNet::new(graph, &SwapConfig::default(), Latency::default(), seed)
}

/// Virtual time of `rounds` rounds.
pub fn rounds_time(rounds: usize) -> Time {
    SwapConfig::default().interval_ms * rounds as Time
}

/// Mean circular distance across the graph's links (what swapping lowers).
pub fn mean_link_length(graph: &Graph) -> f64 {
    let (mut sum, mut links) = (0.0, 0u64);
    for (a, adj) in graph.adj.iter().enumerate() {
        for &b in adj {
            let d = (graph.location[a] - graph.location[b as usize]).abs();
            sum += d.min(1.0 - d);
            links += 1;
        }
    }
    sum / links.max(1) as f64
}

/// One measurement of the `swap` experiment.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SwapPoint {
    pub nodes: usize,
    /// Rounds of swapping done so far (`None`: the ideal, ordered locations).
    pub rounds: Option<usize>,
    /// Swap attempts started (with the tree embedding: its messages).
    pub attempts: u64,
    pub swaps: u64,
    /// Attempts rejected or cut by a lost link, and steps timed out.
    pub failed: u64,
    pub timed_out: u64,
    pub mean_link_length: f64,
    pub report: SimReport,
}

/// Swap on a swap-start graph of `opts.nodes` nodes, measuring routing
/// with `opts` (its `seed` draws the graph, the swaps and the lookups) at
/// each of `checkpoints` (ascending round counts). The last point is the
/// same graph with its ideal ordered locations, `i / N`.
pub fn converge(opts: &SimOptions, checkpoints: &[usize]) -> Result<Vec<SwapPoint>, SimError> {
    converge_with(opts, checkpoints, Embedding::Swap)
}

/// [`converge`] with the locations found by `embedding`: swapping, or the
/// tree embedding's messages run for the same virtual time.
pub fn converge_with(
    opts: &SimOptions,
    checkpoints: &[usize],
    embedding: Embedding,
) -> Result<Vec<SwapPoint>, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut graph = graphs::swap_start(opts.nodes, opts.degree, &mut rng);
    if embedding == Embedding::Tree {
        return converge_tree(opts, checkpoints, graph);
    }
    let mut net = net(&graph, opts.seed ^ 0x5357_4150);
    let measure = |graph: &Graph, rounds, count| measure(opts, graph, rounds, count);
    let mut points = Vec::new();
    for &target in checkpoints {
        net.run_until(rounds_time(target));
        net.permute(&mut graph);
        points.push(measure(&graph, Some(target), net.tally())?);
    }
    let n = graph.nodes();
    graph.location = (0..n).map(|i| i as f64 / n as f64).collect();
    points.push(measure(&graph, None, SwapTally::default())?);
    Ok(points)
}

/// Routing measured on `graph` after `rounds` (`None`: ordered locations).
fn measure(
    opts: &SimOptions,
    graph: &Graph,
    rounds: Option<usize>,
    count: SwapTally,
) -> Result<SwapPoint, SimError> {
    let report = runner::run_on_graph(opts, graph, opts.seed ^ 0x5757)?;
    Ok(SwapPoint {
        nodes: graph.nodes(),
        rounds,
        attempts: count.attempts,
        swaps: count.swaps,
        failed: count.failed,
        timed_out: count.timed_out,
        mean_link_length: mean_link_length(graph),
        report,
    })
}

/// With churn, departures and returns are applied at this granularity of
/// virtual time while the tree forms.
const CHURN_STEP_MS: Time = 1_000;

fn converge_tree(
    opts: &SimOptions,
    checkpoints: &[usize],
    mut graph: Graph,
) -> Result<Vec<SwapPoint>, SimError> {
    let config = crate::routing::embed::EmbedConfig::default();
    let mut net = EmbedNet::new(&graph, &config, Latency::default(), opts.seed ^ 0x7472_6565);
    // Churn while the tree forms: nodes leave and come back on the
    // simulator's session model, on the embedding's clock.
    let mut churn = opts
        .churn
        .is_on()
        .then(|| Churn::new(opts.churn, 0..graph.nodes() as NodeIx, opts.seed ^ 0xe3b));
    let mut points = Vec::new();
    // The tree's messages stand where swapping's attempts do.
    let mut measure = |graph: &Graph, rounds, messages| {
        let count = SwapTally {
            attempts: messages,
            ..SwapTally::default()
        };
        points.push(measure(opts, graph, rounds, count)?);
        Ok::<_, SimError>(())
    };
    for &target in checkpoints {
        let end = rounds_time(target);
        match churn.as_mut() {
            Some(churn) => {
                while net.now() < end {
                    let step = (net.now() + CHURN_STEP_MS).min(end);
                    while let Some(e) = churn.due(step) {
                        net.set_online(e.node, e.online);
                    }
                    net.run_until(step);
                }
                // The lookups' own churn starts with every node online:
                // the nodes away come back first, on a copy, and get
                // three periods to learn their place, as a returning node
                // does; the run itself goes on from where it was.
                let mut back = net.clone();
                back.all_online();
                back.run_until(end + 3 * config.period_ms);
                back.apply(&mut graph);
            }
            None => {
                net.run_until(end);
                net.apply(&mut graph);
            }
        }
        measure(&graph, Some(target), net.delivered)?;
    }
    let n = graph.nodes();
    graph.location = (0..n).map(|i| i as f64 / n as f64).collect();
    measure(&graph, None, 0)?;
    Ok(points)
}

/// Rounds of a one-size run when `--rounds` is not given.
pub const DEFAULT_ROUNDS: usize = 200;

/// The JSON line of a one-size run (`docs/schemas/sim-swap.schema.json`).
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SwapLine {
    pub version: crate::formats::Version<1>,
    pub nodes: usize,
    pub rounds: usize,
    pub seed: u64,
    pub lookahead: String,
    /// What a hop of the measuring lookups costs (`hop` or `progress`).
    #[serde(default)]
    pub htl_rule: String,
    /// How the locations were found: `swap` or `tree`.
    #[serde(default)]
    pub embedding: String,
    /// Churn: the session time the lookups were spread over (0: none);
    /// nodes also left and came back while the locations formed.
    #[serde(default)]
    pub churn_minutes: f64,
    /// Mean fraction of nodes online when a lookup started.
    #[serde(default)]
    pub online_fraction: f64,
    /// Lookup success after `rounds` rounds.
    pub success: f64,
    /// The same graph on ordered locations.
    pub ideal_success: f64,
    /// Mean hops of found lookups after `rounds` rounds.
    pub hops_mean: f64,
    /// Mean circular length of a link after `rounds` rounds.
    pub link_length: f64,
    pub ideal_link_length: f64,
    /// Swap attempts started (with the tree embedding: its messages).
    pub attempts: u64,
    pub swaps: u64,
    pub seconds: f64,
}

/// `veil sim --experiment swap --nodes N --rounds R`: one size, measured
/// at the standard checkpoints up to `R` and at `R`.
fn one_size(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let started = std::time::Instant::now();
    let nodes = opts.nodes();
    let rounds = opts.rounds.unwrap_or(DEFAULT_ROUNDS);
    let sim = SimOptions {
        nodes,
        requests: opts.requests(),
        seed: opts.seed,
        topology: "swap".into(),
        lookahead: opts.lookahead,
        htl_rule: opts.htl_rule,
        churn: opts.churn,
        ..SimOptions::default()
    };
    let embedding = opts.embedding;
    if opts.churn.is_on() && embedding == Embedding::Swap {
        return Err(SimError::BadArgs(
            "--churn with --experiment swap runs with the tree embedding only".into(),
        ));
    }
    let mut checkpoints: Vec<usize> = SWAP_CHECKPOINTS
        .iter()
        .copied()
        .filter(|&c| c < rounds)
        .collect();
    checkpoints.push(rounds);
    let bar = experiments::bar(opts, 1, "swap");
    bar.set_message(format!("N = {nodes}, {rounds} rounds"));
    let points = converge_with(&sim, &checkpoints, embedding)?;
    bar.finish_and_clear();
    let last = points.iter().rev().find(|p| p.rounds.is_some());
    let ideal = points.iter().find(|p| p.rounds.is_none());
    let (Some(last), Some(ideal)) = (last, ideal) else {
        return Err(SimError::BadArgs("swap: no measurement".into()));
    };
    let line = SwapLine {
        version: Default::default(),
        nodes,
        rounds,
        seed: opts.seed,
        lookahead: opts.lookahead.to_string(),
        htl_rule: opts.htl_rule.to_string(),
        embedding: embedding.to_string(),
        churn_minutes: opts.churn.minutes,
        online_fraction: last.report.online_fraction,
        success: last.report.success_rate,
        ideal_success: ideal.report.success_rate,
        hops_mean: last.report.hops_mean,
        link_length: last.mean_link_length,
        ideal_link_length: ideal.mean_link_length,
        attempts: last.attempts,
        swaps: last.swaps,
        seconds: started.elapsed().as_secs_f64(),
    };
    let series = |f: &dyn Fn(&SwapPoint) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| p.rounds.map(|r| (r as f64, f(p))))
            .collect()
    };
    let name = format!("N = {nodes}");
    let panels = [
        Panel {
            title: "lookup success under swapping",
            x_label: "rounds of swapping (30 s of swap messages each)",
            y_label: "success (%)",
            log_x: false,
            series: vec![self::line(
                name.clone(),
                series(&|p| 100.0 * p.report.success_rate),
            )],
        },
        Panel {
            title: "mean hops of found lookups",
            x_label: "rounds of swapping",
            y_label: "hops",
            log_x: false,
            series: vec![self::line(name.clone(), series(&|p| p.report.hops_mean))],
        },
        Panel {
            title: "mean link length",
            x_label: "rounds of swapping",
            y_label: "circular distance",
            log_x: false,
            series: vec![self::line(name, series(&|p| p.mean_link_length))],
        },
    ];
    let files = write(&opts.out, &points, &panels)?;
    let mut summary = String::new();
    if !opts.json {
        for p in &points {
            summary.push_str(&format!(
                "  N = {:>7} {}: success {:5.1}%, hops mean {:5.2}, link length {:.4}\n",
                p.nodes,
                p.rounds.map_or_else(
                    || "ordered locations".into(),
                    |r| format!("after {r:>4} rounds")
                ),
                100.0 * p.report.success_rate,
                p.report.hops_mean,
                p.mean_link_length
            ));
        }
    }
    summary.push_str(&serde_json::to_string(&line).unwrap_or_default());
    summary.push('\n');
    Ok(ExperimentResult {
        runs: points.into_iter().map(|p| p.report).collect(),
        files,
        summary,
    })
}

/// `veil sim --experiment swap`: its three sizes, or one size when given
/// `--nodes` or `--rounds`.
pub fn experiment(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    if opts.nodes.is_some() || opts.rounds.is_some() {
        return one_size(opts);
    }
    let bar = experiments::bar(opts, SWAP_NODES.len(), "swap");
    let mut all = Vec::new();
    let (mut success, mut hops, mut length) = (Vec::new(), Vec::new(), Vec::new());
    for &n in SWAP_NODES {
        bar.set_message(format!("N = {n}"));
        let sim = SimOptions {
            nodes: n,
            requests: opts.requests(),
            seed: opts.seed,
            topology: "swap".into(),
            ..SimOptions::default()
        };
        let checkpoints = if n > 10_000 {
            SWAP_CHECKPOINTS_LARGE
        } else {
            SWAP_CHECKPOINTS
        };
        let points = converge(&sim, checkpoints)?;
        let swapped = points.iter().filter(|p| p.rounds.is_some());
        let series = |f: &dyn Fn(&SwapPoint) -> f64| -> Vec<(f64, f64)> {
            swapped
                .clone()
                .map(|p| (p.rounds.unwrap_or(0) as f64, f(p)))
                .collect()
        };
        let ideal = points.iter().find(|p| p.rounds.is_none());
        let last = *checkpoints.last().unwrap_or(&0) as f64;
        let flat = |y: f64| vec![(0.0, y), (last, y)];
        success.push(line(
            format!("N = {n}"),
            series(&|p| 100.0 * p.report.success_rate),
        ));
        hops.push(line(format!("N = {n}"), series(&|p| p.report.hops_mean)));
        length.push(line(format!("N = {n}"), series(&|p| p.mean_link_length)));
        if let Some(ideal) = ideal {
            let mut dashed = line(
                format!("N = {n}, ordered locations"),
                flat(100.0 * ideal.report.success_rate),
            );
            dashed.dashed = true;
            success.push(dashed);
            let mut dashed = line(format!("N = {n}, ordered"), flat(ideal.report.hops_mean));
            dashed.dashed = true;
            hops.push(dashed);
        }
        all.extend(points);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let panels = [
        Panel {
            title: "lookup success under swapping (dashed: ordered)",
            x_label: "rounds of swapping (30 s of swap messages each)",
            y_label: "success (%)",
            log_x: false,
            series: success,
        },
        Panel {
            title: "mean hops of found lookups",
            x_label: "rounds of swapping",
            y_label: "hops",
            log_x: false,
            series: hops,
        },
        Panel {
            title: "mean link length",
            x_label: "rounds of swapping",
            y_label: "circular distance",
            log_x: false,
            series: length,
        },
    ];
    let files = write(&opts.out, &all, &panels)?;
    let mut summary = String::from("swap (freenet, none, Kleinberg graph, shuffled locations):\n");
    for p in &all {
        let when = match p.rounds {
            Some(r) => format!("after {r:>3} rounds"),
            None => "ordered locations".into(),
        };
        summary.push_str(&format!(
            "  N = {:>6} {when}: success {:5.1}%, hops mean {:5.2}, median {}, \
             link length {:.4}, swaps {}/{} attempts ({} failed, {} steps timed out)\n",
            p.nodes,
            100.0 * p.report.success_rate,
            p.report.hops_mean,
            p.report.hops_median,
            p.mean_link_length,
            p.swaps,
            p.attempts,
            p.failed,
            p.timed_out
        ));
    }
    Ok(ExperimentResult {
        runs: all.into_iter().map(|p| p.report).collect(),
        files,
        summary,
    })
}

fn line(name: String, points: Vec<(f64, f64)>) -> Series {
    Series {
        name,
        points,
        dashed: false,
    }
}

/// `swap.json`, `swap.csv` and `swap.svg` under `out`.
fn write(out: &Path, points: &[SwapPoint], panels: &[Panel<'_>]) -> Result<Vec<PathBuf>, SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let json_path = out.join("swap.json");
    let json = serde_json::to_string_pretty(points).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let csv_path = out.join("swap.csv");
    let mut csv = String::from(
        "nodes,rounds,attempts,swaps,failed,timed_out,mean_link_length,requests,success_rate,hops_mean,\
         hops_median,hops_p95,messages_per_lookup\n",
    );
    for p in points {
        let r = &p.report;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{:.5},{},{:.4},{:.3},{},{},{:.2}\n",
            p.nodes,
            p.rounds
                .map(|r| r.to_string())
                .unwrap_or_else(|| "ordered".into()),
            p.attempts,
            p.swaps,
            p.failed,
            p.timed_out,
            p.mean_link_length,
            r.requests,
            r.success_rate,
            r.hops_mean,
            r.hops_median,
            r.hops_p95,
            r.messages_per_lookup
        ));
    }
    std::fs::write(&csv_path, csv).map_err(|e| io(&csv_path, e))?;
    let svg_path = out.join("swap.svg");
    plot::draw(&svg_path, panels)?;
    Ok(vec![csv_path, json_path, svg_path])
}
