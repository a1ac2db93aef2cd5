//! `veil trace FILE`: a topology's [scenario] in the deterministic
//! in-process harness, every routing message in the order sent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use veil::routing::Anonymity;
use veil::sim::harness::run_scenario_in;
use veil::sim::topology::Topology;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// Topology file (TOML) with a [scenario] section.
    file: PathBuf,
    /// Seed for the harness's random source (request IDs).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every node's anonymity mode: none (the lecture's trace), freenet
    /// or tunnel.
    #[arg(long, default_value_t = Anonymity::None)]
    anonymity: Anonymity,
}

pub fn run(a: TraceArgs) -> Result<ExitCode> {
    if a.anonymity == Anonymity::Tunnel {
        bail!(
            "veil trace follows one request's uid; in tunnel mode the originator sends no \
             request of its own (its keys go to an exit in batches), so there is no path to \
             trace: use --anonymity none or freenet (tunnels run in `veil testnet run`)"
        );
    }
    let file = &a.file;
    let topology = Topology::load(file).with_context(|| format!("loading {}", file.display()))?;
    let run = run_scenario_in(&topology, a.seed, a.anonymity)
        .with_context(|| format!("{} has no [scenario] section", file.display()))?;
    print!("{}", run.render_text());
    Ok(ExitCode::SUCCESS)
}
