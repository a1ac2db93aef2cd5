//! `veil sim --system ...`: build a graph and a system, run the workload,
//! report. The workload places `requests` keys, each inserted from a
//! uniformly random node, optionally removes a fraction of the nodes (at
//! random, or the most loaded first: [`FailMode`]), then looks every key up
//! from a uniformly random surviving node that is online, with nodes
//! leaving and rejoining meanwhile if churn is on ([`crate::sim::churn`]).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::index::sample;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::message::Htl;
use crate::routing::{Anonymity, Lookahead, RouterConfig};
use crate::sim::baselines;
use crate::sim::churn::{Churn, ChurnSpec, Members};
use crate::sim::engine::Latency;
use crate::sim::freenet::FreenetModel;
use crate::sim::graphs::{self, Shape};
use crate::sim::model::{Graph, Model, NodeIx};
use crate::sim::topology::{Topology, TopologyError};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown system {0:?} (available: {1})")]
    UnknownSystem(String, String),
    #[error("topology: {0}")]
    Topology(#[from] TopologyError),
    #[error("{0}")]
    BadArgs(String),
    #[error("experiment {0:?} is not implemented yet: {1}")]
    NotYet(String, &'static str),
    #[error(
        "unknown experiment {0:?} (scaling, failure, swap, baselines, anonymity, predecessor)"
    )]
    UnknownExperiment(String),
    #[error("writing {0}: {1}")]
    Io(String, std::io::Error),
    #[error("drawing {0}: {1}")]
    Plot(String, String),
}

/// Which nodes `--fail F` removes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// `⌊F·N⌋` nodes drawn uniformly.
    #[default]
    Random,
    /// The `⌊F·N⌋` nodes that handled the most messages during a warm-up:
    /// a twin of the system (same seed, same keys placed) answers
    /// [`WARMUP_LOOKUPS`] lookups of the same workload and is dropped, so
    /// the measured run starts from the state random mode starts from.
    Loaded,
}

/// Lookups of the warm-up that measures load for [`FailMode::Loaded`]
/// (fewer when the run has fewer keys).
pub const WARMUP_LOOKUPS: usize = 10_000;

words!(
    FailMode,
    "a fail mode",
    Random = "random",
    Loaded = "loaded"
);

/// One run's settings (`veil sim --system ...`).
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub system: String,
    pub anonymity: Anonymity,
    /// kleinberg, ring, random, swap or a topology file.
    pub topology: String,
    pub nodes: usize,
    pub degree: usize,
    pub htl: Htl,
    /// How veil's searches rank candidates (`--lookahead`).
    pub lookahead: Lookahead,
    /// What a hop costs of the HTL (`--htl-rule`).
    pub htl_rule: crate::routing::HtlRule,
    pub ttl: u32,
    pub requests: usize,
    pub fail: f64,
    pub fail_mode: FailMode,
    /// Nodes leaving and rejoining during the lookups (off by default).
    pub churn: ChurnSpec,
    pub seed: u64,
    pub latency: Latency,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Blocks each node of `freenet` holds at most, the oldest dropped
    /// first (`None`: unbounded).
    pub store_blocks: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            system: "freenet".into(),
            anonymity: Anonymity::None,
            topology: "kleinberg".into(),
            nodes: 1000,
            degree: 10,
            htl: crate::routing::DEFAULT_MAX_HTL,
            lookahead: Lookahead::None,
            htl_rule: crate::routing::HtlRule::Hop,
            ttl: 7,
            requests: 1000,
            fail: 0.0,
            fail_mode: FailMode::Random,
            churn: ChurnSpec::default(),
            seed: 1,
            latency: Latency::default(),
            progress: false,
            store_blocks: None,
        }
    }
}

/// What `veil sim --json` prints: one run's report and the document's
/// version (docs/formats.md). The experiments' JSON files are arrays of
/// bare [`SimReport`]s.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SimOutput {
    pub version: crate::formats::Version<1>,
    #[serde(flatten)]
    pub report: SimReport,
}

/// What a run measured.
#[derive(Clone, Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub struct SimReport {
    pub system: String,
    pub anonymity: Option<String>,
    /// veil's routing rules, `LOOKAHEAD/HTL_RULE` (`none/hop` is the
    /// lecture's); absent for the other systems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    pub topology: String,
    pub nodes: usize,
    pub degree: usize,
    pub requests: usize,
    pub fail: f64,
    /// `random` or `loaded` (the most loaded first).
    pub fail_mode: String,
    pub seed: u64,
    /// Session time the lookups were spread over (0: no churn), and the
    /// log-normal session and downtime parameters (μ, σ of minutes).
    pub churn_minutes: f64,
    pub churn_session: [f64; 2],
    pub churn_downtime: [f64; 2],
    /// Departures and returns during the lookups.
    pub churn_leaves: u64,
    pub churn_joins: u64,
    /// Mean fraction of the surviving nodes online when a lookup started.
    pub online_fraction: f64,
    /// Lookups that found their key.
    pub success_rate: f64,
    /// Hops of the lookups that found their key.
    pub hops_mean: f64,
    pub hops_median: f64,
    pub hops_p95: f64,
    /// All messages the lookups caused, replies included, per lookup.
    pub messages_per_lookup: f64,
    /// The busiest node's lookup messages (sent or received) over the mean.
    pub max_load_ratio: f64,
    /// Lookups where some other node can name the requester with certainty.
    pub requester_exposed_rate: f64,
    /// Success of up to 10,000 of the keys again, once the 1% most loaded
    /// nodes are removed too.
    pub success_after_top1pct_removed: f64,
    /// Resident memory the built system took, per node (Linux; 0 elsewhere).
    pub bytes_per_node: u64,
    pub wall_seconds: f64,
    pub build_seconds: f64,
    pub insert_seconds: f64,
    pub lookup_seconds: f64,
}

/// Keys looked up again after removing the 1% most loaded nodes.
const TOP_LOADED_SAMPLE: usize = 10_000;

/// Resident set size of this process in bytes (Linux), if known.
fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The graph `opts.topology` names, drawn with `rng`.
pub fn build_graph(opts: &SimOptions, rng: &mut dyn RngCore) -> Result<Graph, SimError> {
    match Shape::parse(&opts.topology) {
        Some(shape) => {
            if opts.nodes < 3 || opts.degree < 2 || opts.degree >= opts.nodes {
                return Err(SimError::BadArgs(format!(
                    "need --nodes >= 3 and 2 <= --degree < --nodes (got {} and {})",
                    opts.nodes, opts.degree
                )));
            }
            Ok(graphs::generate(shape, opts.nodes, opts.degree, rng))
        }
        None => {
            let topology = Topology::load(std::path::Path::new(&opts.topology))?;
            Ok(graphs::from_topology(&topology))
        }
    }
}

/// The system `opts.system` names, on `graph`.
pub fn build_model(
    opts: &SimOptions,
    graph: &Graph,
    rng: &mut dyn RngCore,
) -> Result<Box<dyn Model>, SimError> {
    if opts.system == "freenet" {
        let config = RouterConfig {
            max_htl: opts.htl,
            lookahead: opts.lookahead,
            htl_rule: opts.htl_rule,
            ..RouterConfig::default()
        };
        let mut model = FreenetModel::new(graph, opts.anonymity, config, opts.latency, opts.seed);
        if let Some(blocks) = opts.store_blocks {
            model.set_store_capacity(blocks);
        }
        return Ok(Box::new(model));
    }
    let params = baselines::Params {
        ttl: opts.ttl,
        degree: opts.degree,
        ..baselines::Params::default()
    };
    baselines::build(&opts.system, graph, &params, rng).ok_or_else(|| {
        let mut names = vec!["freenet"];
        names.extend(baselines::SYSTEMS);
        SimError::UnknownSystem(opts.system.clone(), names.join(", "))
    })
}

/// Every system `--system` accepts.
pub fn systems() -> Vec<&'static str> {
    let mut names = vec!["freenet"];
    names.extend(baselines::SYSTEMS);
    names
}

fn bar(opts: &SimOptions, len: u64) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The value at quantile `q` of sorted `v` (nearest rank), 0 when empty.
fn quantile(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    f64::from(v[rank - 1])
}

/// Run the workload; see the module docs.
pub fn run(opts: &SimOptions) -> Result<SimReport, SimError> {
    if !(0.0..1.0).contains(&opts.fail) {
        return Err(SimError::BadArgs("--fail must be in [0, 1)".into()));
    }
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let graph = build_graph(opts, &mut rng)?;
    run_on(opts, graph, &mut rng, started)
}

/// Run the workload on `graph` (ignoring `opts.topology`, `nodes` and
/// `degree` except to report them), drawing keys and requesters from `rng`.
/// The location-swapping experiment measures its graph this way after
/// every few rounds of swaps.
pub fn run_on_graph(opts: &SimOptions, graph: &Graph, seed: u64) -> Result<SimReport, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    run_on(opts, graph.clone(), &mut rng, Instant::now())
}

/// Insert `count` fresh keys, each from a uniformly random node.
fn place_keys(
    model: &mut dyn Model,
    count: usize,
    rng: &mut ChaCha8Rng,
    bar: &ProgressBar,
) -> Vec<u64> {
    let n = model.nodes();
    let keys: Vec<u64> = (0..count).map(|_| rng.gen()).collect();
    for (i, &key) in keys.iter().enumerate() {
        let from = rng.gen_range(0..n) as NodeIx;
        model.insert(from, key, rng);
        if i % 1024 == 1023 {
            bar.inc(1024);
        }
    }
    keys
}

/// The `count` nodes a warm-up finds most loaded ([`FailMode::Loaded`]):
/// a twin built and filled from `rng`'s current state, as the measured run
/// will be, answers up to [`WARMUP_LOOKUPS`] lookups of random keys from
/// random nodes (a stream of their own), and is dropped. Also returns the
/// twin's built size per node (the measured system reuses its freed memory,
/// so its own figure would read 0).
fn most_loaded(
    opts: &SimOptions,
    graph: &Graph,
    rng: &ChaCha8Rng,
    count: usize,
) -> Result<(Vec<NodeIx>, u64), SimError> {
    let mut rng = rng.clone();
    let n = graph.nodes();
    let rss_before = rss_bytes();
    let mut twin = build_model(opts, graph, &mut rng)?;
    let bytes_per_node = match (rss_before, rss_bytes()) {
        (Some(a), Some(b)) => b.saturating_sub(a) / n.max(1) as u64,
        _ => 0,
    };
    let keys = place_keys(
        twin.as_mut(),
        opts.requests,
        &mut rng,
        &ProgressBar::hidden(),
    );
    let before = twin.load().to_vec();
    let mut warm = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x57A2_4D0F_1E55);
    for _ in 0..opts.requests.min(WARMUP_LOOKUPS) {
        let key = keys[warm.gen_range(0..keys.len())];
        let from = warm.gen_range(0..n) as NodeIx;
        twin.lookup(from, key, &mut warm);
    }
    let mut by_load: Vec<NodeIx> = (0..n as NodeIx).collect();
    let after = twin.load();
    let load = |i: NodeIx| after[i as usize] - before[i as usize];
    by_load.sort_by_key(|&i| (std::cmp::Reverse(load(i)), i));
    by_load.truncate(count);
    Ok((by_load, bytes_per_node))
}

fn run_on(
    opts: &SimOptions,
    graph: Graph,
    rng: &mut ChaCha8Rng,
    started: Instant,
) -> Result<SimReport, SimError> {
    if !(0.0..1.0).contains(&opts.fail) {
        return Err(SimError::BadArgs("--fail must be in [0, 1)".into()));
    }
    let churn_ok = |m: f64| m.is_finite() && m >= 0.0;
    if !churn_ok(opts.churn.minutes) {
        return Err(SimError::BadArgs("--churn must be minutes >= 0".into()));
    }
    let n = graph.nodes();
    let failed = (opts.fail * n as f64) as usize;
    let loaded = match opts.fail_mode {
        FailMode::Loaded if failed > 0 && opts.requests > 0 => {
            Some(most_loaded(opts, &graph, rng, failed)?)
        }
        _ => None,
    };
    let rss_before = rss_bytes();
    let mut model = build_model(opts, &graph, rng)?;
    let bytes_per_node = match (&loaded, rss_before, rss_bytes()) {
        (Some((_, twin)), _, _) => *twin,
        (None, Some(a), Some(b)) => b.saturating_sub(a) / n.max(1) as u64,
        _ => 0,
    };
    drop(graph);
    let build_seconds = started.elapsed().as_secs_f64();
    let bar = bar(opts, 2 * opts.requests as u64);

    // Place the keys.
    bar.set_message("inserts");
    let t = Instant::now();
    let keys = place_keys(model.as_mut(), opts.requests, rng, &bar);
    let insert_seconds = t.elapsed().as_secs_f64();

    // Fail a fraction; look up from the survivors that are online.
    let mut alive = vec![true; n];
    let gone: Vec<NodeIx> = match loaded {
        Some((most, _)) => most,
        None => sample(rng, n, failed)
            .into_iter()
            .map(|i| i as NodeIx)
            .collect(),
    };
    for &g in &gone {
        alive[g as usize] = false;
    }
    model.fail(&gone);
    let survivors: Vec<NodeIx> = (0..n as NodeIx).filter(|&i| alive[i as usize]).collect();
    if survivors.is_empty() {
        return Err(SimError::BadArgs("no node survives --fail".into()));
    }
    let mut members = Members::new(n, survivors.iter().copied());
    let mut churn = opts
        .churn
        .is_on()
        .then(|| Churn::new(opts.churn, survivors.iter().copied(), opts.seed));

    bar.set_position(opts.requests as u64);
    bar.set_message("lookups");
    let t = Instant::now();
    let load_before: Vec<u64> = model.load().to_vec();
    let (mut found, mut exposed, mut messages) = (0usize, 0usize, 0u64);
    let mut online_sum = 0.0;
    let mut hops: Vec<u32> = Vec::with_capacity(opts.requests);
    for (i, &key) in keys.iter().enumerate() {
        if let Some(churn) = churn.as_mut() {
            let now = churn.lookup_time(i, keys.len());
            while let Some(e) = churn.due(now) {
                model.set_online(e.node, e.online);
                alive[e.node as usize] = e.online;
                if e.online {
                    members.add(e.node);
                } else {
                    members.remove(e.node);
                }
            }
        }
        online_sum += members.len() as f64 / survivors.len() as f64;
        if i % 1024 == 1023 {
            bar.inc(1024);
        }
        // With every node offline the lookup cannot start: not found.
        let Some(from) = members.pick(rng) else {
            continue;
        };
        let l = model.lookup(from, key, rng);
        messages += l.messages;
        exposed += usize::from(l.requester_exposed);
        if l.found {
            found += 1;
            hops.push(l.hops);
        }
    }
    let lookup_seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let load: Vec<u64> = model
        .load()
        .iter()
        .zip(&load_before)
        .map(|(a, b)| a - b)
        .collect();
    let mean_load = load.iter().sum::<u64>() as f64 / n as f64;
    let max_load_ratio = match load.iter().max() {
        Some(&max) if mean_load > 0.0 => max as f64 / mean_load,
        _ => 0.0,
    };

    // Remove the 1% most loaded of those online and ask again (churn, if
    // any, stops where the lookups ended).
    let mut by_load: Vec<NodeIx> = members.as_slice().to_vec();
    by_load.sort_by_key(|&i| (std::cmp::Reverse(load[i as usize]), i));
    let top: Vec<NodeIx> = by_load.iter().take(n.div_ceil(100)).copied().collect();
    for &g in &top {
        alive[g as usize] = false;
    }
    model.fail(&top);
    let rest: Vec<NodeIx> = (0..n as NodeIx).filter(|&i| alive[i as usize]).collect();
    let sample_keys = &keys[..keys.len().min(TOP_LOADED_SAMPLE)];
    let mut found_after = 0usize;
    if !rest.is_empty() {
        for &key in sample_keys {
            let from = rest[rng.gen_range(0..rest.len())];
            found_after += usize::from(model.lookup(from, key, rng).found);
        }
    }

    hops.sort_unstable();
    let r = opts.requests.max(1) as f64;
    let hops_mean = if hops.is_empty() {
        0.0
    } else {
        hops.iter().map(|&h| f64::from(h)).sum::<f64>() / hops.len() as f64
    };
    Ok(SimReport {
        system: model.name().to_string(),
        anonymity: (opts.system == "freenet").then(|| opts.anonymity.to_string()),
        routing: (opts.system == "freenet")
            .then(|| format!("{}/{}", opts.lookahead, opts.htl_rule)),
        topology: opts.topology.clone(),
        nodes: n,
        degree: opts.degree,
        requests: opts.requests,
        fail: opts.fail,
        fail_mode: opts.fail_mode.to_string(),
        seed: opts.seed,
        churn_minutes: opts.churn.minutes,
        churn_session: [opts.churn.session.mu, opts.churn.session.sigma],
        churn_downtime: [opts.churn.downtime.mu, opts.churn.downtime.sigma],
        churn_leaves: churn.as_ref().map_or(0, |c| c.leaves),
        churn_joins: churn.as_ref().map_or(0, |c| c.joins),
        online_fraction: online_sum / r,
        success_rate: found as f64 / r,
        hops_mean,
        hops_median: quantile(&hops, 0.5),
        hops_p95: quantile(&hops, 0.95),
        messages_per_lookup: messages as f64 / r,
        max_load_ratio,
        requester_exposed_rate: exposed as f64 / r,
        success_after_top1pct_removed: found_after as f64 / sample_keys.len().max(1) as f64,
        bytes_per_node,
        wall_seconds: started.elapsed().as_secs_f64(),
        build_seconds,
        insert_seconds,
        lookup_seconds,
    })
}
