//! The `veil` command line: parse arguments ([`cli`]), call the library,
//! print.

mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use veil::client::Client;
use veil::config::{NodeConfig, PeerConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::Identity;
use veil::routing::Anonymity;
use veil::sim::harness::run_scenario_in;
use veil::sim::topology::Topology;
use veil::testnet::{run, Stopped};

use cli::{
    init_logging, one_line, progress, progress_printer, AddPeerArgs, Cli, Command, GetArgs,
    InitArgs, PutArgs, TestnetCommand,
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {}", one_line(&e));
            ExitCode::from(2)
        }
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
        Command::AddPeer(a) => add_peer(a),
        Command::Node { dir, testnet } => runtime()?.block_on(node(&dir, testnet)),
        Command::Put(a) => runtime()?.block_on(put(a)),
        Command::Get(a) => runtime()?.block_on(get(a)),
        Command::Gateway(a) => runtime()?.block_on(gateway(a)),
        Command::Status { node, json } => runtime()?.block_on(status(node, json)),
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

fn add_peer(a: AddPeerArgs) -> Result<ExitCode> {
    let (dir, public_key) = (a.dir.as_path(), a.public_key);
    let mut config = NodeConfig::load(dir)?;
    if config.peers.iter().any(|p| p.public_key == public_key) {
        bail!(
            "{}: a peer with key {public_key} is already configured",
            dir.join(CONFIG_FILE).display()
        );
    }
    let (address, name) = (a.address, a.name);
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
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn put(a: PutArgs) -> Result<ExitCode> {
    if let Some(dir) = a.dir.as_deref() {
        return put_dir(a.node, dir, a.concurrency, a.redundancy).await;
    }
    let Some(file) = a.file.as_deref() else {
        bail!("give a FILE or --dir DIR");
    };
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bar = progress(0, "inserting", " blocks");
    let started = std::time::Instant::now();
    let progress_bar = bar.clone();
    let split = veil::content::SplitOptions {
        redundancy: a.redundancy,
        ..Default::default()
    };
    let uri =
        veil::transfer::put_file_with(a.node, &data, a.concurrency, &split, move |done, total| {
            progress_bar.set_length(total as u64);
            progress_bar.set_position(done as u64);
        })
        .await
        .with_context(|| format!("inserting {}", file.display()))?;
    let blocks = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    eprintln!(
        "inserted {} ({} bytes, {} blocks, {}% redundancy) in {:.1?}",
        file.display(),
        data.len(),
        blocks,
        a.redundancy,
        started.elapsed()
    );
    println!("{}", uri.to_uri());
    Ok(ExitCode::SUCCESS)
}

async fn put_dir(
    node: SocketAddr,
    dir: &Path,
    concurrency: usize,
    redundancy: u16,
) -> Result<ExitCode> {
    let split = veil::content::SplitOptions {
        redundancy,
        ..Default::default()
    };
    let bar = progress(0, "inserting", " files");
    let started = std::time::Instant::now();
    let shown = bar.clone();
    let (uri, directory) =
        veil::freesite::put_dir(node, dir, concurrency, &split, move |done, total, _| {
            shown.set_length(total as u64);
            shown.set_position(done as u64);
        })
        .await
        .with_context(|| format!("inserting {}", dir.display()))?;
    bar.finish_and_clear();
    let bytes: u64 = directory.entries().iter().map(|e| e.length).sum();
    eprintln!(
        "inserted {} ({} files, {bytes} bytes) in {:.1?}",
        dir.display(),
        directory.entries().len(),
        started.elapsed()
    );
    println!("{}", uri.to_uri());
    Ok(ExitCode::SUCCESS)
}

async fn get(a: GetArgs) -> Result<ExitCode> {
    use veil::freesite::{Address, Resolved};
    let addr: Address = a.uri.parse().context("invalid URI")?;
    let opts = veil::content::FetchOptions {
        max_len: a.max_size,
        retries: a.retries,
        ..veil::transfer::get_options(a.concurrency)
    };
    let resolved = veil::freesite::resolve(a.node, &addr, &opts)
        .await
        .context("fetching")?;
    let chk = match resolved {
        Resolved::File {
            bytes: Some(data), ..
        } => {
            match a.output.as_deref() {
                Some(path) => std::fs::write(path, &data)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout()
                    .lock()
                    .write_all(&data)
                    .context("writing to stdout")?,
            }
            eprintln!("fetched {} bytes", data.len());
            return Ok(ExitCode::SUCCESS);
        }
        Resolved::File { uri, .. } => uri,
        Resolved::Folder { dir, folder } => {
            let Some(out) = a.output.as_deref() else {
                for e in dir
                    .entries()
                    .iter()
                    .filter(|e| folder.is_empty() || e.path.starts_with(&format!("{folder}/")))
                {
                    println!("{}\t{}\t{}", e.path, e.mime, e.length);
                }
                return Ok(ExitCode::SUCCESS);
            };
            let bar = progress(0, "fetching", " files");
            let shown = bar.clone();
            let bytes =
                veil::freesite::get_tree(a.node, &dir, &folder, out, &opts, move |d, t, _| {
                    shown.set_length(t as u64);
                    shown.set_position(d as u64);
                })
                .await
                .context("fetching the directory")?;
            bar.finish_and_clear();
            eprintln!("fetched {bytes} bytes into {}", out.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let started = std::time::Instant::now();
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
    let len = match a.output.as_deref() {
        Some(path) => {
            // Write beside the target, then rename: no partial file is ever
            // left under the final name.
            let tmp = path.with_extension("veil-partial");
            let written = async {
                let mut f = tokio::fs::File::create(&tmp)
                    .await
                    .with_context(|| format!("writing {}", tmp.display()))?;
                let len = veil::transfer::get_to_writer(a.node, &chk, &opts, &mut f, on_progress)
                    .await
                    .context("fetching the file")?;
                f.sync_all()
                    .await
                    .with_context(|| format!("writing {}", tmp.display()))?;
                drop(f);
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("writing {}", path.display()))?;
                anyhow::Ok(len)
            };
            match written.await {
                Ok(len) => len,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    bar.finish_and_clear();
                    return Err(e);
                }
            }
        }
        None => {
            // Held until it verifies: stdout cannot take back a bad file.
            let mut data = Vec::new();
            let fetched =
                veil::transfer::get_to_writer(a.node, &chk, &opts, &mut data, on_progress).await;
            bar.finish_and_clear();
            fetched.context("fetching the file")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&data).context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
            data.len() as u64
        }
    };
    bar.finish_and_clear();
    eprintln!("fetched {len} bytes in {:.1?}", started.elapsed());
    Ok(ExitCode::SUCCESS)
}

/// `veil bench`: the chain figures, then the per-mode figures.
async fn bench(a: cli::BenchArgs) -> Result<ExitCode> {
    let step = |s: &str| eprintln!("  {s}");
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
    let mut config = veil::gateway::GatewayConfig::new(a.node, a.listen);
    config.public = a.public;
    config.max_size = a.max_size;
    let listener = veil::gateway::bind(&config).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    eprintln!(
        "gateway on http://{} (node {}); Ctrl-C stops it",
        listener.local_addr()?,
        a.node
    );
    let server = tokio::spawn(veil::gateway::serve(listener, config, stopped));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let _ = stop.send(true);
    server.await.context("the gateway task")??;
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
            let mut net = run::start(&topology, &dir, exe()?, anonymity, &progress).await?;
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
