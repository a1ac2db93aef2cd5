//! The `veil` command line: one file per command, each reading top to
//! bottom: its arguments, a call into the library, what it prints.
//!
//! ```text
//! mod.rs       the command list and the dispatch
//! args.rs      arguments several commands share (--node, --client, sizes)
//! output.rs    logging, progress bars, one-line errors, text or JSON
//! editions.rs  the edition cache file of `put --usk`, `update`, `get`
//! trace.rs init.rs id.rs peer.rs node.rs put.rs update.rs keygen.rs
//! get.rs gateway.rs status.rs testnet.rs audit.rs bench.rs sim.rs
//! ```

mod args;
mod audit;
mod bench;
mod editions;
mod gateway;
mod get;
mod id;
mod init;
mod keygen;
mod node;
mod output;
mod peer;
mod put;
mod sim;
mod status;
mod testnet;
mod trace;
mod update;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

pub use output::{init_logging, one_line, LogFormat};

/// Set in a child's environment: `veil` then prints its own peak RSS on
/// stderr as it exits (`veil bench files` reads it).
pub use veil::bench::files::{report_own_peak_rss, PEAK_RSS_ENV};

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "An anonymous Freenet-style forwarding overlay"
)]
pub struct Cli {
    /// Log format on stderr (level from RUST_LOG; default info for `node`, warn otherwise).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a topology's [scenario] in the in-process deterministic harness and
    /// print every routing message in the order sent.
    Trace(trace::TraceArgs),
    /// Create a node directory: node.toml and identity.key (mode 0600).
    Init(init::InitArgs),
    /// Print a node's public key and listen address as a [[peers]] entry,
    /// ready to append to a friend's node.toml.
    Id(id::IdArgs),
    /// Add a friend: to a running node through its client API (which also
    /// writes its node.toml), or to node.toml alone when the node is not
    /// running. `veil add-peer NODE_DIR ADDRESS PUBLIC_KEY` or
    /// `veil add-peer --client SOCKET ADDRESS PUBLIC_KEY`.
    AddPeer(peer::AddPeerArgs),
    /// Drop a friend: from a running node (its link closes) and its
    /// node.toml. `veil remove-peer NODE_DIR PUBLIC_KEY` or
    /// `veil remove-peer --client SOCKET PUBLIC_KEY`.
    RemovePeer(peer::RemovePeerArgs),
    /// Run a node in the foreground until Ctrl-C or SIGTERM.
    Node(node::NodeArgs),
    /// Insert a file; prints its URI on stdout (with --usk: the site's new
    /// edition, USK@<public>,<crypto key>/<site>/<edition>).
    Put(put::PutArgs),
    /// Make a signed-key pair: prints the insert URI (SSK@<private>,<crypto
    /// key>/, keep it secret) and the request URI (SSK@<public>,<crypto key>/).
    Keygen,
    /// Insert the next edition of a site: `veil put --usk URI PATH` without
    /// --edition.
    Update(update::UpdateArgs),
    /// Fetch a file by URI.
    Get(get::GetArgs),
    /// Local testnets: generate topologies, bring networks up and down, run workloads.
    #[command(subcommand)]
    Testnet(testnet::TestnetCommand),
    /// Read a testnet's audit logs: traffic, invariants, anonymity.
    Audit(audit::AuditArgs),
    /// Measure per-hop latency and get throughput over a 5-node loopback
    /// chain, raw ChaCha20-Poly1305 speed, and the time of the same gets in
    /// each anonymity mode over one 8-node network.
    Bench(bench::BenchArgs),
    /// Simulate a system at scale on a virtual clock, or run an experiment.
    Sim(sim::SimArgs),
    /// Serve the browser gateway: browse, insert and status pages on
    /// localhost, through the node's client API.
    Gateway(gateway::GatewayArgs),
    /// Show a node's peers, store usage and counters.
    Status(status::StatusArgs),
}

impl Command {
    /// A node logs its life at info; every other command only warns, so
    /// its own output stays readable.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Node(_) => "info",
            _ => "warn",
        }
    }

    /// Put and get move many blocks between threads (see [`few_malloc_arenas`]).
    pub fn moves_files(&self) -> bool {
        matches!(self, Command::Put(_) | Command::Get(_))
    }
}

/// Run one command.
pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Trace(a) => trace::run(a),
        Command::Init(a) => init::run(a),
        Command::Id(a) => id::run(a),
        Command::AddPeer(a) => runtime()?.block_on(peer::add(a)),
        Command::RemovePeer(a) => runtime()?.block_on(peer::remove(a)),
        Command::Node(a) => node::run(a),
        Command::Put(a) => runtime()?.block_on(put::run(a)),
        Command::Keygen => keygen::run(),
        Command::Update(a) => runtime()?.block_on(update::run(a)),
        Command::Get(a) => runtime()?.block_on(get::run(a)),
        Command::Gateway(a) => runtime()?.block_on(gateway::run(a)),
        Command::Status(a) => runtime()?.block_on(status::run(a)),
        Command::Testnet(a) => testnet::run(a),
        Command::Bench(a) => runtime()?.block_on(bench::run(a)),
        Command::Sim(a) => sim::run(a),
        Command::Audit(a) => audit::run(a),
    }
}

/// The runtime of every command but `node` (see [`node::run`]).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The running `veil` binary, which testnets and benches start as nodes.
fn exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("finding the veil binary")
}

/// Put and get pass 32 KiB blocks between runtime workers and blocking
/// threads (file I/O, Reed-Solomon); glibc gives each thread its own arena,
/// and freed blocks stranded in a dozen arenas doubled `veil get`'s peak
/// RSS (85 MiB against 43 MiB with two arenas, `veil bench files --size
/// 64MiB`). Two arenas cost these commands nothing measurable.
pub fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
