//! What the `veil` binary accepts on its command line (clap definitions).
//! Part of the binary, not the library: `main.rs` acts on these.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use veil::identity::PeerKey;
use veil::sim::topology::Shape;

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

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a topology's [scenario] in the in-process deterministic harness and
    /// print every routing message in the order sent.
    Trace {
        /// Topology file (TOML) with a [scenario] section.
        file: PathBuf,
        /// Seed for the harness's random source (request IDs).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Create a node directory: node.toml and identity.key (mode 0600).
    Init(InitArgs),
    /// Print a node's public key and listen address, ready to paste into a
    /// friend's node.toml as a [[peers]] entry.
    Id { dir: PathBuf },
    /// Add a friend to a node's node.toml.
    AddPeer(AddPeerArgs),
    /// Run a node in the foreground until Ctrl-C or SIGTERM.
    Node {
        dir: PathBuf,
        /// Testnet mode (audit logs, placement command) regardless of node.toml.
        #[arg(long)]
        testnet: bool,
    },
    /// Insert a file; prints its URI on stdout.
    Put(PutArgs),
    /// Fetch a file by URI.
    Get(GetArgs),
    /// Local testnets: generate topologies, bring networks up and down, run workloads.
    #[command(subcommand)]
    Testnet(TestnetCommand),
    /// Read a testnet's audit logs: traffic, invariants, anonymity.
    Audit {
        dir: PathBuf,
        /// Print everything as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print one request's path (uid as 16 hex digits) in the trace format.
        #[arg(long)]
        trace: Option<String>,
    },
    /// Measure per-hop latency and get throughput over a 5-node loopback
    /// chain, and raw ChaCha20-Poly1305 speed.
    Bench {
        /// Fetches per distance for the latency figure.
        #[arg(long, default_value_t = 50)]
        samples: usize,
        /// Size of the throughput file in MiB.
        #[arg(long, default_value_t = 16)]
        mib: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show a node's peers, store usage and counters.
    Status {
        #[arg(long, default_value = "127.0.0.1:8400")]
        node: SocketAddr,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TestnetCommand {
    /// Write a new topology file.
    Gen {
        #[arg(long)]
        nodes: usize,
        #[arg(long, default_value_t = 4)]
        degree: usize,
        #[arg(long, value_enum, default_value_t = Shape::SmallWorld)]
        shape: Shape,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Start one node process per topology node and stay until Ctrl-C.
    Up {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop a testnet started elsewhere.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Bring a testnet up, run its scenario or a random workload, bring it
    /// down, and audit the logs.
    Run {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        /// Random files to insert (ignored when the topology has a scenario).
        #[arg(long, default_value_t = 10)]
        files: usize,
        /// Size of each file in bytes.
        #[arg(long, default_value_t = 100_000)]
        size: usize,
        /// Fetches of each file, from other random nodes.
        #[arg(long, default_value_t = 3)]
        fetches: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the results and the audit as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct InitArgs {
    pub dir: PathBuf,
    /// Address for peer links.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Address of the local client API.
    #[arg(long, default_value = "127.0.0.1:8400")]
    pub client: SocketAddr,
    /// Location in [0, 1); derived from the public key when absent.
    #[arg(long)]
    pub location: Option<f64>,
}

#[derive(clap::Args)]
pub struct AddPeerArgs {
    pub dir: PathBuf,
    /// The friend's listen address.
    pub address: SocketAddr,
    /// The friend's public key (from `veil id`). Keys may start with '-'.
    #[arg(allow_hyphen_values = true)]
    pub public_key: PeerKey,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// The node's client API address.
    #[arg(long, default_value = "127.0.0.1:8400")]
    pub node: SocketAddr,
    pub file: PathBuf,
    /// Blocks inserted at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(clap::Args)]
pub struct GetArgs {
    #[arg(long, default_value = "127.0.0.1:8400")]
    pub node: SocketAddr,
    pub uri: String,
    /// Output file (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Blocks fetched at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}
