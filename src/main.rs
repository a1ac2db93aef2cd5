//! The `veil` command line: parse arguments ([`cli`]), call the library,
//! print.

mod cli;
mod files_bench;
mod node_arg;
mod peer_cli;
mod usk_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use veil::client::Client;
use veil::config::{NodeConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::Identity;
use veil::keys::Chk;
use veil::routing::Anonymity;
use veil::sim::harness::run_scenario_in;
use veil::sim::topology::Topology;
use veil::testnet::{run, Stopped};

use cli::{
    init_logging, one_line, progress, progress_printer, Cli, Command, GetArgs, InitArgs, PutArgs,
    TestnetCommand,
};

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
        Command::Node { dir, testnet } => runtime()?.block_on(node(&dir, testnet)),
        Command::Put(a) => runtime()?.block_on(put(a)),
        Command::Keygen => usk_cmd::keygen(),
        Command::Update(a) => runtime()?.block_on(put(usk_cmd::update_args(a)?)),
        Command::Get(a) => runtime()?.block_on(get(a)),
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

async fn node(dir: &Path, testnet: bool) -> Result<ExitCode> {
    let mut setup = veil::node::NodeSetup::load(dir)?;
    setup.config.testnet |= testnet;
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

async fn put(a: PutArgs) -> Result<ExitCode> {
    let node = a.node.endpoint()?;
    let site = a.usk.as_deref().map(usk_cmd::parse_insert).transpose()?;
    let file = a.file.as_path();
    let stdin = file == Path::new("-");
    let name = if stdin {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    let (input, len) = if stdin {
        tokio::task::spawn_blocking(spool_stdin)
            .await
            .context("reading stdin")??
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading {name}"))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading {name}"))?
            .len();
        (f, len)
    };
    let bar = progress(0, "inserting", " blocks");
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "inserting [{bar:30}] {pos}/{len} blocks, {msg} {elapsed}",
    ) {
        bar.set_style(style);
    }
    let started = std::time::Instant::now();
    let shown = bar.clone();
    let split = veil::content::SplitOptions {
        redundancy: a.redundancy,
        ..Default::default()
    };
    let input = std::io::BufReader::with_capacity(1 << 16, input);
    let put = veil::transfer::put_stream(&node, input, len, a.concurrency, &split, move |p| {
        shown.set_length(p.blocks_total);
        shown.set_position(p.blocks_done);
        shown.set_message(format!("segment {}/{}", p.segments_done, p.segments_total));
    })
    .await;
    let blocks = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    let uri = put.with_context(|| format!("inserting {name}"))?;
    eprintln!(
        "inserted {name} ({len} bytes, {blocks} blocks, {}% redundancy) in {:.1?}",
        a.redundancy,
        started.elapsed()
    );
    if let Some(site) = site {
        let cache = usk_cmd::cache_path(a.usk_cache);
        let usk = usk_cmd::publish(&node, &site, a.edition, &uri, cache.as_deref()).await?;
        println!("{usk}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", uri.to_uri());
    Ok(ExitCode::SUCCESS)
}

/// Copy stdin to an unlinked temporary file: the layout balances segments
/// over the whole file, so its length must be known before the first
/// segment is cut. Memory stays bounded; the disk holds one copy.
fn spool_stdin() -> Result<(std::fs::File, u64)> {
    use std::io::Seek;
    let path = std::env::temp_dir().join(format!(
        "veil-put-stdin-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Gone from the directory at once; the open file lives until we close it.
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    let len = std::io::copy(&mut std::io::stdin().lock(), &mut f).context("reading stdin")?;
    f.rewind().context("rewinding the spooled stdin")?;
    Ok((f, len))
}

async fn get(a: GetArgs) -> Result<ExitCode> {
    let node = a.node.endpoint()?;
    let cache = usk_cmd::cache_path(a.usk_cache.clone());
    let chk: Chk = usk_cmd::resolve(&node, &a.uri, cache.as_deref()).await?;
    let started = std::time::Instant::now();
    let opts = veil::content::FetchOptions {
        max_len: a.max_size,
        retries: a.retries,
        ..veil::transfer::get_options(a.concurrency)
    };
    let bar = progress(0, "fetching", " blocks");
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "fetching [{bar:30}] {pos}/{len} blocks, {msg} {elapsed}",
    ) {
        bar.set_style(style);
    }
    let shown = bar.clone();
    let on_progress = move |p: veil::content::Progress| {
        shown.set_length(p.blocks_known);
        shown.set_position(p.blocks_done);
        shown.set_message(format!(
            "segment {}/{}, {} retries",
            p.segments_done, p.segments_total, p.retries
        ));
    };
    let to_stdout = a.output.as_deref().is_none_or(|p| p == Path::new("-"));
    let len = match a.output.as_deref() {
        Some(path) if !to_stdout => {
            let part = veil::content::part_path(path);
            let fetched = veil::transfer::get_to_path(&node, &chk, &opts, path, on_progress).await;
            bar.finish_and_clear();
            let fetched = match fetched {
                Ok(f) => f,
                Err(e) if part.exists() => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "fetching the file (the part fetched so far is kept in {}; run the same \
                         command again to resume)",
                        part.display()
                    )))
                }
                Err(e) => return Err(anyhow::Error::new(e).context("fetching the file")),
            };
            if fetched.segments_resumed > 0 {
                eprintln!(
                    "resumed: {} segments ({} bytes) were already in {} and verified",
                    fetched.segments_resumed,
                    fetched.bytes_resumed,
                    part.display()
                );
            }
            fetched.len
        }
        _ => {
            // Streamed in order as segments arrive. Every block is checked
            // against its key before it is written; the whole-file hash
            // can only be checked at the end, and a failure then is an
            // error exit after the bytes went out.
            let mut out = tokio::io::stdout();
            let fetched =
                veil::transfer::get_to_writer(&node, &chk, &opts, &mut out, on_progress).await;
            bar.finish_and_clear();
            fetched.context("fetching the file")?
        }
    };
    bar.finish_and_clear();
    eprintln!("fetched {len} bytes in {:.1?}", started.elapsed());
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
