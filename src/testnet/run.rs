//! What `veil testnet up` and `veil testnet run` do, as library calls:
//! [`start`] brings a topology's testnet up, [`run`] brings it up, runs its
//! scenario or a random workload, brings it down and audits the logs,
//! returning a [`RunReport`] the CLI prints (`render_text`, or serde for
//! `--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::failures::Failures;
use super::net::{NetError, NetTopology};
use super::swap::{shuffle_locations, SwapReport, SwapRun};
use super::workload::{run_files, run_scenario, ScenarioResult, WorkloadResult, WorkloadSpec};
use super::{up, NetnsOptions, Testnet, TestnetError, UpOptions};
use crate::audit::{audit_dir, trace_uid, AuditReport};
use crate::message::Htl;
use crate::routing::swap::SwapConfig;
use crate::routing::{
    Anonymity, HtlRule, InsertEnd, Lookahead, DEFAULT_MAX_HTL, DEFAULT_REPLICATE_HTL,
};
use crate::sim::topology::Topology;

/// Something a testnet operation tells its caller while it works.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// Links up so far, of `total`, while the testnet starts.
    Links { up: usize, total: usize },
    /// A line for the operator.
    Note(&'a str),
    /// One step of the workload (the CLI indents these).
    Step(&'a str),
}

/// Where progress goes.
pub type ProgressFn = Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// How long `start` waits for every link.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The hops-to-live a testnet's nodes get: the topology's scenario's, else
/// the default.
pub(super) fn max_htl_of(topology: &Topology) -> Htl {
    topology
        .scenario
        .as_ref()
        .map(|s| s.htl)
        .unwrap_or(DEFAULT_MAX_HTL)
}

/// Load a topology file (its `[net]` table, if any, left aside).
pub fn load_topology(path: &Path) -> Result<Topology, TestnetError> {
    load_net_topology(path).map(|t| t.topology)
}

/// Load a topology file with its `[net]` table (`testnet/net.rs`).
pub fn load_net_topology(path: &Path) -> Result<NetTopology, TestnetError> {
    NetTopology::load(path).map_err(|e| match e {
        NetError::Topology(source) => TestnetError::Topology {
            path: path.to_path_buf(),
            source,
        },
        other => TestnetError::Net(other),
    })
}

/// Bring `topology`'s testnet up in `dir` (made absolute), running `exe`
/// for every node (with `swap = true` and `swap` as `[swapping]` when
/// given), and wait until every link is up.
pub async fn start(
    topology: &Topology,
    dir: &Path,
    exe: PathBuf,
    anonymity: Anonymity,
    swap: Option<SwapConfig>,
    progress: &ProgressFn,
) -> Result<Testnet, TestnetError> {
    start_with(
        topology,
        dir,
        exe,
        anonymity,
        NodeSettings::default(),
        swap,
        None,
        progress,
    )
    .await
}

/// Settings every node of a testnet shares: where copies of blocks are
/// kept, and how searches rank their candidates.
#[derive(Clone, Copy, Debug)]
pub struct NodeSettings {
    /// Every node's `router.replicate_htl` (0: the sink alone stores).
    pub replicate_htl: Htl,
    /// Relays cache what passes through (`false`: `cache_size = 0`).
    pub cache: bool,
    /// Every node's `router.lookahead`.
    pub lookahead: Lookahead,
    /// Every node's `router.htl_rule`.
    pub htl_rule: HtlRule,
    /// Every node's `router.insert_end`.
    pub insert_end: InsertEnd,
}

impl Default for NodeSettings {
    /// What a node does by default: replicas at `DEFAULT_REPLICATE_HTL`,
    /// relays cache, the default lookahead.
    fn default() -> NodeSettings {
        NodeSettings {
            replicate_htl: DEFAULT_REPLICATE_HTL,
            cache: true,
            lookahead: Lookahead::default(),
            htl_rule: HtlRule::default(),
            insert_end: InsertEnd::default(),
        }
    }
}

/// [`start`], with every node's replication, cache and lookahead as
/// `settings` says, each in a network namespace of its own with `netns`.
#[allow(clippy::too_many_arguments)]
pub async fn start_with(
    topology: &Topology,
    dir: &Path,
    exe: PathBuf,
    anonymity: Anonymity,
    settings: NodeSettings,
    swap: Option<SwapConfig>,
    netns: Option<NetnsOptions>,
    progress: &ProgressFn,
) -> Result<Testnet, TestnetError> {
    let dir = std::path::absolute(dir).map_err(|e| super::io_err(dir, e))?;
    let max_htl = max_htl_of(topology);
    let links = topology.edges.len();
    progress(Progress::Note(&format!(
        "starting {} nodes, {links} links in {} (anonymity {anonymity}{})",
        topology.nodes.len(),
        dir.display(),
        if netns.is_some() {
            ", each in a network namespace"
        } else {
            ""
        }
    )));
    let on_links = Arc::clone(progress);
    let opts = UpOptions {
        exe,
        max_htl,
        anonymity,
        swap,
        replicate_htl: settings.replicate_htl,
        cache: settings.cache,
        lookahead: settings.lookahead,
        htl_rule: settings.htl_rule,
        insert_end: settings.insert_end,
        netns,
        ready_timeout: READY_TIMEOUT,
        on_progress: Box::new(move |up, total| on_links(Progress::Links { up, total })),
    };
    let started = Instant::now();
    let net = up(topology, &dir, opts).await?;
    progress(Progress::Note(&format!(
        "all {links} links up in {:.1?}",
        started.elapsed()
    )));
    Ok(net)
}

impl Testnet {
    /// Every node's client address and peers up, as a table.
    pub async fn table_text(&self) -> String {
        let mut out = format!("{:<10} {:<22} peers up\n", "node", "client");
        for (name, client, up, total) in self.table().await {
            let _ = writeln!(out, "{name:<10} {:<22} {up}/{total}", client.to_string());
        }
        out
    }
}

/// Options of `veil testnet run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub topology: PathBuf,
    pub dir: PathBuf,
    /// Random files to insert (ignored when the topology has a scenario).
    pub files: usize,
    /// Size of each file in bytes.
    pub size: usize,
    /// Fetches of each file, from other random nodes.
    pub fetches: usize,
    pub seed: u64,
    /// Every node's `anonymity` setting.
    pub anonymity: Anonymity,
    /// The `veil` binary every node runs.
    pub exe: PathBuf,
    /// Shuffle the topology's locations among its nodes (seeded).
    pub random_locations: bool,
    /// Measure routing before and after a period of location swapping
    /// instead of the scenario or workload (`testnet/swap.rs`).
    pub swap: Option<SwapRun>,
    /// Check blocks per 100 data blocks of each workload file.
    pub redundancy: u16,
    /// Replication and caching on every node.
    pub settings: NodeSettings,
    /// Nodes killed for good or churned during the fetches.
    pub failures: Failures,
    /// Every node in a network namespace of its own (`--netns`).
    pub netns: Option<NetnsOptions>,
}

/// What `veil testnet run` found. Serialized (keys sorted) for `--json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunReport {
    /// The schema version of `veil testnet run --json` (docs/formats.md).
    pub version: crate::formats::Version<1>,
    pub audit: AuditReport,
    /// Every workload fetch verified and no invariant violated.
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioResult>,
    /// The scenario request's path, from the audit logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadResult>,
    /// Routing before and after swapping (`--swap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapReport>,
    #[serde(skip)]
    pub elapsed: Duration,
    #[serde(skip)]
    pub nodes: usize,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Bring a testnet up, run its scenario or a random workload, bring it
/// down, and audit the logs.
pub async fn run(opts: RunOptions, progress: &ProgressFn) -> Result<RunReport, TestnetError> {
    let mut topology = load_topology(&opts.topology)?;
    if opts.random_locations {
        shuffle_locations(&mut topology, opts.seed);
    }
    let started = Instant::now();
    let mut net = start_with(
        &topology,
        &opts.dir,
        opts.exe.clone(),
        opts.anonymity,
        opts.settings,
        opts.swap.as_ref().map(SwapRun::node_config),
        opts.netns.clone(),
        progress,
    )
    .await?;
    let dir = net.dir.clone();
    let mut report = RunReport {
        version: Default::default(),
        audit: AuditReport::default(),
        ok: true,
        scenario: None,
        trace: None,
        workload: None,
        swap: None,
        elapsed: Duration::ZERO,
        nodes: topology.nodes.len(),
        dir: dir.clone(),
    };
    if let Some(swap) = &opts.swap {
        let step = |line: &str| progress(Progress::Step(line));
        let result = super::swap::run_and_stop(&mut net, &topology, swap, opts.seed, step).await?;
        report.ok &= result.improved();
        report.swap = Some(result);
    } else if topology.scenario.is_some() {
        let scenario = run_scenario(&topology, &net).await;
        net.stop();
        let scenario = scenario?;
        let uid = scenario.uid.as_deref().ok_or(TestnetError::NoOriginEntry)?;
        report.trace = Some(trace_uid(&dir, uid)?);
        report.scenario = Some(scenario);
    } else {
        progress(Progress::Note(&format!(
            "workload: {} files of {} bytes, each fetched from {} other nodes",
            opts.files, opts.size, opts.fetches
        )));
        let spec = WorkloadSpec {
            files: opts.files,
            size: opts.size,
            fetches: opts.fetches,
            seed: opts.seed,
            max_htl: DEFAULT_MAX_HTL,
            redundancy: opts.redundancy,
            failures: opts.failures,
            cached_copies: opts.settings.cache,
        };
        let workload = run_files(&mut net, &spec, |line| progress(Progress::Step(line))).await;
        net.stop();
        let workload = workload?;
        report.ok &= workload.all_ok();
        report.workload = Some(workload);
    }
    report.audit = audit_dir(&dir)?;
    report.ok &= report.audit.violation_count() == 0;
    report.elapsed = started.elapsed();
    Ok(report)
}

impl RunReport {
    /// The report as pretty-printed JSON, keys sorted.
    pub fn to_json(&self) -> String {
        serde_json::to_value(self)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
    }

    /// The scenario's trace or the workload's totals, the audit, and a
    /// verdict.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if let (Some(trace), Some(scenario)) = (&self.trace, &self.scenario) {
            for line in trace {
                let _ = writeln!(out, "{line}");
            }
            let outcome = if scenario.found { "found" } else { "not found" };
            let _ = writeln!(out, "outcome: {outcome}");
        }
        if let Some(w) = &self.workload {
            let inserted = w.files.iter().filter(|f| f.inserted).count();
            let _ = writeln!(
                out,
                "workload: {inserted}/{} files inserted, {}/{} fetches verified byte for byte",
                w.files.len(),
                w.verified(),
                w.fetches.len()
            );
            for f in w.fetches.iter().filter(|f| !f.verified) {
                let why = f.reason.as_deref().or(f.error.as_deref());
                let _ = writeln!(
                    out,
                    "  FAILED fetch of file {} at {}: {}",
                    f.file,
                    f.node,
                    why.unwrap_or("?")
                );
            }
            if let (Some(p50), Some(p99)) = (w.get_ms(0.5), w.get_ms(0.99)) {
                let _ = writeln!(
                    out,
                    "fetch success {:.1}%, {} block retries ({:.2}% of {} blocks fetched), \
                     get time p50 {p50} ms, p99 {p99} ms, loops rejected per block request {}",
                    100.0 * w.verified() as f64 / w.fetches.len().max(1) as f64,
                    w.retries(),
                    100.0 * w.retries() as f64 / w.blocks().max(1) as f64,
                    w.blocks(),
                    self.audit
                        .loops_per_block_request()
                        .map_or("n/a".into(), |v| format!("{v:.2}"))
                );
            }
            if let Some(f) = &w.failures {
                let restarted = f.churned.iter().filter(|c| c.restarted).count();
                let _ = writeln!(
                    out,
                    "failures: {} nodes killed for good, {} churned ({restarted} restarted before the fetches ended; {} ms per session minute)",
                    f.killed.len(),
                    f.churned.len(),
                    f.ms_per_minute
                );
                let lost: usize = f.files.iter().map(|h| h.without_live_holder).sum();
                let _ = writeln!(
                    out,
                    "  {lost} blocks over {} files had no holder that stayed up",
                    f.files.len()
                );
            }
        }
        if let Some(s) = &self.swap {
            out.push_str(&s.render_text());
        }
        out.push('\n');
        out.push_str(&self.audit.render_text());
        let _ = write!(
            out,
            "\ntestnet run {} in {:.1?} ({} nodes; logs in {})\n",
            if self.ok { "passed" } else { "FAILED" },
            self.elapsed,
            self.nodes,
            self.dir.display()
        );
        out
    }
}
