//! The `veil` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use veil::harness::run_scenario;
use veil::topology::Topology;

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "An anonymous Freenet-style forwarding overlay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a topology's [scenario] in the in-process deterministic harness and
    /// print every routing message in the order sent.
    Trace {
        /// Topology file (TOML) with a [scenario] section.
        file: PathBuf,
        /// Seed for the harness's random source (request IDs).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Trace { file, seed } => trace(&file, seed),
    }
}

fn trace(file: &PathBuf, seed: u64) -> Result<ExitCode> {
    let topology = Topology::load(file).with_context(|| format!("loading {}", file.display()))?;
    let run = run_scenario(&topology, seed)
        .with_context(|| format!("{} has no [scenario] section", file.display()))?;
    for line in &run.lines {
        println!("{line}");
    }
    println!("outcome: {}", if run.found { "found" } else { "not found" });
    Ok(ExitCode::SUCCESS)
}
