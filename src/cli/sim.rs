//! `veil sim`: one system simulated at scale on a virtual clock
//! (`--system`), or one experiment with its plot (`--experiment`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use veil::routing::Anonymity;

/// `veil sim`: one run (`--system`) or one experiment (`--experiment`).
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["system", "experiment"]))]
pub struct SimArgs {
    /// freenet (veil's router) or a lecture baseline.
    #[arg(long)]
    pub system: Option<String>,
    /// scaling, failure, swap, baselines, anonymity or predecessor.
    #[arg(long, conflicts_with = "system")]
    pub experiment: Option<String>,
    /// The freenet system's anonymity mode: none, freenet or tunnel.
    #[arg(long, default_value_t = Anonymity::None)]
    pub anonymity: Anonymity,
    /// kleinberg, ring, random, swap, or a topology file.
    #[arg(long, default_value = "kleinberg")]
    pub topology: String,
    /// Nodes (default 1000; for an experiment, its own default).
    #[arg(long)]
    pub nodes: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub degree: usize,
    /// Hops-to-live of veil's requests.
    #[arg(long, default_value_t = veil::routing::DEFAULT_MAX_HTL)]
    pub htl: u8,
    /// How veil's searches rank candidates: none (greedy by each
    /// neighbour's location) or foaf (also by its neighbours' locations).
    /// Default none; foaf for a one-size `--experiment swap`.
    #[arg(long)]
    pub lookahead: Option<veil::routing::Lookahead>,
    /// What a hop costs veil's requests: hop (one HTL each) or progress
    /// (nothing while it brings the request closer to its key). Default
    /// hop; progress for a one-size `--experiment swap`.
    #[arg(long)]
    pub htl_rule: Option<veil::routing::HtlRule>,
    /// Flooding TTL of the baselines that flood.
    #[arg(long, default_value_t = 7)]
    pub ttl: u32,
    /// Keys inserted, then looked up (default 1000; for an experiment, the
    /// lookups per run, default 2000; for `anonymity`, the fetches in all).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Fraction of nodes removed before the lookups (see --fail-mode).
    #[arg(long, default_value_t = 0.0)]
    pub fail: f64,
    /// Which nodes --fail removes: random, or loaded (the most loaded in a
    /// warm-up of the same workload first).
    #[arg(long, default_value = "random")]
    pub fail_mode: veil::sim::runner::FailMode,
    /// Churn: spread the lookups over MINUTES of session time while nodes
    /// leave and rejoin (0: none; `--churn` alone: 60).
    #[arg(long, value_name = "MINUTES", default_value_t = 0.0,
          num_args = 0..=1, default_missing_value = "60")]
    pub churn: f64,
    /// Churn session lengths: log-normal MU,SIGMA of minutes (default: Roos
    /// et al. 2014's fit to Freenet, median 97 min).
    #[arg(long, value_name = "MU,SIGMA", default_value = "4.5774,1.8235")]
    pub session: veil::sim::churn::LogNormalMinutes,
    /// Churn downtimes between sessions: log-normal MU,SIGMA of minutes.
    #[arg(long, value_name = "MU,SIGMA", default_value = "4.5774,1.8235")]
    pub downtime: veil::sim::churn::LogNormalMinutes,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Link latency: fixed:MS, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA.
    #[arg(long, default_value = "lognormal:40,0.5")]
    pub latency: veil::sim::engine::Latency,
    /// Rounds of swapping of a one-size `--experiment swap` run (default
    /// 200; 30 s of swap messages each).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Print one JSON object (for `--experiment swap` with `--nodes` or
    /// `--rounds`, and `--experiment pitch-black` with `--attackers`: end
    /// with one JSON line).
    #[arg(long)]
    pub json: bool,
    /// How nodes find their locations: tree (a spanning-tree embedding,
    /// the default of a one-size `--experiment swap` run) or swap
    /// (location swapping, the default of `--experiment pitch-black`).
    #[arg(long)]
    pub embedding: Option<veil::sim::swap::Embedding>,
    /// Fraction of nodes that swap dishonestly (`--experiment
    /// pitch-black`; without it, 0.001, 0.01 and 0.05).
    #[arg(long, value_name = "FRACTION")]
    pub attackers: Option<f64>,
    /// Honest nodes do not refuse crowded locations (`--experiment
    /// pitch-black` with `--attackers`).
    #[arg(long)]
    pub no_defence: bool,
    /// Blocks each `freenet` node holds at most (store and cache, the
    /// oldest dropped first); unbounded by default.
    #[arg(long, value_name = "BLOCKS")]
    pub store_blocks: Option<usize>,
    /// Where an experiment writes its CSV, JSON and SVG.
    #[arg(long, default_value = veil::sim::experiments::DEFAULT_OUT)]
    pub out: PathBuf,
}

impl SimArgs {
    /// Run it; the text (or JSON) to print on stdout.
    pub fn run(self) -> anyhow::Result<String> {
        let progress = std::io::stderr().is_terminal();
        if let Some(name) = self.experiment {
            use veil::routing::{HtlRule, Lookahead};
            // A one-size swap run measures self-organisation at scale with
            // the routing that scales (docs/sim.md).
            let one_size_swap = name == "swap" && (self.nodes.is_some() || self.rounds.is_some());
            let opts = veil::sim::experiments::ExperimentOptions {
                out: self.out,
                seed: self.seed,
                progress,
                requests: self.requests,
                nodes: self.nodes,
                rounds: self.rounds,
                lookahead: self.lookahead.unwrap_or(if one_size_swap {
                    Lookahead::Foaf
                } else {
                    Lookahead::None
                }),
                htl_rule: self.htl_rule.unwrap_or(if one_size_swap {
                    HtlRule::Progress
                } else {
                    HtlRule::Hop
                }),
                embedding: self.embedding.unwrap_or(match name.as_str() {
                    "pitch-black" => veil::sim::swap::Embedding::Swap,
                    _ => veil::sim::swap::Embedding::Tree,
                }),
                churn: veil::sim::churn::ChurnSpec {
                    minutes: self.churn,
                    session: self.session,
                    downtime: self.downtime,
                },
                json: self.json,
                attackers: self.attackers,
                defence: !self.no_defence,
            };
            let json = opts.json;
            let result = veil::sim::experiments::run(&name, &opts)?;
            let files: Vec<String> = result
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let wrote = format!("wrote {}\n", files.join(", "));
            if json {
                // The summary ends with the JSON line scripts read.
                eprint!("{wrote}");
                return Ok(result.summary);
            }
            return Ok(format!("{}{wrote}", result.summary));
        }
        let opts = veil::sim::runner::SimOptions {
            system: self.system.unwrap_or_default(),
            anonymity: self.anonymity,
            topology: self.topology,
            nodes: self.nodes.unwrap_or(1000),
            degree: self.degree,
            htl: self.htl,
            lookahead: self.lookahead.unwrap_or_default(),
            htl_rule: self.htl_rule.unwrap_or_default(),
            ttl: self.ttl,
            requests: self.requests.unwrap_or(1000),
            fail: self.fail,
            fail_mode: self.fail_mode,
            churn: veil::sim::churn::ChurnSpec {
                minutes: self.churn,
                session: self.session,
                downtime: self.downtime,
            },
            seed: self.seed,
            latency: self.latency,
            progress,
            store_blocks: self.store_blocks,
        };
        let report = veil::sim::runner::run(&opts)?;
        Ok(if self.json {
            let output = veil::sim::runner::SimOutput {
                version: Default::default(),
                report,
            };
            serde_json::to_string(&output)? + "\n"
        } else {
            report.render_text()
        })
    }
}

pub fn run(a: SimArgs) -> Result<ExitCode> {
    print!("{}", a.run()?);
    Ok(ExitCode::SUCCESS)
}
