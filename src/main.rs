//! The `veil` command line.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use veil::client::Client;
use veil::config::{NodeConfig, PeerConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::{Identity, PeerKey};
use veil::keys::Chk;
use veil::sim::harness::run_scenario;
use veil::sim::topology::Topology;

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "An anonymous Freenet-style forwarding overlay"
)]
struct Cli {
    /// Log format on stderr (level from RUST_LOG; default info for `node`, warn otherwise).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Create a node directory: node.toml and identity.key (mode 0600).
    Init {
        dir: PathBuf,
        /// Address for peer links.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
        /// Address of the local client API.
        #[arg(long, default_value = "127.0.0.1:8400")]
        client: SocketAddr,
        /// Location in [0, 1); derived from the public key when absent.
        #[arg(long)]
        location: Option<f64>,
    },
    /// Print a node's public key and listen address, ready to paste into a
    /// friend's node.toml as a [[peers]] entry.
    Id { dir: PathBuf },
    /// Add a friend to a node's node.toml.
    AddPeer {
        dir: PathBuf,
        /// The friend's listen address.
        address: SocketAddr,
        /// The friend's public key (from `veil id`). Keys may start with '-'.
        #[arg(allow_hyphen_values = true)]
        public_key: PeerKey,
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a node in the foreground until Ctrl-C or SIGTERM.
    Node {
        dir: PathBuf,
        /// Testnet mode (audit logs, placement command) regardless of node.toml.
        #[arg(long)]
        testnet: bool,
    },
    /// Insert a file; prints its URI on stdout.
    Put {
        /// The node's client API address.
        #[arg(long, default_value = "127.0.0.1:8400")]
        node: SocketAddr,
        file: PathBuf,
        /// Blocks inserted at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Fetch a file by URI.
    Get {
        #[arg(long, default_value = "127.0.0.1:8400")]
        node: SocketAddr,
        uri: String,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Blocks fetched at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
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
enum TestnetCommand {
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

use veil::sim::topology::Shape;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node logs its life at info; every other command only warns, so its
    // own output stays readable.
    let default_level = if matches!(cli.command, Command::Node { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (typed errors often show their source already).
fn one_line(e: &anyhow::Error) -> String {
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

fn init_logging(format: LogFormat, default_level: &str) {
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Trace { file, seed } => trace(&file, seed),
        Command::Init {
            dir,
            listen,
            client,
            location,
        } => init(&dir, listen, client, location),
        Command::Id { dir } => id(&dir),
        Command::AddPeer {
            dir,
            address,
            public_key,
            name,
        } => add_peer(&dir, address, public_key, name),
        Command::Node { dir, testnet } => runtime()?.block_on(node(&dir, testnet)),
        Command::Put {
            node,
            file,
            concurrency,
        } => runtime()?.block_on(put(node, &file, concurrency)),
        Command::Get {
            node,
            uri,
            output,
            concurrency,
        } => runtime()?.block_on(get(node, &uri, output.as_deref(), concurrency)),
        Command::Status { node, json } => runtime()?.block_on(status(node, json)),
        Command::Testnet(cmd) => testnet(cmd),
        Command::Bench { samples, mib, json } => runtime()?.block_on(async {
            let report =
                veil::testnet::bench::run(samples.max(1), mib.max(1), |s| eprintln!("  {s}"))
                    .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_text());
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Audit { dir, json, trace } => audit(&dir, json, trace.as_deref()),
    }
}

fn trace(file: &Path, seed: u64) -> Result<ExitCode> {
    let topology = Topology::load(file).with_context(|| format!("loading {}", file.display()))?;
    let run = run_scenario(&topology, seed)
        .with_context(|| format!("{} has no [scenario] section", file.display()))?;
    for line in &run.lines {
        println!("{line}");
    }
    println!("outcome: {}", if run.found { "found" } else { "not found" });
    Ok(ExitCode::SUCCESS)
}

fn init(
    dir: &Path,
    listen: SocketAddr,
    client: SocketAddr,
    location: Option<f64>,
) -> Result<ExitCode> {
    if dir.join(CONFIG_FILE).exists() {
        bail!(
            "{}: already exists; refusing to overwrite",
            dir.join(CONFIG_FILE).display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = NodeConfig::new(listen, client, location);
    config.validate().map_err(anyhow::Error::msg)?;
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    identity
        .save(dir.join(IDENTITY_FILE))
        .with_context(|| format!("writing {}", dir.join(IDENTITY_FILE).display()))?;
    config.save(dir)?;
    println!("{}", identity.public());
    eprintln!(
        "created {} (listen {listen}, client {client}); add friends with `veil add-peer`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn id(dir: &Path) -> Result<ExitCode> {
    let config = NodeConfig::load(dir)?;
    let identity = Identity::load(dir.join(IDENTITY_FILE))
        .with_context(|| format!("reading {}", dir.join(IDENTITY_FILE).display()))?;
    println!("public_key = \"{}\"", identity.public());
    println!("address = \"{}\"", config.listen);
    Ok(ExitCode::SUCCESS)
}

fn add_peer(
    dir: &Path,
    address: SocketAddr,
    public_key: PeerKey,
    name: Option<String>,
) -> Result<ExitCode> {
    let mut config = NodeConfig::load(dir)?;
    if config.peers.iter().any(|p| p.public_key == public_key) {
        bail!(
            "{}: a peer with key {public_key} is already configured",
            dir.join(CONFIG_FILE).display()
        );
    }
    config.peers.push(PeerConfig {
        address,
        public_key,
        name,
    });
    config.save(dir)?;
    Ok(ExitCode::SUCCESS)
}

async fn node(dir: &Path, testnet: bool) -> Result<ExitCode> {
    let mut setup = veil::node::NodeSetup::load(dir)?;
    setup.config.testnet |= testnet;
    let running = veil::node::start(setup).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} blocks {{elapsed}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

async fn put(node: SocketAddr, file: &Path, concurrency: usize) -> Result<ExitCode> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bar = progress(0, "inserting");
    let started = std::time::Instant::now();
    let progress_bar = bar.clone();
    let uri = veil::transfer::put_file(node, &data, concurrency, move |done, total| {
        progress_bar.set_length(total as u64);
        progress_bar.set_position(done as u64);
    })
    .await
    .with_context(|| format!("inserting {}", file.display()))?;
    let blocks = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    eprintln!(
        "inserted {} ({} bytes, {} blocks) in {:.1?}",
        file.display(),
        data.len(),
        blocks,
        started.elapsed()
    );
    println!("{}", uri.to_uri());
    Ok(ExitCode::SUCCESS)
}

async fn get(
    node: SocketAddr,
    uri: &str,
    output: Option<&Path>,
    concurrency: usize,
) -> Result<ExitCode> {
    let chk: Chk = uri.parse().context("invalid URI")?;
    let started = std::time::Instant::now();
    let data = veil::transfer::get_file(node, &chk, concurrency)
        .await
        .context("fetching the file")?;
    match output {
        Some(path) => {
            // Write beside the target, then rename: no partial file is ever
            // left under the final name.
            let tmp = path.with_extension("veil-partial");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("writing {}", path.display()));
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data).context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
        }
    }
    eprintln!("fetched {} bytes in {:.1?}", data.len(), started.elapsed());
    Ok(ExitCode::SUCCESS)
}

async fn status(node: SocketAddr, json: bool) -> Result<ExitCode> {
    let status = Client::connect(node, Duration::from_secs(10))
        .await?
        .status()
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "node      {} (location {:.6})",
        status.public_key, status.location
    );
    println!(
        "listen    {}{}",
        status.listen,
        if status.testnet { "  [testnet]" } else { "" }
    );
    let up = status.peers.iter().filter(|p| p.connected).count();
    println!("peers     {up}/{} connected", status.peers.len());
    for p in &status.peers {
        println!(
            "  {} {:<8} {} {}",
            if p.connected { "up  " } else { "down" },
            p.name.as_deref().unwrap_or("-"),
            p.address,
            p.public_key
        );
    }
    println!(
        "store     {} blocks, {} / {} bytes",
        status.store_blocks, status.store_bytes, status.store_limit
    );
    println!(
        "cache     {} blocks, {} / {} bytes",
        status.cache_blocks, status.cache_bytes, status.cache_limit
    );
    println!(
        "requests  {} received, {} originated, {} answered from store, {} loops rejected, {} overloads sent, {} timeouts, {} in flight",
        status.requests_received,
        status.requests_originated,
        status.answered_from_store,
        status.loops_rejected,
        status.overloads_sent,
        status.timeouts,
        status.pending
    );
    Ok(ExitCode::SUCCESS)
}

fn testnet(cmd: TestnetCommand) -> Result<ExitCode> {
    match cmd {
        TestnetCommand::Gen {
            nodes,
            degree,
            shape,
            seed,
            output,
        } => {
            let topology = veil::sim::topology::generate(nodes, degree, shape, seed)?;
            let text = topology.to_toml();
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote {} ({} nodes, {} edges)",
                        path.display(),
                        topology.nodes.len(),
                        topology.edges.len()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Down { dir } => {
            let dir = absolute(&dir)?;
            let n = veil::testnet::down(&dir)?;
            eprintln!("stopped {n} node(s)");
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Up { topology, dir } => runtime()?.block_on(async {
            let topo = load_topology(&topology)?;
            let dir = absolute(&dir)?;
            let mut net = bring_up(&topo, &dir).await?;
            print_table(&net).await;
            eprintln!(
                "testnet up; Ctrl-C stops it (or `veil testnet down --dir {}`)",
                dir.display()
            );
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let all_gone = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if net.all_exited() {
                        return;
                    }
                }
            };
            let stopped_elsewhere = tokio::select! {
                _ = tokio::signal::ctrl_c() => false,
                _ = term.recv() => false,
                _ = all_gone => true,
            };
            if stopped_elsewhere {
                eprintln!("every node has exited (testnet down?); leaving");
            } else {
                eprintln!("stopping {} nodes", net.info.nodes.len());
            }
            net.stop();
            Ok(ExitCode::SUCCESS)
        }),
        TestnetCommand::Run {
            topology,
            dir,
            files,
            size,
            fetches,
            seed,
            json,
        } => runtime()?.block_on(testnet_run(
            &topology, &dir, files, size, fetches, seed, json,
        )),
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}

fn load_topology(path: &Path) -> Result<Topology> {
    Topology::load(path).with_context(|| format!("loading {}", path.display()))
}

async fn bring_up(topology: &Topology, dir: &Path) -> Result<veil::testnet::Testnet> {
    let exe = std::env::current_exe().context("finding the veil binary")?;
    let max_htl = topology
        .scenario
        .as_ref()
        .map(|s| s.htl)
        .unwrap_or(veil::routing::DEFAULT_MAX_HTL);
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(topology.edges.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("links up [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    eprintln!(
        "starting {} nodes, {} links in {}",
        topology.nodes.len(),
        topology.edges.len(),
        dir.display()
    );
    let progress_bar = bar.clone();
    let opts = veil::testnet::UpOptions {
        exe,
        max_htl,
        ready_timeout: Duration::from_secs(60),
        on_progress: Box::new(move |up, _| progress_bar.set_position(up as u64)),
    };
    let started = std::time::Instant::now();
    let net = veil::testnet::up(topology, dir, opts).await?;
    bar.finish_and_clear();
    eprintln!(
        "all {} links up in {:.1?}",
        topology.edges.len(),
        started.elapsed()
    );
    Ok(net)
}

async fn print_table(net: &veil::testnet::Testnet) {
    println!("{:<10} {:<22} peers up", "node", "client");
    for (name, client, up, total) in net.table().await {
        println!("{name:<10} {client:<22} {up}/{total}");
    }
}

async fn testnet_run(
    topology_path: &Path,
    dir: &Path,
    files: usize,
    size: usize,
    fetches: usize,
    seed: u64,
    json: bool,
) -> Result<ExitCode> {
    let topology = load_topology(topology_path)?;
    let dir = absolute(dir)?;
    let started = std::time::Instant::now();
    let mut net = bring_up(&topology, &dir).await?;
    let mut failed = false;
    let mut result_json = serde_json::Map::new();
    if topology.scenario.is_some() {
        let scenario = veil::testnet::workload::run_scenario(&topology, &net).await;
        net.stop();
        let scenario = scenario?;
        let uid = scenario
            .uid
            .clone()
            .context("the requester's origin log has no entry for the request")?;
        let lines = veil::audit::trace_uid(&dir, &uid)?;
        if !json {
            for line in &lines {
                println!("{line}");
            }
            println!(
                "outcome: {}",
                if scenario.found { "found" } else { "not found" }
            );
        }
        result_json.insert("trace".into(), serde_json::json!(lines));
        result_json.insert("scenario".into(), serde_json::to_value(&scenario)?);
    } else {
        eprintln!(
            "workload: {files} files of {size} bytes, each fetched from {fetches} other nodes"
        );
        let workload = veil::testnet::workload::run_files(
            &net,
            files,
            size,
            fetches,
            seed,
            veil::routing::DEFAULT_MAX_HTL,
            |line| eprintln!("  {line}"),
        )
        .await;
        net.stop();
        let workload = workload?;
        failed |= !workload.all_ok();
        if !json {
            let inserted = workload.files.iter().filter(|f| f.inserted).count();
            println!(
                "workload: {inserted}/{} files inserted, {}/{} fetches verified byte for byte",
                workload.files.len(),
                workload.verified(),
                workload.fetches.len()
            );
            for f in workload.fetches.iter().filter(|f| !f.verified) {
                println!(
                    "  FAILED fetch of file {} at {}: {}",
                    f.file,
                    f.node,
                    f.error.as_deref().unwrap_or("?")
                );
            }
        }
        result_json.insert("workload".into(), serde_json::to_value(&workload)?);
    }
    let report = veil::audit::audit_dir(&dir)?;
    failed |= report.violation_count() > 0;
    if json {
        result_json.insert("audit".into(), serde_json::to_value(&report)?);
        result_json.insert("ok".into(), serde_json::json!(!failed));
        println!("{}", serde_json::to_string_pretty(&result_json)?);
    } else {
        println!();
        print!("{}", report.render_text());
        println!();
        println!(
            "testnet run {} in {:.1?} ({} nodes; logs in {})",
            if failed { "FAILED" } else { "passed" },
            started.elapsed(),
            topology.nodes.len(),
            dir.display()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn audit(dir: &Path, json: bool, trace: Option<&str>) -> Result<ExitCode> {
    if let Some(uid) = trace {
        for line in veil::audit::trace_uid(dir, uid)? {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = veil::audit::audit_dir(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.violation_count() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
