//! The `veil` command line: parse arguments ([`cli`]), call the library,
//! print.

mod cli;
mod files_bench;
mod node_arg;
mod peer_cli;
mod put_get;
mod usk_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use veil::client::Client;
use veil::config::{NodeConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::Identity;
use veil::routing::Anonymity;
use veil::sim::harness::run_scenario_in;
use veil::sim::topology::Topology;
use veil::testnet::{run, Stopped};

use cli::{init_logging, one_line, progress_printer, Cli, Command, InitArgs, TestnetCommand};

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
    if matches!(cli.command, Command::Put(_) | Command::Get(_)) {
        few_malloc_arenas();
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {}", one_line(&e));
            ExitCode::from(2)
        }
    };
    if std::env::var_os(files_bench::PEAK_RSS_ENV).is_some() {
        files_bench::report_own_peak_rss();
    }
    code
}

/// Put and get pass 32 KiB blocks between runtime workers and blocking
/// threads (file I/O, Reed-Solomon); glibc gives each thread its own arena,
/// and freed blocks stranded in a dozen arenas doubled `veil get`'s peak
/// RSS (85 MiB against 43 MiB with two arenas, `veil bench files --size
/// 64MiB`). Two arenas cost these commands nothing measurable.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A node's runtime: `runtime.worker_threads` threads (0: one per core).
fn node_runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .context("starting the node's async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Trace {
            file,
            seed,
            anonymity,
        } => trace(&file, seed, anonymity),
        Command::Init(a) => init(a),
        Command::Id { dir } => id(&dir),
        Command::AddPeer(a) => runtime()?.block_on(peer_cli::add_peer(a)),
        Command::RemovePeer(a) => runtime()?.block_on(peer_cli::remove_peer(a)),
        Command::Node { dir, testnet } => {
            let mut setup = veil::node::NodeSetup::load(&dir)?;
            setup.config.testnet |= testnet;
            node_runtime(setup.config.runtime.worker_threads)?.block_on(node(setup))
        }
        Command::Put(a) => runtime()?.block_on(put_get::put(a)),
        Command::Keygen => usk_cmd::keygen(),
        Command::Update(a) => runtime()?.block_on(put_get::put(usk_cmd::update_args(a)?)),
        Command::Get(a) => runtime()?.block_on(put_get::get(a)),
        Command::Gateway(a) => runtime()?.block_on(gateway(a)),
        Command::Status { node, json } => runtime()?.block_on(status(node.endpoint()?, json)),
        Command::Testnet(cmd) => testnet(cmd),
        Command::Bench(a) => runtime()?.block_on(bench(a)),
        Command::Sim(a) => a
            .run()
            .map(|text| print!("{text}"))
            .map(|()| ExitCode::SUCCESS),
        Command::Audit {
            dir,
            json,
            trace,
            colluders,
            seed,
            max_posterior,
            max_auc,
        } => {
            let options = veil::audit::AuditOptions {
                colluders,
                seed,
                max_posterior,
                max_auc,
            };
            audit(&dir, json, trace.as_deref(), &options)
        }
    }
}

fn trace(file: &Path, seed: u64, anonymity: Anonymity) -> Result<ExitCode> {
    if anonymity == Anonymity::Tunnel {
        bail!(
            "veil trace follows one request's uid; in tunnel mode the originator sends no \
             request of its own (its keys go to an exit in batches), so there is no path to \
             trace: use --anonymity none or freenet (tunnels run in `veil testnet run`)"
        );
    }
    let topology = Topology::load(file).with_context(|| format!("loading {}", file.display()))?;
    let run = run_scenario_in(&topology, seed, anonymity)
        .with_context(|| format!("{} has no [scenario] section", file.display()))?;
    print!("{}", run.render_text());
    Ok(ExitCode::SUCCESS)
}

fn init(a: InitArgs) -> Result<ExitCode> {
    let (dir, listen, client) = (a.dir.as_path(), a.listen, a.client);
    if dir.join(CONFIG_FILE).exists() {
        bail!(
            "{}: already exists; refusing to overwrite",
            dir.join(CONFIG_FILE).display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = NodeConfig::new(listen, client, a.location);
    let client = veil::client::Endpoint::of_config(dir, client);
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
    println!("[[peers]]");
    println!("public_key = \"{}\"", identity.public());
    println!("address = \"{}\"", config.listen);
    Ok(ExitCode::SUCCESS)
}

async fn node(setup: veil::node::NodeSetup) -> Result<ExitCode> {
    let grace_ms = setup.config.runtime.shutdown_grace_ms;
    let running = match veil::node::start(setup).await {
        // The testnet tells this failure from others by the exit status.
        Err(e @ veil::node::NodeError::Bind { .. }) => {
            eprintln!("veil: {}", one_line(&e.into()));
            return Ok(ExitCode::from(veil::testnet::EXIT_CANNOT_LISTEN));
        }
        started => started?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.leave(Duration::from_millis(grace_ms)).await;
    Ok(ExitCode::SUCCESS)
}

/// `veil bench`: the chain figures, then the per-mode figures.
async fn bench(a: cli::BenchArgs) -> Result<ExitCode> {
    let step = |s: &str| eprintln!("  {s}");
    if let Some(cli::BenchCommand::Files(f)) = &a.what {
        let report = files_bench::run(f, &exe()?, step).await?;
        let json_text = serde_json::to_string_pretty(&report)?;
        show(f.json, json_text, report.render_text());
        return Ok(ExitCode::SUCCESS);
    }
    if a.chain {
        let mut text = String::new();
        let mut reports = Vec::new();
        for mode in &a.modes {
            let opts = veil::testnet::bench_chain::ChainOptions {
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
            let report = veil::testnet::bench_chain::run(&opts, step).await?;
            text.push_str(&report.render_text());
            reports.push(report);
        }
        show(a.json, serde_json::to_string_pretty(&reports)?, text);
        return Ok(ExitCode::SUCCESS);
    }
    let chain = match a.no_chain {
        true => None,
        false => Some(veil::testnet::bench::run(a.samples.max(1), a.mib.max(1), step).await?),
    };
    let modes = match a.modes.is_empty() || a.sizes.is_empty() {
        true => None,
        false => Some(veil::testnet::bench_modes::run(&a.modes_options(), step).await?),
    };
    let json_text = serde_json::to_string_pretty(&serde_json::json!({
        "chain": chain,
        "modes": modes,
    }))?;
    let mut text = String::new();
    for part in [
        chain.map(|c| c.render_text()),
        modes.map(|m| m.render_text()),
    ] {
        text.push_str(&part.unwrap_or_default());
    }
    show(a.json, json_text, text);
    Ok(ExitCode::SUCCESS)
}

async fn gateway(a: cli::GatewayArgs) -> Result<ExitCode> {
    // The listen address is checked first: it needs no node.
    if !a.public && !a.listen.ip().is_loopback() {
        return Err(veil::gateway::GatewayError::NotLoopback(a.listen).into());
    }
    let node = a.node.endpoint()?;
    let mut config = veil::gateway::GatewayConfig::new(node.clone(), a.listen);
    config.public = a.public;
    config.max_size = a.max_size;
    let listener = veil::gateway::bind(&config).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    eprintln!(
        "gateway on http://{} (node {}); Ctrl-C stops it",
        listener.local_addr()?,
        node
    );
    let server = tokio::spawn(veil::gateway::serve(listener, config, stopped));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let _ = stop.send(true);
    server.await.context("the gateway task")??;
    Ok(ExitCode::SUCCESS)
}

async fn status(node: veil::client::Endpoint, json: bool) -> Result<ExitCode> {
    let status = Client::connect(&node, Duration::from_secs(10))
        .await?
        .status()
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status.render_text());
    Ok(ExitCode::SUCCESS)
}

fn testnet(cmd: TestnetCommand) -> Result<ExitCode> {
    match cmd {
        TestnetCommand::Gen {
            nodes,
            degree,
            shape,
            min_degree,
            max_degree,
            seed,
            output,
        } => {
            use veil::sim::topology::{generate, generate_bounded, DegreeBounds, Shape};
            let topology = match (min_degree, max_degree) {
                (None, None) => generate(nodes, degree, shape, seed)?,
                _ if shape != Shape::Random => {
                    bail!("--min-degree and --max-degree apply only to --shape random")
                }
                (min, max) => {
                    let bounds = DegreeBounds {
                        min: min.unwrap_or(1),
                        max: max.unwrap_or(nodes.saturating_sub(1)),
                    };
                    generate_bounded(nodes, degree, bounds, seed)?
                }
            };
            // The command that made the file, as its first line.
            let mut made_by = format!("# made by: veil testnet gen --nodes {nodes}");
            if let Some(v) = clap::ValueEnum::to_possible_value(&shape) {
                made_by.push_str(&format!(" --shape {}", v.get_name()));
            }
            made_by.push_str(&format!(" --degree {degree}"));
            for (flag, value) in [("min", min_degree), ("max", max_degree)] {
                if let Some(v) = value {
                    made_by.push_str(&format!(" --{flag}-degree {v}"));
                }
            }
            let text = format!("{made_by} --seed {seed}\n{}", topology.to_toml());
            let Some(path) = output else {
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            };
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            let (n, e) = (topology.nodes.len(), topology.edges.len());
            let degrees: Vec<usize> = topology.adjacency().iter().map(Vec::len).collect();
            let (lo, hi) = (degrees.iter().min(), degrees.iter().max());
            eprintln!(
                "wrote {} ({n} nodes, {e} edges, degrees {}..{})",
                path.display(),
                lo.unwrap_or(&0),
                hi.unwrap_or(&0)
            );
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Down { dir } => {
            let n = veil::testnet::down(&dir)?;
            eprintln!("stopped {n} node(s)");
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Up {
            topology,
            dir,
            anonymity,
        } => runtime()?.block_on(async {
            let topology = run::load_topology(&topology)?;
            let progress = progress_printer();
            let mut net = run::start(&topology, &dir, exe()?, anonymity, None, &progress).await?;
            print!("{}", net.table_text().await);
            let dir = net.dir.display().to_string();
            eprintln!("testnet up; Ctrl-C stops it (or `veil testnet down --dir {dir}`)");
            match net.wait_until_stopped().await? {
                Stopped::NodesExited => eprintln!("every node has exited (testnet down?); leaving"),
                Stopped::Signal => eprintln!("stopping {} nodes", net.info.nodes.len()),
            }
            net.stop();
            Ok(ExitCode::SUCCESS)
        }),
        TestnetCommand::Run(a) => runtime()?.block_on(async {
            let (json, strict) = (a.json, a.strict_anonymity);
            let report = run::run(a.options(exe()?), &progress_printer()).await?;
            show(json, report.to_json(), report.render_text());
            Ok(exit_code(
                report.ok && (!strict || report.audit.anonymity.passed()),
            ))
        }),
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("finding the veil binary")
}

/// Success, or the failure status (1) of a report that found problems.
fn exit_code(ok: bool) -> ExitCode {
    ExitCode::from(u8::from(!ok))
}

fn audit(
    dir: &Path,
    json: bool,
    trace: Option<&str>,
    options: &veil::audit::AuditOptions,
) -> Result<ExitCode> {
    if let Some(uid) = trace {
        for line in veil::audit::trace_uid(dir, uid)? {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = veil::audit::audit_dir_with(dir, options)?;
    show(json, report.to_json(), report.render_text());
    Ok(exit_code(
        report.violation_count() == 0 && report.anonymity.passed(),
    ))
}

/// Print a report as JSON or as text.
fn show(json: bool, json_text: String, text: String) {
    if json {
        println!("{json_text}");
    } else {
        print!("{text}");
    }
}
