//! `veil sim --experiment predecessor`: the predecessor attack (Wright,
//! Adler, Levine and Shields, NDSS 2002) on veil's tunnels.
//!
//! One originator fetches file after file, each through a tunnel of its own
//! (the reuse period is the unit: one tunnel per period of activity). A
//! pool of colluders, a fraction of the network, watches every tunnel that
//! passes through it; on each, the first colluder on the path records the
//! node it got the build from, its predecessor. The originator is the
//! predecessor whenever its first hop colludes; any other node only by the
//! chance of the walk, so over many tunnels the originator stands out.
//!
//! The tunnels are the router's own ([`AuditedNet`], the same core as the
//! node), their paths the driver's ground truth ([`super::TunnelPaths`]).
//! The colluders score each candidate by its likelihood: a node `c` is the
//! predecessor with probability `π_c` (the share of its links that lead to
//! colluders) if it is the originator, and otherwise as the predecessor of
//! a colluder reached later in a walk, `q(c)`, proportional to its links to
//! colluders. The figure is the number of downloads after which the
//! originator ranks first with posterior ≥ [`EXPOSED`].
//!
//! Two ways to link a tunnel to the originator's series: `exit` (a tunnel
//! counts only when its exit colludes: only the exit sees what is fetched,
//! so only then can the pool tell the tunnel is the target's) and `any` (the
//! pool links every tunnel it is on, by timing or otherwise: the attack's
//! textbook form, an upper bound).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

mod output;

pub use output::{experiment, render, write};

use super::{file_blocks, AuditedNet, MAX_EVENTS_PER_STEP};
use crate::routing::{Anonymity, RouterConfig};
use crate::sim::engine::Latency;
use crate::sim::model::{Graph, NodeIx};
use crate::sim::runner::SimError;

/// Posterior at which the colluders call the originator exposed.
pub const EXPOSED: f64 = 0.9;
/// Colluder fractions the experiment plays.
pub const FRACTIONS: &[f64] = &[0.05, 0.10];
/// Originators (independent trials) when not told otherwise.
pub const DEFAULT_TRIALS: usize = 40;
/// Downloads per originator when `--requests` is not given.
pub const DEFAULT_DOWNLOADS: usize = 200;
/// Node count when `--nodes` is not given.
pub const DEFAULT_NODES: usize = 1_000;

/// How the colluders tie a tunnel to the originator they follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Linking {
    /// Only tunnels whose exit colludes (it sees the target content).
    Exit,
    /// Every tunnel a colluder is on.
    Any,
}

impl Linking {
    fn name(self) -> &'static str {
        match self {
            Linking::Exit => "exit",
            Linking::Any => "any",
        }
    }
}

/// The experiment's settings.
#[derive(Clone, Debug)]
pub struct PredecessorOptions {
    pub nodes: usize,
    pub degree: usize,
    pub trials: usize,
    pub downloads: usize,
    pub fractions: Vec<f64>,
    pub latency: Latency,
    pub seed: u64,
}

impl Default for PredecessorOptions {
    fn default() -> Self {
        PredecessorOptions {
            nodes: DEFAULT_NODES,
            degree: 10,
            trials: DEFAULT_TRIALS,
            downloads: DEFAULT_DOWNLOADS,
            fractions: FRACTIONS.to_vec(),
            latency: Latency::default(),
            seed: 1,
        }
    }
}

/// One originator's tunnels: per download, the path of every tunnel it
/// built for it (originator first, exit last).
#[derive(Clone, Debug)]
pub struct Trial {
    pub originator: NodeIx,
    pub downloads: Vec<Vec<Vec<NodeIx>>>,
}

/// One (fraction, linking) row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PredecessorRow {
    pub nodes: usize,
    /// Did every tunnel start at the originator's guard?
    pub guard: bool,
    pub fraction: f64,
    pub colluders: usize,
    pub linking: Linking,
    pub trials: usize,
    pub downloads: usize,
    /// Tunnels built per download (rebuilds included), over all trials.
    pub tunnels_per_download: f64,
    /// Share of downloads that gave the pool a sample.
    pub sampled: f64,
    /// Share of samples whose predecessor was the originator.
    pub sampled_originator: f64,
    /// Trials whose originator had a colluding neighbour (without one, its
    /// first hop never colludes, and it is never the pool's sample).
    pub colluding_friend: usize,
    /// Trials in which at least one tunnel's first hop colluded (with a
    /// guard, the trials whose guard colludes: only they can be exposed).
    pub first_hop_colluded: usize,
    /// Trials in which the originator was exposed within `downloads`.
    pub exposed: usize,
    /// Downloads to exposure, each trial (`None`: not within `downloads`).
    pub to_exposure: Vec<Option<usize>>,
    /// Median downloads to exposure (`None`: half the trials or more were
    /// not exposed within `downloads`).
    pub median_to_exposure: Option<usize>,
    /// Median downloads to exposure among the exposed trials.
    pub median_when_exposed: Option<usize>,
    /// Median posterior of the originator after each download.
    pub posterior_median: Vec<f64>,
}

/// Run every trial's downloads on `graph`, with guards (the default
/// `guard_ms`) or without (a random first hop for every tunnel).
pub fn run_trials(
    opts: &PredecessorOptions,
    graph: &Graph,
    guard: bool,
) -> Result<Vec<Trial>, SimError> {
    if graph.nodes() != opts.nodes
        || opts.nodes < 20
        || opts.degree < 2
        || opts.trials == 0
        || opts.downloads == 0
    {
        return Err(SimError::BadArgs(format!(
            "predecessor: needs at least 20 nodes of degree 2 and one trial and download \
             (got {} nodes, degree {}, {} trials, {} downloads)",
            opts.nodes, opts.degree, opts.trials, opts.downloads
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7072_6564);
    let mut config = RouterConfig::default();
    // A new tunnel for every download: each stands for one reuse period.
    config.tunnel.reuse_ms = 0;
    if !guard {
        config.tunnel.guard_ms = 0;
    }
    let mut net = AuditedNet::new(graph, config, Anonymity::Tunnel, opts.latency, opts.seed);
    let originators = sample(&mut rng, opts.nodes, opts.trials.min(opts.nodes));
    let mut trials = Vec::new();
    let mut file = 0;
    for originator in originators {
        let originator = originator as NodeIx;
        let mut downloads = Vec::with_capacity(opts.downloads);
        for _ in 0..opts.downloads {
            // A one-block file held by a random other node.
            let block = file_blocks(file, 1).remove(0);
            file += 1;
            let holder = loop {
                let h = rng.gen_range(0..opts.nodes) as NodeIx;
                if h != originator {
                    break h;
                }
            };
            let key = block.routing_key();
            net.place(holder, block);
            let before = net.tunnels.originated.len();
            net.get(originator, key);
            net.settle(MAX_EVENTS_PER_STEP);
            net.idle(rng.gen_range(1_000..5_000), MAX_EVENTS_PER_STEP);
            let paths = net.tunnels.originated[before..]
                .iter()
                .filter(|link| link.0 == originator)
                .map(|&link| net.tunnels.path(link))
                .collect();
            downloads.push(paths);
        }
        trials.push(Trial {
            originator,
            downloads,
        });
    }
    Ok(trials)
}

/// What the pool knows of each node: the share of its links to colluders
/// (`π`) and how likely it is to precede a colluder later in a walk (`q`).
struct Model {
    colluder: Vec<bool>,
    pi: Vec<f64>,
    q: Vec<f64>,
}

impl Model {
    fn new(graph_adj: &[Vec<NodeIx>], colluder: Vec<bool>) -> Model {
        let to_colluders: Vec<usize> = graph_adj
            .iter()
            .map(|adj| adj.iter().filter(|&&p| colluder[p as usize]).count())
            .collect();
        let total: usize = to_colluders
            .iter()
            .zip(&colluder)
            .filter(|(_, &c)| !c)
            .map(|(k, _)| k)
            .sum();
        let pi = graph_adj
            .iter()
            .zip(&to_colluders)
            .map(|(adj, &k)| (k as f64 / adj.len().max(1) as f64).min(0.999))
            .collect();
        let q = to_colluders
            .iter()
            .map(|&k| k as f64 / total.max(1) as f64)
            .collect();
        Model { colluder, pi, q }
    }

    /// The pool's sample from one tunnel: the predecessor of the first
    /// colluder on it, if the pool links the tunnel.
    fn sample(&self, path: &[NodeIx], linking: Linking) -> Option<NodeIx> {
        let exit = *path.last()?;
        if linking == Linking::Exit && !self.colluder[exit as usize] {
            return None;
        }
        let first = path
            .iter()
            .skip(1)
            .position(|&h| self.colluder[h as usize])?;
        Some(path[first])
    }

    /// The originator's posterior, and whether it ranks first, given how
    /// often each node was a sample (`counts`) out of `samples`.
    fn posterior(&self, counts: &[u32], samples: u32, originator: NodeIx) -> (f64, bool) {
        let score = |c: usize| {
            let (pi, q) = (self.pi[c], self.q[c]);
            let mut s = f64::from(samples) * (1.0 - pi).ln();
            if counts[c] > 0 && q > 0.0 {
                s += f64::from(counts[c]) * (1.0 + pi / ((1.0 - pi) * q)).ln();
            }
            s
        };
        let scores: Vec<(usize, f64)> = (0..counts.len())
            .filter(|&c| !self.colluder[c])
            .map(|c| (c, score(c)))
            .collect();
        let max = scores
            .iter()
            .map(|&(_, s)| s)
            .fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scores.iter().map(|&(_, s)| (s - max).exp()).sum();
        let mine = score(originator as usize);
        let first = scores
            .iter()
            .all(|&(c, s)| c == originator as usize || s < mine);
        ((mine - max).exp() / total, first)
    }
}

/// Score the trials (run with `guard` or not) against each fraction of
/// colluders and each linking.
pub fn rows(
    opts: &PredecessorOptions,
    graph: &Graph,
    guard: bool,
    trials: &[Trial],
) -> Vec<PredecessorRow> {
    let mut out = Vec::new();
    for (fi, &fraction) in opts.fractions.iter().enumerate() {
        let pool = ((fraction * opts.nodes as f64).round() as usize).clamp(1, opts.nodes - 1);
        for linking in [Linking::Exit, Linking::Any] {
            let (mut tunnels, mut sampled, mut from_originator, mut samples_all) = (0, 0, 0, 0);
            let mut to_exposure = Vec::new();
            let mut colluding_friend = 0;
            let mut first_hop_colluded = 0;
            let mut posteriors: Vec<Vec<f64>> = vec![Vec::new(); opts.downloads];
            for (t, trial) in trials.iter().enumerate() {
                // The same pool for both linkings: a trial's colluders.
                let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ ((fi as u64) << 32) ^ t as u64);
                let mut colluder = vec![false; opts.nodes];
                let mut chosen = 0;
                while chosen < pool {
                    let c = rng.gen_range(0..opts.nodes);
                    if c != trial.originator as usize && !colluder[c] {
                        colluder[c] = true;
                        chosen += 1;
                    }
                }
                let model = Model::new(&graph.adj, colluder);
                colluding_friend += usize::from(model.pi[trial.originator as usize] > 0.0);
                let mut counts = vec![0u32; opts.nodes];
                let mut samples = 0u32;
                let mut exposed_at = None;
                first_hop_colluded += usize::from(
                    trial
                        .downloads
                        .iter()
                        .flatten()
                        .any(|path| path.get(1).is_some_and(|&h| model.colluder[h as usize])),
                );
                for (d, paths) in trial.downloads.iter().enumerate() {
                    tunnels += paths.len();
                    let mut got = false;
                    for path in paths {
                        if let Some(p) = model.sample(path, linking) {
                            counts[p as usize] += 1;
                            samples += 1;
                            samples_all += 1;
                            got = true;
                            from_originator += usize::from(p == trial.originator);
                        }
                    }
                    sampled += usize::from(got);
                    let (posterior, first) = model.posterior(&counts, samples, trial.originator);
                    posteriors[d].push(posterior);
                    if exposed_at.is_none() && first && posterior >= EXPOSED {
                        exposed_at = Some(d + 1);
                    }
                }
                to_exposure.push(exposed_at);
            }
            let downloads = trials.len() * opts.downloads;
            let exposed = to_exposure.iter().flatten().count();
            out.push(PredecessorRow {
                nodes: opts.nodes,
                guard,
                fraction,
                colluders: pool,
                linking,
                trials: trials.len(),
                downloads: opts.downloads,
                tunnels_per_download: tunnels as f64 / downloads.max(1) as f64,
                sampled: sampled as f64 / downloads.max(1) as f64,
                sampled_originator: from_originator as f64 / samples_all.max(1) as f64,
                colluding_friend,
                first_hop_colluded,
                exposed,
                median_to_exposure: median_censored(&to_exposure),
                median_when_exposed: {
                    let exposed: Vec<Option<usize>> = to_exposure
                        .iter()
                        .filter(|e| e.is_some())
                        .copied()
                        .collect();
                    median_censored(&exposed)
                },
                to_exposure,
                posterior_median: posteriors.iter().map(|p| median(p)).collect(),
            });
        }
    }
    out
}

/// The median of values where `None` is "more than any value".
fn median_censored(values: &[Option<usize>]) -> Option<usize> {
    let mut v: Vec<usize> = values.iter().map(|x| x.unwrap_or(usize::MAX)).collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().filter(|&m| m != usize::MAX)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::graphs;

    fn small() -> (PredecessorOptions, Graph) {
        let opts = PredecessorOptions {
            nodes: 60,
            degree: 6,
            trials: 3,
            downloads: 12,
            fractions: vec![0.1],
            seed: 7,
            ..PredecessorOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let graph = graphs::kleinberg(opts.nodes, opts.degree, &mut rng);
        (opts, graph)
    }

    /// Every recorded tunnel is a walk on the graph from the originator;
    /// with a guard, every tunnel of an originator
    /// starts at the same neighbour, without one they spread.
    #[test]
    fn tunnels_are_walks_from_the_originator_and_guards_pin_the_first_hop() {
        let (opts, graph) = small();
        for guard in [false, true] {
            let trials = run_trials(&opts, &graph, guard).unwrap();
            assert_eq!(trials.len(), opts.trials);
            let mut first_hops_per_trial = Vec::new();
            for trial in &trials {
                assert_eq!(trial.downloads.len(), opts.downloads);
                let mut first_hops = std::collections::BTreeSet::new();
                let mut tunnels = 0;
                for path in trial.downloads.iter().flatten() {
                    tunnels += 1;
                    assert_eq!(path[0], trial.originator);
                    assert!(path.len() >= 2, "a tunnel has at least one hop: {path:?}");
                    for w in path.windows(2) {
                        assert!(graph.adj[w[0] as usize].contains(&w[1]), "{path:?}");
                    }
                    // A hop never extends back to the hop it came from
                    // (a walk may come back later: no hop knows the path).
                    for w in path.windows(3) {
                        assert_ne!(w[0], w[2], "{path:?}");
                    }
                    first_hops.insert(path[1]);
                }
                assert!(tunnels >= opts.downloads, "a tunnel per download");
                first_hops_per_trial.push(first_hops.len());
            }
            if guard {
                assert!(
                    first_hops_per_trial.iter().all(|&n| n == 1),
                    "{first_hops_per_trial:?}"
                );
            } else {
                assert!(
                    first_hops_per_trial.iter().all(|&n| n > 1),
                    "{first_hops_per_trial:?}"
                );
            }
        }
    }

    /// The pool samples the predecessor of its first member on a tunnel,
    /// and under `exit` linking only when the exit is one of its own.
    #[test]
    fn the_sample_is_the_first_colluders_predecessor() {
        let adj: Vec<Vec<NodeIx>> = (0..6u32).map(|i| vec![(i + 1) % 6, (i + 5) % 6]).collect();
        let mut colluder = vec![false; 6];
        colluder[2] = true;
        colluder[4] = true;
        let model = Model::new(&adj, colluder);
        assert_eq!(model.sample(&[0, 1, 2, 3, 4], Linking::Any), Some(1));
        assert_eq!(model.sample(&[0, 1, 2, 3, 4], Linking::Exit), Some(1));
        assert_eq!(model.sample(&[0, 1, 2, 3], Linking::Exit), None);
        assert_eq!(model.sample(&[1, 2, 3], Linking::Any), Some(1));
        assert_eq!(model.sample(&[0, 1, 0], Linking::Any), None);
        // A node whose links all lead to colluders, sampled every time,
        // ends with the highest posterior.
        let counts = [0, 0, 0, 5, 0, 0];
        let (p, first) = model.posterior(&counts, 5, 3);
        assert!(first && p > 0.9, "{p}");
        let (p, first) = model.posterior(&counts, 5, 0);
        assert!(!first && p < 0.1, "{p}");
    }

    /// The experiment's rows follow from the trials: exposure needs a
    /// colluding first hop, and `exit` linking samples no more than `any`.
    #[test]
    fn rows_count_what_the_pool_could_see() {
        let (opts, graph) = small();
        for guard in [false, true] {
            let trials = run_trials(&opts, &graph, guard).unwrap();
            let rows = rows(&opts, &graph, guard, &trials);
            assert_eq!(rows.len(), 2);
            let (exit, any) = (&rows[0], &rows[1]);
            assert_eq!((exit.linking, any.linking), (Linking::Exit, Linking::Any));
            assert!(exit.sampled <= any.sampled);
            for r in &rows {
                assert!(r.exposed <= r.first_hop_colluded, "{r:?}");
                assert!(r.first_hop_colluded <= r.colluding_friend, "{r:?}");
                assert_eq!(r.posterior_median.len(), opts.downloads);
                assert_eq!(r.to_exposure.len(), opts.trials);
            }
        }
    }
}
