//! `veil bench`: figures measured on this machine, printed (or `--json`),
//! never asserted: the in-process chain and the modes by default,
//! `--chain` for real node processes, `files` for put and get.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use veil::routing::Anonymity;

use super::args::{parse_delay_range, parse_file_size, parse_max_size};
use super::exe;
use super::output::show;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `veil bench files`: put/get memory and speed on one file.
    #[command(subcommand)]
    pub what: Option<BenchCommand>,
    /// Fetches per distance for the chain's latency figure (with --chain,
    /// 0 skips it).
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// Size of the chain's throughput file in MiB.
    #[arg(long, default_value_t = 16)]
    pub mib: usize,
    /// Skip the chain figures and raw AEAD speed (measure only the modes).
    #[arg(long)]
    pub no_chain: bool,
    /// Only the 6-node chain of real `veil node` processes: get times of
    /// `--sizes` across 3 relays in each of `--modes`, every node's RSS, the
    /// machine's computed limit for that path, and a bare relay chain (only
    /// the path's cryptography) measured in the same run.
    #[arg(long)]
    pub chain: bool,
    /// With --chain: every node delays its link frames by this many ms.
    #[arg(long, default_value_t = 0)]
    pub link_delay_ms: u64,
    /// With --chain: the nodes write their testnet audit logs, as `veil
    /// testnet` nodes do (off by default: a node outside testnet mode
    /// writes none, and the bench measures that node).
    #[arg(long)]
    pub audit_log: bool,
    /// With --chain: each node's `runtime.worker_threads` (0: one per
    /// core). The six nodes and the client share this machine's cores, so
    /// by default each node runs one thread.
    #[arg(long, default_value_t = 1)]
    pub node_threads: usize,
    /// With --chain: after the gets, pass this much data through the chain
    /// (e.g. 1GiB, a 32 MiB file at a time) and check every node's peak RSS
    /// against the default `memory`.
    #[arg(long, value_parser = parse_file_size)]
    pub relay_total: Option<usize>,
    /// Anonymity modes to compare (comma-separated; empty skips them).
    #[arg(long, value_delimiter = ',', default_value = "none,freenet,tunnel")]
    pub modes: Vec<Anonymity>,
    /// File sizes of the per-mode gets (comma-separated, e.g. 1MiB,8MiB).
    #[arg(long, value_delimiter = ',', default_value = "1MiB,8MiB", value_parser = parse_file_size)]
    pub sizes: Vec<usize>,
    /// Gets of each size in each mode (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Blocks in flight per get, as `veil get --concurrency`.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Tunnel mode: the random delay before a reaction (the next level of a
    /// file), as MIN,MAX in ms (default: the node's default).
    #[arg(long, value_parser = parse_delay_range)]
    pub delay_ms: Option<(u64, u64)>,
    /// Tunnel mode: keys each exit searches for at once (default: the
    /// node's default).
    #[arg(long)]
    pub exit_window: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Peak RSS and throughput of `veil put` and `veil get` (child
    /// processes, each reporting its own VmHWM) on one file across one link
    /// between two in-process nodes.
    Files(FilesBenchArgs),
}

#[derive(clap::Args)]
pub struct FilesBenchArgs {
    /// The file's size (e.g. 2GiB, 256MiB).
    #[arg(long, default_value = "2GiB", value_parser = parse_max_size)]
    pub size: u64,
    /// As `veil put --redundancy`.
    #[arg(long, default_value_t = veil::content::DEFAULT_REDUNDANCY,
          value_parser = clap::value_parser!(u16).range(0..=veil::content::MAX_REDUNDANCY as i64))]
    pub redundancy: u16,
    /// As `veil put/get --concurrency`.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Where the file and the nodes go (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Leave the directory in place afterwards.
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub json: bool,
}

impl FilesBenchArgs {
    fn options(&self) -> veil::bench::files::FilesOptions {
        veil::bench::files::FilesOptions {
            size: self.size,
            redundancy: self.redundancy,
            concurrency: self.concurrency,
            dir: self.dir.clone(),
            keep: self.keep,
        }
    }
}

impl BenchArgs {
    /// The per-mode bench's options.
    pub fn modes_options(&self) -> veil::bench::modes::ModesOptions {
        let mut tunnel = veil::routing::TunnelConfig::default();
        if let Some((lo, hi)) = self.delay_ms {
            tunnel.delay_min_ms = lo;
            tunnel.delay_max_ms = hi;
        }
        if let Some(w) = self.exit_window {
            tunnel.exit_window = w.max(1);
        }
        veil::bench::modes::ModesOptions {
            modes: self.modes.clone(),
            sizes: self.sizes.clone(),
            repeats: self.repeats.max(1),
            concurrency: self
                .concurrency
                .clamp(1, veil::client::transfer::MAX_CONCURRENCY),
            tunnel,
        }
    }
}

/// `veil bench`: the chain figures, then the per-mode figures.
pub async fn run(a: BenchArgs) -> Result<ExitCode> {
    let step = |s: &str| eprintln!("  {s}");
    if let Some(BenchCommand::Files(f)) = &a.what {
        let report = veil::bench::files::run(&f.options(), &exe()?, step).await?;
        let json_text = serde_json::to_string_pretty(&report)?;
        show(f.json, json_text, report.render_text());
        return Ok(ExitCode::SUCCESS);
    }
    if a.chain {
        let mut text = String::new();
        let mut reports = Vec::new();
        for mode in &a.modes {
            let opts = veil::bench::chain::ChainOptions {
                exe: exe()?,
                anonymity: *mode,
                link_delay_ms: a.link_delay_ms,
                audit_log: a.audit_log,
                node_threads: a.node_threads,
                sizes: a.sizes.clone(),
                concurrency: a.concurrency,
                latency_samples: a.samples,
                relay_total: a.relay_total.unwrap_or(0) as u64,
            };
            let report = veil::bench::chain::run(&opts, step).await?;
            text.push_str(&report.render_text());
            reports.push(report);
        }
        let output = veil::bench::ChainOutput {
            version: Default::default(),
            runs: reports,
        };
        show(a.json, serde_json::to_string_pretty(&output)?, text);
        return Ok(ExitCode::SUCCESS);
    }
    let chain = match a.no_chain {
        true => None,
        false => Some(veil::bench::inproc::run(a.samples.max(1), a.mib.max(1), step).await?),
    };
    let modes = match a.modes.is_empty() || a.sizes.is_empty() {
        true => None,
        false => Some(veil::bench::modes::run(&a.modes_options(), step).await?),
    };
    let mut text = String::new();
    for part in [
        chain.as_ref().map(|c| c.render_text()),
        modes.as_ref().map(|m| m.render_text()),
    ] {
        text.push_str(&part.unwrap_or_default());
    }
    let output = veil::bench::BenchOutput {
        version: Default::default(),
        chain,
        modes,
    };
    show(a.json, serde_json::to_string_pretty(&output)?, text);
    Ok(ExitCode::SUCCESS)
}
