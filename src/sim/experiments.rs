//! `veil sim --experiment NAME`: series of runs ([`runner::run`]) written
//! as CSV, JSON and an SVG plot under `--out` (see `docs/sim.md`).

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::routing::{HtlRule, Lookahead};
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::{self, FailMode, SimError, SimOptions, SimReport};

/// Where the experiments write by default.
pub const DEFAULT_OUT: &str = "docs/sim";

/// Node counts of the `scaling` experiment.
pub const SCALING_NODES: &[usize] = &[1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000];
/// Failed fractions of the `failure` experiment.
pub const FAILURE_FRACTIONS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5];

/// One experiment's settings.
#[derive(Clone, Debug)]
pub struct ExperimentOptions {
    pub out: PathBuf,
    pub seed: u64,
    pub progress: bool,
    /// Lookups per run (`--requests`; `None`: [`DEFAULT_REQUESTS`], which
    /// keeps every experiment to minutes). For `anonymity`, the fetches in
    /// all (a third of them files, each fetched 3 times).
    pub requests: Option<usize>,
    /// Node count (`--nodes`) of `failure`, `baselines` and `anonymity`
    /// (`None`: [`DEFAULT_NODES`]); `scaling` runs its own sizes, and
    /// `swap` runs one size when given one (else its own).
    pub nodes: Option<usize>,
    /// Rounds of swapping (`--rounds`) of a one-size `swap` run.
    pub rounds: Option<usize>,
    /// How the measuring lookups rank candidates (`--lookahead`; `swap`).
    pub lookahead: crate::routing::Lookahead,
    /// What a hop costs (`--htl-rule`; `swap`, `pitch-black`).
    pub htl_rule: crate::routing::HtlRule,
    /// How a one-size `swap` run finds locations (`--embedding`).
    pub embedding: crate::sim::swap::Embedding,
    /// Nodes leaving and rejoining (`--churn`; a one-size `swap` run with
    /// the tree embedding: while it forms and during the lookups).
    pub churn: crate::sim::churn::ChurnSpec,
    /// End with one JSON line (`--json`; a one-size `swap` run, a
    /// one-fraction `pitch-black` run).
    pub json: bool,
    /// Fraction of dishonest swappers (`--attackers`; `pitch-black` runs
    /// one fraction when given one, else its own).
    pub attackers: Option<f64>,
    /// Honest swappers refuse crowded locations (`--no-defence` turns it
    /// off; `pitch-black`).
    pub defence: bool,
}

/// Lookups per run when `--requests` is not given.
pub const DEFAULT_REQUESTS: usize = 2_000;
/// Node count of the fixed-size experiments when `--nodes` is not given.
pub const DEFAULT_NODES: usize = 10_000;

impl ExperimentOptions {
    pub fn requests(&self) -> usize {
        self.requests.unwrap_or(DEFAULT_REQUESTS)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.unwrap_or(DEFAULT_NODES)
    }

    /// A line for the summary when `--nodes` was given to an experiment
    /// that runs its own sizes.
    pub(crate) fn ignored_nodes(&self, name: &str) -> String {
        match self.nodes {
            Some(n) => format!("(--nodes {n} is not used: {name} runs its own sizes)\n"),
            None => String::new(),
        }
    }
}

impl Default for ExperimentOptions {
    fn default() -> Self {
        ExperimentOptions {
            out: PathBuf::from(DEFAULT_OUT),
            seed: 1,
            progress: false,
            requests: None,
            nodes: None,
            rounds: None,
            lookahead: crate::routing::Lookahead::None,
            htl_rule: crate::routing::HtlRule::Hop,
            embedding: crate::sim::swap::Embedding::Swap,
            churn: crate::sim::churn::ChurnSpec::default(),
            json: false,
            attackers: None,
            defence: true,
        }
    }
}

/// What an experiment wrote.
#[derive(Clone, Debug)]
pub struct ExperimentResult {
    pub runs: Vec<SimReport>,
    pub files: Vec<PathBuf>,
    pub summary: String,
}

/// Run experiment `name`.
pub fn run(name: &str, opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    match name {
        "scaling" => scaling(opts),
        "failure" => failure(opts),
        "baselines" => baselines(opts),
        "swap" => crate::sim::swap::experiment(opts),
        "pitch-black" => crate::sim::pitch_black::experiment(opts),
        "anonymity" => crate::sim::anonymity::experiment(opts),
        "predecessor" => crate::sim::anonymity::predecessor::experiment(opts),
        other => Err(SimError::UnknownExperiment(other.into())),
    }
}

pub(crate) fn bar(opts: &ExperimentOptions, len: usize, what: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} runs {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// veil's routing rules the scaling, failure and baselines experiments
/// compare: the lecture's (greedy, every hop costs one) and the new ones
/// (FOAF lookahead, the progress rule).
pub const RULES: [(Lookahead, HtlRule); 2] = [
    (Lookahead::None, HtlRule::Hop),
    (Lookahead::Foaf, HtlRule::Progress),
];

/// Every system once, and veil once under each of [`RULES`].
fn variants(opts: &ExperimentOptions) -> Vec<SimOptions> {
    let mut out = Vec::new();
    for system in runner::systems() {
        let one = SimOptions {
            system: system.to_string(),
            ..base(opts)
        };
        match system {
            "freenet" => out.extend(RULES.map(|(lookahead, htl_rule)| SimOptions {
                lookahead,
                htl_rule,
                ..one.clone()
            })),
            _ => out.push(one),
        }
    }
    out
}

fn base(opts: &ExperimentOptions) -> SimOptions {
    SimOptions {
        requests: opts.requests(),
        nodes: opts.nodes(),
        seed: opts.seed,
        ..SimOptions::default()
    }
}

/// Write `runs` as `NAME.json` and `NAME.csv`, and the plot as `NAME.svg`.
fn write(
    opts: &ExperimentOptions,
    name: &str,
    runs: &[SimReport],
    panels: &[Panel<'_>],
) -> Result<Vec<PathBuf>, SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(&opts.out).map_err(|e| io(&opts.out, e))?;
    let json_path = opts.out.join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(runs).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let csv_path = opts.out.join(format!("{name}.csv"));
    let mut csv = String::from(
        "system,anonymity,topology,nodes,degree,requests,fail,success_rate,hops_mean,\
         hops_median,hops_p95,messages_per_lookup,max_load_ratio,requester_exposed_rate,\
         success_after_top1pct_removed,fail_mode,churn_minutes,routing\n",
    );
    for r in runs {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{:.4},{:.3},{},{},{:.2},{:.2},{:.4},{:.4},{},{},{}\n",
            r.system,
            r.anonymity.as_deref().unwrap_or(""),
            r.topology,
            r.nodes,
            r.degree,
            r.requests,
            r.fail,
            r.success_rate,
            r.hops_mean,
            r.hops_median,
            r.hops_p95,
            r.messages_per_lookup,
            r.max_load_ratio,
            r.requester_exposed_rate,
            r.success_after_top1pct_removed,
            r.fail_mode,
            r.churn_minutes,
            r.routing.as_deref().unwrap_or("")
        ));
    }
    std::fs::write(&csv_path, csv).map_err(|e| io(&csv_path, e))?;
    let svg_path = opts.out.join(format!("{name}.svg"));
    plot::draw(&svg_path, panels)?;
    Ok(vec![csv_path, json_path, svg_path])
}

/// Least-squares `a` of `y = a * x` through the origin.
pub fn fit_through_origin(points: &[(f64, f64)]) -> f64 {
    let sxy: f64 = points.iter().map(|(x, y)| x * y).sum();
    let sxx: f64 = points.iter().map(|(x, _)| x * x).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

fn log2_sq(n: f64) -> f64 {
    n.log2() * n.log2()
}

fn scaling(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let bar = bar(opts, RULES.len() * SCALING_NODES.len(), "scaling");
    let mut runs = Vec::new();
    for (lookahead, htl_rule) in RULES {
        for &n in SCALING_NODES {
            bar.set_message(format!("{lookahead}/{htl_rule}, N = {n}"));
            runs.push(runner::run(&SimOptions {
                nodes: n,
                lookahead,
                htl_rule,
                ..base(opts)
            })?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let (lecture, new) = runs.split_at(SCALING_NODES.len());
    let points = |runs: &[SimReport], f: fn(&SimReport) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|r| (r.nodes as f64, f(r))).collect()
    };
    let mean = points(lecture, |r| r.hops_mean);
    let median = points(lecture, |r| r.hops_median);
    let new_mean = points(new, |r| r.hops_mean);
    let a = fit_through_origin(
        &mean
            .iter()
            .map(|&(n, h)| (log2_sq(n), h))
            .collect::<Vec<_>>(),
    );
    let fit: Vec<(f64, f64)> = mean.iter().map(|&(n, _)| (n, a * log2_sq(n))).collect();
    let success = points(lecture, |r| 100.0 * r.success_rate);
    let new_success = points(new, |r| 100.0 * r.success_rate);
    let panels = [
        Panel {
            title: "veil (mode none) on a Kleinberg small world, degree 10, HTL 18",
            x_label: "nodes N",
            y_label: "hops of found lookups",
            log_x: true,
            series: vec![
                Series {
                    name: "mean hops, none/hop (the lecture's rules)".into(),
                    points: mean,
                    dashed: false,
                },
                Series {
                    name: "median hops, none/hop".into(),
                    points: median,
                    dashed: false,
                },
                Series {
                    name: "mean hops, foaf/progress".into(),
                    points: new_mean,
                    dashed: false,
                },
                Series {
                    name: format!("fit {a:.3} * log2(N)^2 (Kleinberg's bound)"),
                    points: fit,
                    dashed: true,
                },
            ],
        },
        Panel {
            title: "lookup success",
            x_label: "nodes N",
            y_label: "success (%)",
            log_x: true,
            series: vec![
                Series {
                    name: "none/hop".into(),
                    points: success,
                    dashed: false,
                },
                Series {
                    name: "foaf/progress".into(),
                    points: new_success,
                    dashed: false,
                },
            ],
        },
    ];
    let files = write(opts, "scaling", &runs, &panels)?;
    let mut summary = opts.ignored_nodes("scaling");
    summary.push_str(&format!(
        "scaling: hops ~ {a:.3} * log2(N)^2 fitted on the mean under none/hop\n"
    ));
    for r in &runs {
        summary.push_str(&format!(
            "  {:>13} N = {:>6}: success {:5.1}%, hops mean {:5.2}, median {}, p95 {}\n",
            r.routing.as_deref().unwrap_or(""),
            r.nodes,
            100.0 * r.success_rate,
            r.hops_mean,
            r.hops_median,
            r.hops_p95
        ));
    }
    Ok(ExperimentResult {
        runs,
        files,
        summary,
    })
}

/// One panel of the failure plot: a figure against the failed fraction.
fn failure_panel<'a>(title: &'a str, y_label: &'a str, series: Option<Vec<Series>>) -> Panel<'a> {
    Panel {
        title,
        x_label: "nodes failed (%)",
        y_label,
        log_x: false,
        series: series.unwrap_or_default(),
    }
}

fn failure(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let systems = variants(opts);
    let modes = [FailMode::Random, FailMode::Loaded];
    let total = modes.len() * systems.len() * FAILURE_FRACTIONS.len();
    let bar = bar(opts, total, "failure");
    let mut runs = Vec::new();
    // Per mode: success and median series, one per system.
    let mut success: Vec<Vec<Series>> = vec![Vec::new(), Vec::new()];
    let mut median: Vec<Vec<Series>> = vec![Vec::new(), Vec::new()];
    for (m, &fail_mode) in modes.iter().enumerate() {
        for system in &systems {
            let (mut s, mut med) = (Vec::new(), Vec::new());
            let mut label = system.system.clone();
            for &fail in FAILURE_FRACTIONS {
                bar.set_message(format!("{label}, {:.0}% failed, {fail_mode}", 100.0 * fail));
                let r = runner::run(&SimOptions {
                    fail,
                    fail_mode,
                    ..system.clone()
                })?;
                label = r.label();
                s.push((100.0 * fail, 100.0 * r.success_rate));
                med.push((100.0 * fail, r.hops_median));
                runs.push(r);
                bar.inc(1);
            }
            let series = |points| Series {
                name: label.clone(),
                points,
                dashed: false,
            };
            success[m].push(series(s));
            median[m].push(series(med));
        }
        median[m].push(Series {
            name: "Clarke et al. 2001: median < 20 up to 30%".into(),
            points: vec![(0.0, 20.0), (30.0, 20.0)],
            dashed: true,
        });
    }
    bar.finish_and_clear();
    let (median_loaded, median_random) = (median.pop(), median.pop());
    let (success_loaded, success_random) = (success.pop(), success.pop());
    let titles = [
        format!("success, {} nodes, random failures", opts.nodes()),
        "median path, random failures".to_string(),
        "success, the most loaded fail first".to_string(),
        "median path, the most loaded first".to_string(),
    ];
    let panels = [
        failure_panel(&titles[0], "success (%)", success_random),
        failure_panel(&titles[1], "hops", median_random),
        failure_panel(&titles[2], "success (%)", success_loaded),
        failure_panel(&titles[3], "hops", median_loaded),
    ];
    let files = write(opts, "failure", &runs, &panels)?;
    let mut summary = String::from("failure:\n");
    for r in &runs {
        summary.push_str(&format!(
            "  {:22} {:3.0}% failed ({:6}): success {:5.1}%, median hops {}\n",
            r.label(),
            100.0 * r.fail,
            r.fail_mode,
            100.0 * r.success_rate,
            r.hops_median
        ));
    }
    Ok(ExperimentResult {
        runs,
        files,
        summary,
    })
}

fn baselines(opts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let systems = variants(opts);
    let bar = bar(opts, systems.len(), "baselines");
    let mut runs = Vec::new();
    for system in &systems {
        bar.set_message(system.system.clone());
        runs.push(runner::run(system)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let series = runs
        .iter()
        .map(|r| Series {
            name: format!("{} ({:.0}% found)", r.label(), 100.0 * r.success_rate),
            points: vec![(r.messages_per_lookup.max(1.0), r.hops_mean)],
            dashed: false,
        })
        .collect();
    let title = format!("every system at N = {}", opts.nodes());
    let panels = [Panel {
        title: &title,
        x_label: "messages per lookup",
        y_label: "mean hops",
        log_x: true,
        series,
    }];
    let files = write(opts, "baselines", &runs, &panels)?;
    let mut summary = format!(
        "baselines at N = {}:\n  {:22} {:>8} {:>6} {:>6} {:>6} {:>10} {:>6} {:>8} {:>8}\n",
        opts.nodes(),
        "system",
        "success",
        "mean",
        "median",
        "p95",
        "msgs",
        "load",
        "exposed",
        "top1%"
    );
    for r in &runs {
        summary.push_str(&format!(
            "  {:22} {:>7.1}% {:>6.2} {:>6} {:>6} {:>10.1} {:>6.1} {:>7.1}% {:>7.1}%\n",
            r.label(),
            100.0 * r.success_rate,
            r.hops_mean,
            r.hops_median,
            r.hops_p95,
            r.messages_per_lookup,
            r.max_load_ratio,
            100.0 * r.requester_exposed_rate,
            100.0 * r.success_after_top1pct_removed
        ));
    }
    Ok(ExperimentResult {
        runs,
        files,
        summary,
    })
}
