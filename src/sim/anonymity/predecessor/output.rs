//! The predecessor experiment's outputs: `predecessor.{json,csv,svg}`, the
//! terminal table, and the `veil sim --experiment predecessor` driver.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    rows, run_trials, PredecessorOptions, PredecessorRow, DEFAULT_DOWNLOADS, DEFAULT_NODES,
};
use crate::sim::experiments::{bar, ExperimentOptions, ExperimentResult};
use crate::sim::graphs;
use crate::sim::plot::{self, Panel, Series};
use crate::sim::runner::SimError;

fn label(r: &PredecessorRow) -> String {
    format!(
        "{:.0}%, {}{}",
        r.fraction * 100.0,
        r.linking.name(),
        if r.guard { ", guard" } else { "" }
    )
}

/// Write `predecessor.{json,csv,svg}` under `out`.
pub fn write(out: &Path, rows: &[PredecessorRow]) -> Result<Vec<PathBuf>, SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let json_path = out.join("predecessor.json");
    let json = serde_json::to_string_pretty(rows).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|e| io(&json_path, e))?;
    let csv_path = out.join("predecessor.csv");
    let mut csv = String::from(
        "nodes,guard,fraction,colluders,linking,trials,downloads,tunnels_per_download,sampled,\
         sampled_originator,colluding_friend,first_hop_colluded,exposed,median_to_exposure,median_when_exposed\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{:.3},{:.4},{:.4},{},{},{},{},{}\n",
            r.nodes,
            r.guard,
            r.fraction,
            r.colluders,
            r.linking.name(),
            r.trials,
            r.downloads,
            r.tunnels_per_download,
            r.sampled,
            r.sampled_originator,
            r.colluding_friend,
            r.first_hop_colluded,
            r.exposed,
            r.median_to_exposure
                .map_or_else(String::new, |m| m.to_string()),
            r.median_when_exposed
                .map_or_else(String::new, |m| m.to_string()),
        ));
    }
    std::fs::write(&csv_path, csv).map_err(|e| io(&csv_path, e))?;
    let posterior = rows
        .iter()
        .map(|r| Series {
            name: label(r),
            points: r
                .posterior_median
                .iter()
                .enumerate()
                .map(|(d, &p)| ((d + 1) as f64, p))
                .collect(),
            dashed: false,
        })
        .collect();
    let exposed = rows
        .iter()
        .map(|r| Series {
            name: label(r),
            points: (1..=r.downloads)
                .map(|d| {
                    let k = r.to_exposure.iter().flatten().filter(|&&e| e <= d).count();
                    (d as f64, k as f64 / r.trials.max(1) as f64)
                })
                .collect(),
            dashed: false,
        })
        .collect();
    let panels = [
        Panel {
            title: "posterior of the originator (median over originators)",
            x_label: "downloads (one tunnel each)",
            y_label: "P(originator)",
            log_x: false,
            series: posterior,
        },
        Panel {
            title: "originators exposed (ranked first, P >= 0.9)",
            x_label: "downloads (one tunnel each)",
            y_label: "share of originators",
            log_x: false,
            series: exposed,
        },
    ];
    let svg_path = out.join("predecessor.svg");
    plot::draw(&svg_path, &panels)?;
    Ok(vec![json_path, csv_path, svg_path])
}

/// The rows as a table for the terminal.
pub fn render(rows: &[PredecessorRow]) -> String {
    let mut out = format!(
        "{:>6} {:>9} {:>7} {:>10} {:>10} {:>11} {:>16} {:>18} {:>8} {:>22} {:>13}\n",
        "guard",
        "colluders",
        "linking",
        "tunnels/dl",
        "sampled/dl",
        "pred = orig",
        "colluding friend",
        "first hop colludes",
        "exposed",
        "median dl to exposure",
        "when exposed"
    );
    for r in rows {
        out.push_str(&format!(
            "{:>6} {:>9} {:>7} {:>10.2} {:>10.3} {:>11.3} {:>16} {:>18} {:>8} {:>22} {:>13}\n",
            if r.guard { "yes" } else { "no" },
            format!("{:.0}%", r.fraction * 100.0),
            r.linking.name(),
            r.tunnels_per_download,
            r.sampled,
            r.sampled_originator,
            format!("{}/{}", r.colluding_friend, r.trials),
            format!("{}/{}", r.first_hop_colluded, r.trials),
            format!("{}/{}", r.exposed, r.trials),
            r.median_to_exposure
                .map_or_else(|| format!("> {}", r.downloads), |m| m.to_string()),
            r.median_when_exposed
                .map_or_else(|| "-".to_string(), |m| m.to_string()),
        ));
    }
    out
}

/// `veil sim --experiment predecessor`.
pub fn experiment(eopts: &ExperimentOptions) -> Result<ExperimentResult, SimError> {
    let opts = PredecessorOptions {
        nodes: eopts.nodes.unwrap_or(DEFAULT_NODES),
        downloads: eopts.requests.unwrap_or(DEFAULT_DOWNLOADS),
        seed: eopts.seed,
        ..PredecessorOptions::default()
    };
    std::fs::create_dir_all(&eopts.out)
        .map_err(|e| SimError::Io(eopts.out.display().to_string(), e))?;
    let progress = bar(eopts, 2, "predecessor");
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let graph = graphs::kleinberg(opts.nodes, opts.degree, &mut rng);
    let mut rows_all = Vec::new();
    for guard in [false, true] {
        let trials = run_trials(&opts, &graph, guard)?;
        rows_all.extend(rows(&opts, &graph, guard, &trials));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let rows = rows_all;
    let files = write(&eopts.out, &rows)?;
    let summary = format!(
        "predecessor: {} nodes (Kleinberg, degree {}), {} originators x {} downloads, \
         one tunnel each, without and with guards, seed {}, {:.1} s\n{}",
        opts.nodes,
        opts.degree,
        opts.trials,
        opts.downloads,
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
