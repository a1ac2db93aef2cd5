//! The `veil` binary's terminal side: what it accepts on its command line
//! (clap definitions), logging set-up, progress bars and one-line errors.
//! Part of the binary, not the library: `main.rs` acts on these.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use crate::node_arg::{ClientArg, NodeArg};
use clap::{Parser, Subcommand, ValueEnum};

use veil::testnet::run;

use veil::routing::Anonymity;
use veil::sim::topology::Shape;

mod transfer;
pub use transfer::{GatewayArgs, GetArgs, PutArgs, UpdateArgs};

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
        /// Every node's anonymity mode: none (the lecture's trace), freenet
        /// or tunnel.
        #[arg(long, default_value_t = Anonymity::None)]
        anonymity: Anonymity,
    },
    /// Create a node directory: node.toml and identity.key (mode 0600).
    Init(InitArgs),
    /// Print a node's public key and listen address as a [[peers]] entry,
    /// ready to append to a friend's node.toml.
    Id { dir: PathBuf },
    /// Add a friend: to a running node through its client API (which also
    /// writes its node.toml), or to node.toml alone when the node is not
    /// running. `veil add-peer NODE_DIR ADDRESS PUBLIC_KEY` or
    /// `veil add-peer --client SOCKET ADDRESS PUBLIC_KEY`.
    AddPeer(AddPeerArgs),
    /// Drop a friend: from a running node (its link closes) and its
    /// node.toml. `veil remove-peer NODE_DIR PUBLIC_KEY` or
    /// `veil remove-peer --client SOCKET PUBLIC_KEY`.
    RemovePeer(RemovePeerArgs),
    /// Run a node in the foreground until Ctrl-C or SIGTERM.
    Node {
        dir: PathBuf,
        /// Testnet mode (audit logs, placement command) regardless of node.toml.
        #[arg(long)]
        testnet: bool,
    },
    /// Insert a file; prints its URI on stdout (with --usk: the site's new
    /// edition, USK@<public>,<crypto key>/<site>/<edition>).
    Put(PutArgs),
    /// Make a signed-key pair: prints the insert URI (SSK@<private>,<crypto
    /// key>/, keep it secret) and the request URI (SSK@<public>,<crypto key>/).
    Keygen,
    /// Insert the next edition of a site: `veil put --usk URI PATH` without
    /// --edition.
    Update(UpdateArgs),
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
        /// Pool the observations of this many random nodes (chosen with --seed).
        #[arg(long)]
        colluders: Option<usize>,
        /// Seeds the colluders' choice, the train/test split and the bootstrap.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// FAIL when a signal bin's upper bound on P(originator) exceeds this.
        #[arg(long, default_value_t = 0.5)]
        max_posterior: f64,
        /// FAIL when the combined adversary's cross-validated AUC exceeds this.
        #[arg(long, default_value_t = 0.65)]
        max_auc: f64,
    },
    /// Measure per-hop latency and get throughput over a 5-node loopback
    /// chain, raw ChaCha20-Poly1305 speed, and the time of the same gets in
    /// each anonymity mode over one 8-node network.
    Bench(BenchArgs),
    /// Simulate a system at scale on a virtual clock, or run an experiment.
    Sim(SimArgs),
    /// Serve the browser gateway: browse, insert and status pages on
    /// localhost, through the node's client API.
    Gateway(GatewayArgs),
    /// Show a node's peers, store usage and counters.
    Status {
        #[command(flatten)]
        node: NodeArg,
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
        /// Mean degree (clamped into the bounds below when they are given).
        #[arg(long, default_value_t = 4)]
        degree: usize,
        #[arg(long, value_enum, default_value_t = Shape::SmallWorld)]
        shape: Shape,
        /// With --shape random: every node has at least this many neighbours
        /// (default 1 when only --max-degree is given).
        #[arg(long)]
        min_degree: Option<usize>,
        /// With --shape random: every node has at most this many neighbours
        /// (default n-1 when only --min-degree is given).
        #[arg(long)]
        max_degree: Option<usize>,
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
        /// Written into every node's node.toml: tunnel, freenet or none.
        #[arg(long, default_value_t = Anonymity::Tunnel)]
        anonymity: Anonymity,
    },
    /// Stop a testnet started elsewhere.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Bring a testnet up, run its scenario or a random workload, bring it
    /// down, and audit the logs.
    Run(RunArgs),
}

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
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Tunnel mode: the random delay before each batch, as MIN,MAX in ms
    /// (default: the node's default).
    #[arg(long, value_parser = parse_delay_range)]
    pub batch_delay_ms: Option<(u64, u64)>,
    /// Tunnel mode: keys outstanding in a tunnel (default: the node's default).
    #[arg(long)]
    pub window: Option<usize>,
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
    #[arg(long, default_value_t = 128)]
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

impl BenchArgs {
    /// The per-mode bench's options.
    pub fn modes_options(&self) -> veil::testnet::bench_modes::ModesOptions {
        let mut tunnel = veil::routing::TunnelConfig::default();
        if let Some((lo, hi)) = self.batch_delay_ms {
            tunnel.batch_delay_min_ms = lo;
            tunnel.batch_delay_max_ms = hi;
        }
        if let Some(w) = self.window {
            tunnel.window = w.max(1);
        }
        veil::testnet::bench_modes::ModesOptions {
            modes: self.modes.clone(),
            sizes: self.sizes.clone(),
            repeats: self.repeats.max(1),
            concurrency: self.concurrency.clamp(1, 128),
            tunnel,
        }
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    pub dir: PathBuf,
    /// Address for peer links.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Serve the client API on this TCP address (clients then need the
    /// cookie file NODE_DIR/client.cookie) instead of the default Unix
    /// socket NODE_DIR/client.sock.
    #[arg(long)]
    pub client: Option<SocketAddr>,
    /// Location in [0, 1); derived from the public key when absent.
    #[arg(long)]
    pub location: Option<f64>,
}

#[derive(clap::Args)]
pub struct AddPeerArgs {
    /// NODE_DIR (absent with --client).
    #[arg(value_name = "NODE_DIR")]
    pub first: Option<String>,
    /// The friend's listen address.
    #[arg(value_name = "ADDRESS", allow_hyphen_values = true)]
    pub second: Option<String>,
    /// The friend's public key (from `veil id`). Keys may start with '-'.
    #[arg(value_name = "PUBLIC_KEY", allow_hyphen_values = true)]
    pub third: Option<String>,
    #[command(flatten)]
    pub client: ClientArg,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(clap::Args)]
pub struct RemovePeerArgs {
    /// NODE_DIR (absent with --client).
    #[arg(value_name = "NODE_DIR")]
    pub first: Option<String>,
    /// The friend's public key. Keys may start with '-'.
    #[arg(value_name = "PUBLIC_KEY", allow_hyphen_values = true)]
    pub second: Option<String>,
    #[command(flatten)]
    pub client: ClientArg,
}

/// `veil get --max-size`: a byte count, at most the format's 1 TiB.
pub(crate) fn parse_max_size(text: &str) -> Result<u64, String> {
    let bytes = veil::store::parse_size(text).map_err(|e| e.to_string())?;
    if bytes > veil::content::MAX_FILE_LEN {
        return Err(format!(
            "at most {} bytes (1 TiB)",
            veil::content::MAX_FILE_LEN
        ));
    }
    Ok(bytes)
}

/// A workload file size: at least one byte, at most what fits in memory.
/// `MIN,MAX` milliseconds, MIN <= MAX.
fn parse_delay_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?} is not MIN,MAX in milliseconds (e.g. 20,250)");
    let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi.trim().parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(format!("MIN {lo} is above MAX {hi}"));
    }
    Ok((lo, hi))
}

fn parse_file_size(text: &str) -> Result<usize, String> {
    let bytes = veil::store::parse_size(text).map_err(|e| e.to_string())?;
    match usize::try_from(bytes) {
        Ok(0) => Err("the file size must be at least 1 byte".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{bytes} bytes is too large")),
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (typed errors often show their source already).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn progress(total: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}}{unit} {{elapsed}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Testnet progress on stderr: a bar while links come up, then lines.
pub fn progress_printer() -> run::ProgressFn {
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Arc::new(move |p| {
        let mut bar = bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match p {
            run::Progress::Links { up, total } => bar
                .get_or_insert_with(|| progress(total as u64, "links up", ""))
                .set_position(up as u64),
            run::Progress::Note(line) | run::Progress::Step(line) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let indent = if matches!(p, run::Progress::Step(_)) {
                    "  "
                } else {
                    ""
                };
                eprintln!("{indent}{line}");
            }
        }
    })
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub topology: PathBuf,
    #[arg(long)]
    pub dir: PathBuf,
    /// Random files to insert (ignored when the topology has a scenario).
    #[arg(long, default_value_t = 10)]
    pub files: usize,
    /// Size of each file: bytes, or with a unit such as 1MiB.
    #[arg(long = "file-size", alias = "size", default_value = "100000", value_parser = parse_file_size)]
    pub file_size: usize,
    /// Fetches of each file, from other random nodes.
    #[arg(long, default_value_t = 3)]
    pub fetches: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Every node's anonymity mode (written into its node.toml): tunnel,
    /// freenet or none.
    #[arg(long, default_value_t = Anonymity::Tunnel)]
    pub anonymity: Anonymity,
    /// Print the results and the audit as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also exit non-zero when the anonymity verdict is FAIL (by default
    /// only failed fetches and invariant violations do).
    #[arg(long)]
    pub strict_anonymity: bool,
    /// Start the nodes at the topology's locations shuffled among them
    /// (seeded by --seed).
    #[arg(long)]
    pub random_locations: bool,
    /// Location swapping check: measure hops, let every node swap for SECS
    /// seconds (swap = true), measure again (instead of the workload; use
    /// with --random-locations and --anonymity none).
    #[arg(long, value_name = "SECS")]
    pub swap: Option<u64>,
    /// With --swap: mean time between one node's swap attempts.
    #[arg(long, default_value_t = 300)]
    pub swap_interval_ms: u64,
    /// With --swap: blocks placed and fetched before and after.
    #[arg(long, default_value_t = 200)]
    pub swap_fetches: usize,
    /// Reed-Solomon check blocks per 100 data blocks of each file (0 turns
    /// FEC off).
    #[arg(long, default_value_t = veil::content::DEFAULT_REDUNDANCY,
          value_parser = clap::value_parser!(u16).range(0..=veil::content::MAX_REDUNDANCY as i64))]
    pub redundancy: u16,
    /// Every node's router.replicate_htl: relays that accept an insert at
    /// this HTL or below store it too (0: only the sink stores).
    #[arg(long, default_value_t = veil::routing::DEFAULT_REPLICATE_HTL)]
    pub replicate_htl: u8,
    /// Nodes keep no cache (cache_size = 0): relays hold no copy of what
    /// passes through, so only the sink and the replicas hold a block.
    #[arg(long)]
    pub no_cache: bool,
    /// After the inserts, SIGKILL this fraction of the nodes that fetch
    /// nothing, for good.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub kill: f64,
    /// During the fetches, SIGKILL this fraction of the nodes that fetch
    /// nothing and restart each after a seeded lognormal session length
    /// (Roos et al. 2014, scaled by --churn-scale).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub churn: f64,
    /// Milliseconds of the testnet per minute of a measured session length.
    #[arg(long, default_value_t = veil::testnet::failures::DEFAULT_MS_PER_MINUTE)]
    pub churn_scale: u64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a fraction in [0, 1]")),
    }
}

impl RunArgs {
    /// The library's options for this run, every node running `exe`.
    pub fn options(self, exe: PathBuf) -> run::RunOptions {
        run::RunOptions {
            topology: self.topology,
            dir: self.dir,
            files: self.files,
            size: self.file_size,
            fetches: self.fetches,
            seed: self.seed,
            anonymity: self.anonymity,
            exe,
            random_locations: self.random_locations,
            swap: self.swap.map(|secs| veil::testnet::swap::SwapRun {
                secs,
                interval_ms: self.swap_interval_ms,
                fetches: self.swap_fetches,
            }),
            redundancy: self.redundancy,
            storing: run::Storing {
                replicate_htl: self.replicate_htl,
                cache: !self.no_cache,
            },
            failures: veil::testnet::failures::Failures {
                kill: self.kill,
                churn: self.churn,
                ms_per_minute: self.churn_scale,
            },
        }
    }
}

/// `veil sim`: one run (`--system`) or one experiment (`--experiment`).
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["system", "experiment"]))]
pub struct SimArgs {
    /// freenet (veil's router) or a lecture baseline.
    #[arg(long)]
    pub system: Option<String>,
    /// scaling, failure, swap, baselines or anonymity.
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
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where an experiment writes its CSV, JSON and SVG.
    #[arg(long, default_value = veil::sim::experiments::DEFAULT_OUT)]
    pub out: PathBuf,
}

impl SimArgs {
    /// Run it; the text (or JSON) to print on stdout.
    pub fn run(self) -> anyhow::Result<String> {
        let progress = std::io::stderr().is_terminal();
        if let Some(name) = self.experiment {
            let opts = veil::sim::experiments::ExperimentOptions {
                out: self.out,
                seed: self.seed,
                progress,
                requests: self.requests,
                nodes: self.nodes,
            };
            let result = veil::sim::experiments::run(&name, &opts)?;
            let files: Vec<String> = result
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            return Ok(format!("{}wrote {}\n", result.summary, files.join(", ")));
        }
        let opts = veil::sim::runner::SimOptions {
            system: self.system.unwrap_or_default(),
            anonymity: self.anonymity,
            topology: self.topology,
            nodes: self.nodes.unwrap_or(1000),
            degree: self.degree,
            htl: self.htl,
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
        };
        let report = veil::sim::runner::run(&opts)?;
        Ok(if self.json {
            serde_json::to_string(&report)? + "\n"
        } else {
            report.render_text()
        })
    }
}
