//! Location swapping at simulator scale (`veil sim --experiment swap`): the
//! core's swap rule ([`routing::swap`](crate::routing::swap)) applied to a
//! [`Graph`] whose `location` vector it rewrites, and lookups by the same
//! router ([`runner::run_on_graph`]) measured after every few rounds.
//!
//! Partners: an attempt starts at a uniformly random node A and takes a
//! random walk of [`SWAP_WALK`] hops over the friend graph (each step to a
//! uniformly random neighbour); the node where it ends is B. Freenet sends
//! its swap requests on a random walk too, so a node only ever swaps with
//! nodes a few friends away. A walk that ends back at A is an attempt that
//! does not happen. One round is N attempts (each node starts one, on
//! average).

use std::path::{Path, PathBuf};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::keys::Location;
use crate::routing::swap::{decide, SwapOffer};
use crate::sim::experiments::{self, ExperimentOptions, ExperimentResult};
use crate::sim::graphs;
use crate::sim::model::{Graph, NodeIx};
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::{self, SimError, SimOptions, SimReport};

/// Hops of the random walk that finds a swap partner.
pub const SWAP_WALK: usize = 10;
/// Node counts of the `swap` experiment.
pub const SWAP_NODES: &[usize] = &[1_000, 10_000, 64_000];
/// Rounds after which the experiment measures routing.
pub const SWAP_CHECKPOINTS: &[usize] = &[0, 1, 2, 5, 10, 20, 50, 100, 200, 500];

/// What some attempts came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwapCount {
    pub attempts: u64,
    pub swaps: u64,
}

/// The end of a `len`-hop random walk from `start` (each hop to a
/// uniformly random neighbour; a node without neighbours stops it).
pub fn random_walk(graph: &Graph, start: NodeIx, len: usize, rng: &mut dyn RngCore) -> NodeIx {
    let mut at = start;
    for _ in 0..len {
        let adj = &graph.adj[at as usize];
        if adj.is_empty() {
            break;
        }
        at = adj[rng.gen_range(0..adj.len())];
    }
    at
}

/// What `me` shows `partner`: its location and its neighbours' locations,
/// the partner left out (its link cancels, see the core's docs).
fn offer(graph: &Graph, me: NodeIx, partner: NodeIx) -> SwapOffer {
    let neighbours: Vec<Location> = graph.adj[me as usize]
        .iter()
        .filter(|&&f| f != partner)
        .map(|&f| Location::from_f64(graph.location[f as usize]))
        .collect();
    SwapOffer::own(Location::from_f64(graph.location[me as usize]), neighbours)
}

/// One attempt between `a` and `b` by the core's rule; swaps their
/// locations in `graph` if they agree. Returns whether they swapped.
pub fn attempt(graph: &mut Graph, a: NodeIx, b: NodeIx, rng: &mut dyn RngCore) -> bool {
    if a == b {
        return false;
    }
    let swapped = decide(&offer(graph, a, b), &offer(graph, b, a), rng);
    if swapped {
        graph.location.swap(a as usize, b as usize);
    }
    swapped
}

/// One round: `graph.nodes()` attempts, each from a uniformly random node
/// to the end of its [`SWAP_WALK`]-hop random walk.
pub fn round(graph: &mut Graph, rng: &mut dyn RngCore) -> SwapCount {
    let n = graph.nodes();
    let mut count = SwapCount::default();
    if n < 2 {
        return count;
    }
    for _ in 0..n {
        let a = rng.gen_range(0..n) as NodeIx;
        let b = random_walk(graph, a, SWAP_WALK, rng);
        if a == b {
            continue;
        }
        count.attempts += 1;
        count.swaps += u64::from(attempt(graph, a, b, rng));
    }
    count
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
    pub attempts: u64,
    pub swaps: u64,
    pub mean_link_length: f64,
    pub report: SimReport,
}

/// Swap on a swap-start graph of `opts.nodes` nodes, measuring routing
/// with `opts` (its `seed` draws the graph, the swaps and the lookups) at
/// each of `checkpoints` (ascending round counts). The last point is the
/// same graph with its ideal ordered locations, `i / N`.
pub fn converge(opts: &SimOptions, checkpoints: &[usize]) -> Result<Vec<SwapPoint>, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut graph = graphs::swap_start(opts.nodes, opts.degree, &mut rng);
    let measure = |graph: &Graph, rounds: Option<usize>, count: SwapCount| {
        let report = runner::run_on_graph(opts, graph, opts.seed ^ 0x5757)?;
        Ok::<_, SimError>(SwapPoint {
            nodes: graph.nodes(),
            rounds,
            attempts: count.attempts,
            swaps: count.swaps,
            mean_link_length: mean_link_length(graph),
            report,
        })
    };
    let (mut points, mut done, mut count) = (Vec::new(), 0, SwapCount::default());
    for &target in checkpoints {
        while done < target {
            let c = round(&mut graph, &mut rng);
            count.attempts += c.attempts;
            count.swaps += c.swaps;
            done += 1;
        }
        points.push(measure(&graph, Some(done), count)?);
    }
    let n = graph.nodes();
    graph.location = (0..n).map(|i| i as f64 / n as f64).collect();
    points.push(measure(&graph, None, SwapCount::default())?);
    Ok(points)
}

/// `veil sim --experiment swap`.
pub fn experiment(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
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
        let points = converge(&sim, SWAP_CHECKPOINTS)?;
        let swapped = points.iter().filter(|p| p.rounds.is_some());
        let series = |f: &dyn Fn(&SwapPoint) -> f64| -> Vec<(f64, f64)> {
            swapped
                .clone()
                .map(|p| (p.rounds.unwrap_or(0) as f64, f(p)))
                .collect()
        };
        let ideal = points.iter().find(|p| p.rounds.is_none());
        let last = *SWAP_CHECKPOINTS.last().unwrap_or(&0) as f64;
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
            x_label: "rounds of swapping (N attempts each)",
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
    let mut summary = opts.ignored_nodes("swap");
    summary.push_str("swap (freenet, none, Kleinberg graph, shuffled locations):\n");
    for p in &all {
        let when = match p.rounds {
            Some(r) => format!("after {r:>3} rounds"),
            None => "ordered locations".into(),
        };
        summary.push_str(&format!(
            "  N = {:>6} {when}: success {:5.1}%, hops mean {:5.2}, median {}, \
             link length {:.4}, swaps {}/{}\n",
            p.nodes,
            100.0 * p.report.success_rate,
            p.report.hops_mean,
            p.report.hops_median,
            p.mean_link_length,
            p.swaps,
            p.attempts
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
        "nodes,rounds,attempts,swaps,mean_link_length,requests,success_rate,hops_mean,\
         hops_median,hops_p95,messages_per_lookup\n",
    );
    for p in points {
        let r = &p.report;
        csv.push_str(&format!(
            "{},{},{},{},{:.5},{},{:.4},{:.3},{},{},{:.2}\n",
            p.nodes,
            p.rounds
                .map(|r| r.to_string())
                .unwrap_or_else(|| "ordered".into()),
            p.attempts,
            p.swaps,
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
