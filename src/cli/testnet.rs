//! `veil testnet gen|up|down|run`: topologies, real node processes on
//! loopback, a workload, and the audit of what every node observed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use veil::routing::{Anonymity, HtlRule, InsertEnd, Lookahead};
use veil::sim::topology::Shape;
use veil::testnet::net::{Bandwidth, NetTopology};
use veil::testnet::{run, NetnsOptions, Stopped};

use super::args::{parse_file_size, parse_fraction};
use super::output::{exit_code, progress_printer, show};
use super::{exe, runtime};

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
        /// Written into every node's node.toml as router.lookahead.
        #[arg(long, default_value_t = Lookahead::default())]
        lookahead: Lookahead,
        /// Written into every node's node.toml as router.htl_rule.
        #[arg(long, default_value_t = HtlRule::default())]
        htl_rule: HtlRule,
        #[command(flatten)]
        net: NetnsArgs,
    },
    /// Stop a testnet started elsewhere (and remove its namespaces).
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Cut a node of a --netns testnet off the network (its link down).
    Cut {
        node: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Reconnect a node that `cut` cut off.
    Heal {
        node: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// SIGKILL one node of a running testnet.
    Kill {
        node: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Bring a testnet up, run its scenario or a random workload, bring it
    /// down, and audit the logs.
    Run(RunArgs),
    /// Write a topology as a Shadow 3.x simulation of real `veil node`
    /// processes, with a workload and an audit script (docs/shadow.md).
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The directory to write (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub shadow: PathBuf,
    /// A topology file (its `[net]` table gives bandwidths, latencies, loss).
    #[arg(long, conflicts_with_all = ["nodes"])]
    pub topology: Option<PathBuf>,
    /// Or a generated topology of this many nodes (as `veil testnet gen`).
    #[arg(long, required_unless_present = "topology")]
    pub nodes: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub degree: usize,
    #[arg(long, value_enum, default_value_t = Shape::SmallWorld)]
    pub shape: Shape,
    /// Seeds the generated topology, the link latencies, the keys, the
    /// files, and Shadow's own `general.seed`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latency of links the topology gives none: fixed:MS, uniform:MIN-MAX
    /// or lognormal:MEDIAN,SIGMA (default: the topology's, else
    /// lognormal:40,0.5).
    #[arg(long)]
    pub latency: Option<veil::sim::latency::Latency>,
    /// Every host's bandwidth up and down unless the topology gives one.
    #[arg(long, default_value_t = veil::testnet::shadow::DEFAULT_BANDWIDTH)]
    pub bandwidth: Bandwidth,
    #[arg(long, default_value_t = Anonymity::Tunnel)]
    pub anonymity: Anonymity,
    /// Files inserted (each from another host); fewer than about 32 leave
    /// the audit's classifier too little to judge.
    #[arg(long, default_value_t = 32)]
    pub files: usize,
    #[arg(long = "file-size", default_value = "100000", value_parser = parse_file_size)]
    pub file_size: usize,
    /// Hosts that fetch each file.
    #[arg(long, default_value_t = 3)]
    pub fetches: usize,
    /// Simulated second the puts start at.
    #[arg(long, default_value_t = 30)]
    pub put_at: u64,
    /// Simulated second the gets start at.
    #[arg(long, default_value_t = 90)]
    pub get_at: u64,
    /// Simulated second Shadow stops at (the nodes get SIGTERM 15 s before).
    #[arg(long, default_value_t = 300)]
    pub stop_at: u64,
    /// The veil binary the hosts run (default: this one).
    #[arg(long)]
    pub veil: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Self-organisation check: measure hops, let every node organise its
    /// location for SECS seconds (swap = true, --embedding), measure again,
    /// then on those locations under the lecture's routing rules and the
    /// new ones (instead of the workload; use with --random-locations; in
    /// the tunnel mode the hops are the exits' searches).
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
    /// Every node's router.lookahead: none (greedy by each neighbour's
    /// location) or foaf (also by the locations its neighbours announce).
    #[arg(long, default_value_t = Lookahead::default())]
    pub lookahead: Lookahead,
    /// Every node's router.htl_rule: hop (every hop costs one) or progress
    /// (a hop that gets closer to the key is free).
    #[arg(long, default_value_t = HtlRule::default())]
    pub htl_rule: HtlRule,
    /// Every node's router.insert_end: walk (an insert spends its whole
    /// HTL) or sink (it ends near its key: far fewer loops on a small
    /// network; docs/protocol.md, rule 8).
    #[arg(long, default_value_t = InsertEnd::default())]
    pub insert_end: InsertEnd,
    /// With --swap: how the nodes find their locations, tree (a spanning
    /// tree's embedding) or swap (location swapping).
    #[arg(long, default_value_t = veil::routing::embed::Embedding::Tree)]
    pub embedding: veil::routing::embed::Embedding,
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
    #[command(flatten)]
    pub net: NetnsArgs,
}

/// `--netns`, `--cap`, and the latency and loss it cannot give.
#[derive(clap::Args, Clone, Default)]
pub struct NetnsArgs {
    /// Every node in a network namespace of its own, with its own IPv4
    /// address on a bridge the testnet owns (needs root).
    #[arg(long)]
    pub netns: bool,
    /// With --netns: cap a node's bandwidth both ways (tc tbf): NODE=RATE
    /// (e.g. n03=2Mbit), or RATE for every node; repeatable. A topology's
    /// [net] table can set caps too (these win).
    #[arg(long = "cap", value_name = "[NODE=]RATE")]
    pub caps: Vec<String>,
    /// Link latency: refused (this kernel has no netem; see docs/shadow.md).
    #[arg(long, value_name = "MODEL")]
    pub latency: Option<String>,
    /// Packet loss: refused (this kernel has no netem; see docs/shadow.md).
    #[arg(long, value_name = "P")]
    pub loss: Option<String>,
}

impl NetnsArgs {
    /// The namespace options for `topology` (`None` without --netns).
    pub fn options(&self, topology: &std::path::Path) -> Result<Option<NetnsOptions>> {
        use veil::testnet::netns::{refuse_delay_or_loss, NetnsError};
        if self.latency.is_some() || self.loss.is_some() {
            let what = if self.loss.is_some() {
                "packet loss"
            } else {
                "link latency"
            };
            return Err(NetnsError::NoNetem(what.into()).into());
        }
        if !self.netns {
            if !self.caps.is_empty() {
                bail!("--cap needs --netns (the loopback testnet cannot cap one node)");
            }
            return Ok(None);
        }
        if !veil::testnet::netns::is_root() {
            return Err(NetnsError::NotRoot.into());
        }
        let t = run::load_net_topology(topology)?;
        refuse_delay_or_loss(&t.net)?;
        let names: Vec<&str> = t.topology.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut caps: Vec<Option<Bandwidth>> =
            (0..names.len()).map(|i| t.net.bandwidth_of(i)).collect();
        for cap in &self.caps {
            let (node, rate) = match cap.split_once('=') {
                Some((node, rate)) => (Some(node), rate),
                None => (None, cap.as_str()),
            };
            let rate: Bandwidth = rate.parse().map_err(anyhow::Error::msg)?;
            match node {
                None => caps.iter_mut().for_each(|c| *c = Some(rate)),
                Some(node) => {
                    let i = names
                        .iter()
                        .position(|n| *n == node)
                        .with_context(|| format!("--cap {cap}: the topology has no node {node}"))?;
                    caps[i] = Some(rate);
                }
            }
        }
        Ok(Some(NetnsOptions { caps }))
    }
}

impl RunArgs {
    /// The library's options for this run, every node running `exe`.
    pub fn options(self, exe: PathBuf) -> Result<run::RunOptions> {
        let netns = self.net.options(&self.topology)?;
        Ok(run::RunOptions {
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
                embedding: self.embedding,
            }),
            redundancy: self.redundancy,
            settings: run::NodeSettings {
                replicate_htl: self.replicate_htl,
                cache: !self.no_cache,
                lookahead: self.lookahead,
                htl_rule: self.htl_rule,
                insert_end: self.insert_end,
            },
            failures: veil::testnet::failures::Failures {
                kill: self.kill,
                churn: self.churn,
                ms_per_minute: self.churn_scale,
            },
            netns,
        })
    }
}

pub fn run(cmd: TestnetCommand) -> Result<ExitCode> {
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
            use veil::sim::topology::{generate, generate_bounded, DegreeBounds};
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
        TestnetCommand::Cut { node, dir } => {
            veil::testnet::set_link(&dir, &node, false)?;
            eprintln!(
                "{node} cut off (`veil testnet heal {node} --dir {}` reconnects it)",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Heal { node, dir } => {
            veil::testnet::set_link(&dir, &node, true)?;
            eprintln!("{node} reconnected");
            Ok(ExitCode::SUCCESS)
        }
        TestnetCommand::Kill { node, dir } => {
            if veil::testnet::kill(&dir, &node)? {
                eprintln!("{node} killed");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{node} was not running");
                Ok(ExitCode::from(1))
            }
        }
        TestnetCommand::Up {
            topology: topology_path,
            dir,
            anonymity,
            lookahead,
            htl_rule,
            net,
        } => runtime()?.block_on(async {
            let netns = net.options(&topology_path)?;
            let topology = run::load_topology(&topology_path)?;
            let progress = progress_printer();
            let settings = run::NodeSettings {
                lookahead,
                htl_rule,
                ..Default::default()
            };
            // Ctrl-C while the nodes start drops the half-made testnet,
            // which stops its nodes and removes its namespaces.
            let start = run::start_with(
                &topology,
                &dir,
                exe()?,
                anonymity,
                settings,
                None,
                netns,
                &progress,
            );
            let mut net = tokio::select! {
                net = start => net?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted while starting; stopped"),
            };
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
        TestnetCommand::Export(a) => export(a),
        TestnetCommand::Run(a) => runtime()?.block_on(async {
            let (json, strict) = (a.json, a.strict_anonymity);
            // Ctrl-C drops the run, and with it the testnet: its nodes stop
            // and its namespaces go.
            let (options, progress) = (a.options(exe()?)?, progress_printer());
            let report = tokio::select! {
                r = run::run(options, &progress) => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted; the testnet is stopped"),
            };
            show(json, report.to_json(), report.render_text());
            Ok(exit_code(
                report.ok && (!strict || report.audit.anonymity.passed()),
            ))
        }),
    }
}

fn export(a: ExportArgs) -> Result<ExitCode> {
    let topo = match (&a.topology, a.nodes) {
        (Some(path), _) => run::load_net_topology(path)?,
        (None, Some(n)) => NetTopology {
            topology: veil::sim::topology::generate(n, a.degree, a.shape, a.seed)?,
            net: Default::default(),
        },
        (None, None) => bail!("give --topology FILE or --nodes N"),
    };
    let veil = match a.veil {
        Some(p) => std::path::absolute(&p).with_context(|| format!("{}", p.display()))?,
        None => exe()?,
    };
    let opts = veil::testnet::shadow::ExportOptions {
        veil,
        seed: a.seed,
        latency: a.latency,
        bandwidth: a.bandwidth,
        anonymity: a.anonymity,
        files: a.files,
        size: a.file_size,
        fetches: a.fetches,
        put_at: a.put_at,
        get_at: a.get_at,
        stop_at: a.stop_at,
    };
    let r = veil::testnet::shadow::export(&topo, &a.shadow, &opts)?;
    let [lo, mid, hi] = r.latency_ms;
    let text = format!(
        "wrote {dir}: {} hosts, {} links (latency {lo}/{mid}/{hi} ms min/median/max), \
         {} files fetched {} times, stop at {} s\n\
         run it: cd {dir} && shadow shadow.yaml > shadow.log && ./audit.sh\n",
        r.hosts,
        r.links,
        r.files,
        r.fetches,
        r.stop_time_s,
        dir = r.dir.display()
    );
    let json = serde_json::to_string_pretty(&r).context("writing the summary as JSON")?;
    show(a.json, json, text);
    Ok(ExitCode::SUCCESS)
}
