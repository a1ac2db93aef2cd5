//! `veil sim --experiment pitch-black`: location swapping with a fraction
//! of dishonest swappers ([`Attacker`]), with and without the defence
//! (`routing/swap/guard.rs`), measured by lookups as the `swap` experiment
//! measures (`docs/sim.md`).
//!
//! Every run starts from the same shuffled Kleinberg graph as `swap`
//! (same seed, same graph), runs the swap protocol's messages for the
//! given rounds with the attackers in place, and measures routing on the
//! locations reached. `success_without` is the same run with no attackers.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::keys::Location;
use crate::routing::embed::{EmbedConfig, Embedding};
use crate::routing::swap::SwapConfig;
use crate::sim::engine::Latency;
use crate::sim::experiments::{self, ExperimentOptions, ExperimentResult};
use crate::sim::graphs;
use crate::sim::model::NodeIx;
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::{self, SimError, SimOptions};
use crate::sim::swap::{self, EmbedNet, SwapNet};

mod attacker;
pub use attacker::{Attacker, ATTACK_REACH, CLAIMED_NEIGHBOURS};

/// Attacker fractions of the full experiment.
pub const ATTACKER_FRACTIONS: &[f64] = &[0.001, 0.01, 0.05];
/// Nodes of the full experiment when `--nodes` is not given.
pub const DEFAULT_NODES: usize = 1_000;

/// What one run came to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub attacker_nodes: usize,
    pub defence: bool,
    pub success: f64,
    /// Success once the 1% most loaded nodes are gone too.
    pub resilient: f64,
    pub hops_mean: f64,
    /// Honest nodes that hold a location an attacker handed out.
    pub pulled: f64,
    pub link_length: f64,
    /// Swaps honest nodes refused (crowded) and walks they refused (limit).
    pub refused_crowded: u64,
    pub limited: u64,
}

/// One run: `attackers` of `opts.nodes` dishonest, `rounds` rounds, the
/// locations found by `embedding`.
pub fn run_one(
    opts: &SimOptions,
    rounds: usize,
    attackers: usize,
    defence: bool,
    embedding: Embedding,
) -> Result<Outcome, SimError> {
    if embedding == Embedding::Tree {
        return run_tree(opts, rounds, attackers);
    }
    let n = opts.nodes;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut graph = graphs::swap_start(n, opts.degree, &mut rng);
    let config = SwapConfig {
        crowding_check: defence,
        ..SwapConfig::default()
    };
    let mut net = SwapNet::new(&graph, &config, Latency::default(), opts.seed ^ 0x5357_4150);
    let mut pick = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7069_7463);
    let chosen = rand::seq::index::sample(&mut pick, n, attackers.min(n));
    let mut points = Vec::new();
    for node in chosen.iter() {
        let point = Location(pick.gen());
        points.push(point);
        net.add_attacker(node as NodeIx, point, &config);
    }
    net.run_until(swap::rounds_time(rounds));
    let held: Vec<Location> = net.locations().collect();
    let honest = n - chosen.len();
    let is_attacker: std::collections::HashSet<usize> = chosen.iter().collect();
    let pulled = (0..n)
        .filter(|i| !is_attacker.contains(i))
        .filter(|&i| points.iter().any(|p| p.distance(held[i]) <= ATTACK_REACH))
        .count();
    net.permute(&mut graph);
    let report = runner::run_on_graph(opts, &graph, opts.seed ^ 0x5757)?;
    let (mut refused_crowded, mut limited) = (0, 0);
    for s in net.stats() {
        refused_crowded += s.refused_crowded;
        limited += s.limited;
    }
    Ok(Outcome {
        attacker_nodes: chosen.len(),
        defence,
        success: report.success_rate,
        resilient: report.success_after_top1pct_removed,
        hops_mean: report.hops_mean,
        pulled: pulled as f64 / honest.max(1) as f64,
        link_length: swap::mean_link_length(&graph),
        refused_crowded,
        limited,
    })
}

/// One run of the tree embedding with `attackers` dishonest nodes
/// ([`EmbedNet::add_attacker`]: each claims to be the root and pulls its
/// tree onto one point). No defence runs: the tree has none yet.
fn run_tree(opts: &SimOptions, rounds: usize, attackers: usize) -> Result<Outcome, SimError> {
    let n = opts.nodes;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut graph = graphs::swap_start(n, opts.degree, &mut rng);
    let mut net = EmbedNet::new(
        &graph,
        &EmbedConfig::default(),
        Latency::default(),
        opts.seed ^ 0x5357_4150,
    );
    let mut pick = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7069_7463);
    let chosen = rand::seq::index::sample(&mut pick, n, attackers.min(n));
    for node in chosen.iter() {
        net.add_attacker(node as NodeIx, Location(pick.gen()));
    }
    net.run_until(swap::rounds_time(rounds));
    net.apply(&mut graph);
    let points = net.attack_points();
    let is_attacker: std::collections::HashSet<usize> = chosen.iter().collect();
    let held: Vec<Option<Location>> = net.locations().collect();
    let pulled = (0..n)
        .filter(|i| !is_attacker.contains(i))
        .filter(|&i| held[i].is_some_and(|h| points.iter().any(|p| p.distance(h) <= ATTACK_REACH)))
        .count();
    let report = runner::run_on_graph(opts, &graph, opts.seed ^ 0x5757)?;
    Ok(Outcome {
        attacker_nodes: chosen.len(),
        defence: false,
        success: report.success_rate,
        resilient: report.success_after_top1pct_removed,
        hops_mean: report.hops_mean,
        pulled: pulled as f64 / (n - chosen.len()).max(1) as f64,
        link_length: swap::mean_link_length(&graph),
        refused_crowded: 0,
        limited: 0,
    })
}

/// The JSON line of a one-fraction run
/// (`docs/schemas/sim-pitch-black.schema.json`).
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PitchBlackLine {
    pub version: crate::formats::Version<1>,
    pub nodes: usize,
    pub rounds: usize,
    pub seed: u64,
    /// The fraction of nodes asked to attack, and how many did.
    pub attackers: f64,
    pub attacker_nodes: usize,
    /// Whether honest nodes ran the defence (refusing crowded locations;
    /// the tree embedding has none).
    pub defence: bool,
    /// How the nodes found their locations: `swap` or `tree`.
    pub embedding: String,
    /// Lookup success after `rounds` rounds with the attackers.
    pub success: f64,
    /// The same graph and rounds with no attackers.
    pub success_without: f64,
    /// `success / success_without`.
    pub ratio: f64,
    /// Honest nodes holding a location an attacker handed out.
    pub pulled: f64,
    pub hops_mean: f64,
    pub link_length: f64,
    /// Swaps honest nodes refused as crowded, walks refused over the limit.
    pub refused_crowded: u64,
    pub limited: u64,
    pub seconds: f64,
}

/// Blocks a node holds, per key per node of the workload: a bounded
/// store, so that a few nodes holding every key lose most of them (an
/// unbounded simulated store would hide what Pitch Black does).
pub const STORE_PER_KEY_PER_NODE: usize = 32;
/// ... and never fewer than this.
pub const STORE_MIN: usize = 16;

fn sim_options(opts: &ExperimentOptions, nodes: usize) -> SimOptions {
    let keys = opts.requests();
    SimOptions {
        nodes,
        requests: keys,
        store_blocks: Some((STORE_PER_KEY_PER_NODE * keys / nodes.max(1)).max(STORE_MIN)),
        seed: opts.seed,
        topology: "swap".into(),
        lookahead: opts.lookahead,
        htl_rule: opts.htl_rule,
        ..SimOptions::default()
    }
}

fn count(nodes: usize, fraction: f64) -> usize {
    let c = (nodes as f64 * fraction).round() as usize;
    if fraction > 0.0 {
        c.max(1)
    } else {
        0
    }
}

/// `veil sim --experiment pitch-black`: one fraction with `--attackers`
/// (ending with a JSON line), else every one of [`ATTACKER_FRACTIONS`]
/// with and without the defence, and a plot.
pub fn experiment(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let started = std::time::Instant::now();
    let rounds = opts.rounds.unwrap_or(swap::DEFAULT_ROUNDS);
    if let Some(f) = opts.attackers {
        if !(0.0..=1.0).contains(&f) {
            return Err(SimError::BadArgs(format!(
                "--attackers {f}: a fraction of the nodes, in [0, 1]"
            )));
        }
    }
    let nodes = match opts.attackers {
        Some(_) => opts.nodes(),
        None => opts.nodes.unwrap_or(DEFAULT_NODES),
    };
    let sim = sim_options(opts, nodes);
    let fractions: Vec<f64> = match opts.attackers {
        Some(f) => vec![f],
        None => ATTACKER_FRACTIONS.to_vec(),
    };
    let tree = opts.embedding == Embedding::Tree;
    let defences: Vec<bool> = match opts.attackers {
        Some(_) => vec![opts.defence && !tree],
        None if tree => vec![false],
        None => vec![true, false],
    };
    let bar = experiments::bar(opts, 1 + fractions.len() * defences.len(), "pitch-black");
    bar.set_message("no attackers");
    let without = run_one(&sim, rounds, 0, opts.defence, opts.embedding)?;
    bar.inc(1);
    let mut rows = Vec::new();
    for &f in &fractions {
        for &d in &defences {
            bar.set_message(format!("{:.1}% attackers, defence {d}", 100.0 * f));
            rows.push((
                f,
                run_one(&sim, rounds, count(nodes, f), d, opts.embedding)?,
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut summary = format!(
        "pitch-black: N = {nodes}, {rounds} rounds, seed {}, embedding {}; no attackers: \
         success {:.1}%, resilient {:.1}%\n",
        opts.seed,
        opts.embedding,
        100.0 * without.success,
        100.0 * without.resilient
    );
    for (f, o) in &rows {
        summary.push_str(&format!(
            "  {:>4.1}% attackers ({:>3} nodes), defence {:<3}: success {:5.1}% ({:5.1}% of \
             without), resilient {:5.1}%, honest nodes pulled {:5.1}%, link length {:.4}, {} swaps refused \
             as crowded, {} walks over the limit\n",
            100.0 * f,
            o.attacker_nodes,
            if o.defence { "on" } else { "off" },
            100.0 * o.success,
            100.0 * o.success / without.success.max(1e-9),
            100.0 * o.resilient,
            100.0 * o.pulled,
            o.link_length,
            o.refused_crowded,
            o.limited
        ));
    }
    let name = match tree {
        true => "pitch-black-tree",
        false => "pitch-black",
    };
    let files = write(&opts.out, name, &without, &rows)?;
    if let (Some(f), Some((_, o))) = (opts.attackers, rows.first()) {
        let line = PitchBlackLine {
            version: Default::default(),
            nodes,
            rounds,
            seed: opts.seed,
            attackers: f,
            attacker_nodes: o.attacker_nodes,
            defence: o.defence,
            embedding: opts.embedding.to_string(),
            success: o.success,
            success_without: without.success,
            ratio: o.success / without.success.max(1e-9),
            pulled: o.pulled,
            hops_mean: o.hops_mean,
            link_length: o.link_length,
            refused_crowded: o.refused_crowded,
            limited: o.limited,
            seconds: started.elapsed().as_secs_f64(),
        };
        if opts.json {
            summary.clear();
        }
        summary.push_str(&serde_json::to_string(&line).unwrap_or_default());
        summary.push('\n');
    }
    Ok(ExperimentResult {
        runs: Vec::new(),
        files,
        summary,
    })
}

/// `NAME.json` and `NAME.svg` under `out`.
fn write(
    out: &Path,
    name: &str,
    without: &Outcome,
    rows: &[(f64, Outcome)],
) -> Result<Vec<PathBuf>, SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let json_path = out.join(format!("{name}.json"));
    let all = serde_json::json!({ "without": without, "runs": rows });
    let json = serde_json::to_string_pretty(&all).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let series = |defence: bool, f: &dyn Fn(&Outcome) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|(_, o)| o.defence == defence)
            .map(|(x, o)| (100.0 * x, f(o)))
            .collect()
    };
    let xs: Vec<f64> = rows.iter().map(|(x, _)| 100.0 * x).collect();
    let flat = |y: f64| {
        let lo = xs.iter().copied().fold(f64::MAX, f64::min);
        let hi = xs.iter().copied().fold(0.0, f64::max);
        vec![(lo, y), (hi, y)]
    };
    let line = |name: &str, points, dashed| Series {
        name: name.into(),
        points,
        dashed,
    };
    let panels = [
        Panel {
            title: "lookup success after swapping (dashed: no attackers)",
            x_label: "attackers (% of nodes)",
            y_label: "success (%)",
            log_x: true,
            series: vec![
                line("defence on", series(true, &|o| 100.0 * o.success), false),
                line("defence off", series(false, &|o| 100.0 * o.success), false),
                line("no attackers", flat(100.0 * without.success), true),
            ],
        },
        Panel {
            title: "honest nodes holding an attacker's location",
            x_label: "attackers (% of nodes)",
            y_label: "honest nodes (%)",
            log_x: true,
            series: vec![
                line("defence on", series(true, &|o| 100.0 * o.pulled), false),
                line("defence off", series(false, &|o| 100.0 * o.pulled), false),
            ],
        },
    ];
    let svg_path = out.join(format!("{name}.svg"));
    plot::draw(&svg_path, &panels)?;
    Ok(vec![json_path, svg_path])
}
