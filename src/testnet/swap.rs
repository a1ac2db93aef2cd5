//! `veil testnet run --random-locations --swap SECS [--embedding tree|swap]`:
//! do the real nodes organise their locations, and does the new routing
//! find blocks in fewer hops than the lecture's on them?
//!
//! The nodes start at the topology's locations shuffled among them (seeded),
//! with `swap = true` and their own attempts (or their part in the tree
//! embedding) paused. Then:
//!
//! 1. **before**: `fetches` random blocks are each placed at the node whose
//!    location is then closest to the block's key, and fetched once from
//!    another random node;
//! 2. **organise**: every node's attempts (or the tree) run for `SECS`
//!    seconds, then pause again (and in-flight swaps are given time to end);
//! 3. **after**: the same measurement with new blocks, placed at the nodes
//!    closest under the new locations;
//! 4. **rules**: on those locations, every node is told to route by the
//!    lecture's rules (`lookahead none`, `htl_rule hop`), then by the new
//!    ones (`foaf`, `progress`), and the measurement is repeated under each.
//!
//! Once the nodes are down, each fetch's path length (the `DataFound`
//! replies sent for its search, from the audit logs) and message count are
//! read back. Under `--anonymity none` the search is the requester's own;
//! in the `tunnel` mode it is the exit's, so the hops measure the exit's
//! search from there (the tunnel's own hops are not counted).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Testnet, TestnetError};
use crate::audit::log::{AUDIT_FILE, ORIGIN_FILE};
use crate::client::{Client, NodeStatus};
use crate::formats::audit_log::{AuditEvent, AuditLine, OriginEvent, OriginLine};
use crate::keys::{Chk, Location, RoutingKey};
use crate::message::{MessageKind, Uid};
use crate::routing::embed::Embedding;
use crate::routing::swap::SwapConfig;
use crate::routing::{HtlRule, Lookahead};
use crate::sim::topology::Topology;

/// What `--swap` asks for.
#[derive(Clone, Debug)]
pub struct SwapRun {
    /// Seconds of swapping between the two measurements.
    pub secs: u64,
    /// Mean time between one node's attempts.
    pub interval_ms: u64,
    /// Blocks placed and fetched in each measurement.
    pub fetches: usize,
    /// How the nodes find their locations.
    pub embedding: Embedding,
}

impl SwapRun {
    /// The `[swapping]` table every node gets: attempts paused until the
    /// swap period.
    pub fn node_config(&self) -> SwapConfig {
        SwapConfig {
            interval_ms: self.interval_ms.max(1),
            step_timeout_ms: 2_000,
            paused: true,
            embedding: self.embedding,
            ..SwapConfig::default()
        }
    }
}

/// Shuffle the topology's locations among its nodes (the multiset stays).
pub fn shuffle_locations(topology: &mut Topology, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a5a_5a5a);
    let mut locations: Vec<Location> = topology.nodes.iter().map(|n| n.location).collect();
    locations.shuffle(&mut rng);
    for (node, location) in topology.nodes.iter_mut().zip(locations) {
        node.location = location;
    }
}

/// One fetch of a measurement.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SwapFetch {
    pub requester: String,
    pub holder: String,
    pub found: bool,
    /// Path length from the holder back to the requester (found only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<u64>,
    /// Messages every node sent for this request.
    pub messages: u64,
    #[serde(skip)]
    key: RoutingKey,
}

/// One measurement (before or after swapping).
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Phase {
    /// Mean circular distance across the friend links, at the locations
    /// the nodes reported.
    pub link_length: f64,
    pub fetches: Vec<SwapFetch>,
}

impl Phase {
    pub fn found(&self) -> usize {
        self.fetches.iter().filter(|f| f.found).count()
    }

    /// Mean path length of the fetches that found their block.
    pub fn mean_hops(&self) -> f64 {
        let hops: Vec<u64> = self.fetches.iter().filter_map(|f| f.hops).collect();
        hops.iter().sum::<u64>() as f64 / hops.len().max(1) as f64
    }

    /// Mean path length per fetch, a fetch that found nothing counted as
    /// `budget` hops (the hops-to-live it was given and spent). Unlike
    /// [`Phase::mean_hops`] this does not rise when swapping lets the
    /// harder fetches succeed: a fetch that failed before and succeeds
    /// after in more hops than the average still costs fewer than a miss.
    pub fn mean_hops_counting_misses(&self, budget: u64) -> f64 {
        let total: u64 = self.fetches.iter().map(|f| f.hops.unwrap_or(budget)).sum();
        total as f64 / self.fetches.len().max(1) as f64
    }

    /// Mean messages per fetch, found or not.
    pub fn mean_messages(&self) -> f64 {
        let total: u64 = self.fetches.iter().map(|f| f.messages).sum();
        total as f64 / self.fetches.len().max(1) as f64
    }
}

/// One measurement on the organised locations under one set of routing
/// rules.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct RulePhase {
    /// Every node's `router.lookahead` during the measurement.
    pub lookahead: String,
    /// Every node's `router.htl_rule` during the measurement.
    pub htl_rule: String,
    #[serde(flatten)]
    pub phase: Phase,
}

/// What the swap check found.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SwapReport {
    pub secs: u64,
    /// How the nodes found their locations: `swap` or `tree`.
    pub embedding: String,
    pub before: Phase,
    pub after: Phase,
    /// The organised locations measured again, under the lecture's rules
    /// (`none`, `hop`) and then the new ones (`foaf`, `progress`).
    pub rules: Vec<RulePhase>,
    /// Times the tree embedding moved a node (0 under swapping).
    pub tree_moves: u64,
    /// Swaps done over the network (each counted once) and attempts started.
    pub swaps: u64,
    pub attempts: u64,
    /// The hops a fetch that found nothing counts as: the nodes' largest
    /// hops-to-live.
    pub miss_hops: u64,
}

impl SwapReport {
    /// Fewer hops per fetch after swapping than before (a miss counted as
    /// [`SwapReport::miss_hops`]), and no fewer blocks found.
    pub fn improved(&self) -> bool {
        self.after.mean_hops_counting_misses(self.miss_hops)
            < self.before.mean_hops_counting_misses(self.miss_hops)
            && self.after.found() >= self.before.found()
    }

    /// Fewer hops per fetch under the new rules than under the lecture's
    /// on the same organised locations (a miss counted as
    /// [`SwapReport::miss_hops`]); `None` without both measurements.
    pub fn new_rules_fewer_hops(&self) -> Option<bool> {
        let [old, new] = self.rules.as_slice() else {
            return None;
        };
        let hops = |r: &RulePhase| r.phase.mean_hops_counting_misses(self.miss_hops);
        Some(hops(new) < hops(old))
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = match self.embedding.as_str() {
            "tree" => writeln!(
                out,
                "tree embedding: {} location moves over {} s",
                self.tree_moves, self.secs
            ),
            _ => writeln!(
                out,
                "swapping: {} swaps in {} attempts over {} s",
                self.swaps, self.attempts, self.secs
            ),
        };
        let rules = self
            .rules
            .iter()
            .map(|r| (format!("{}/{}", r.lookahead, r.htl_rule), &r.phase));
        let phases = [
            ("before".to_string(), &self.before),
            ("after".to_string(), &self.after),
        ];
        for (name, p) in phases.into_iter().chain(rules) {
            let _ = writeln!(
                out,
                "  {name:<14} found {}/{}, mean hops {:.2} ({:.2} per fetch, a miss as {}), \
                 messages per fetch {:.1}, mean link length {:.4}",
                p.found(),
                p.fetches.len(),
                p.mean_hops(),
                p.mean_hops_counting_misses(self.miss_hops),
                self.miss_hops,
                p.mean_messages(),
                p.link_length
            );
        }
        if let Some(fewer) = self.new_rules_fewer_hops() {
            let _ = writeln!(
                out,
                "  new routing (foaf/progress) {} hops per fetch than the lecture's (none/hop)",
                if fewer {
                    "takes fewer"
                } else {
                    "does NOT take fewer"
                }
            );
        }
        out
    }
}

async fn client(net: &Testnet, name: &str) -> Result<Client, TestnetError> {
    let addr = net
        .info
        .nodes
        .get(name)
        .map(|n| n.client.clone())
        .ok_or_else(|| TestnetError::UnknownNode(name.to_string()))?;
    Client::connect(&addr, Duration::from_secs(60))
        .await
        .map_err(|source| TestnetError::Client {
            node: name.to_string(),
            source,
        })
}

fn client_err(name: &str) -> impl FnOnce(crate::client::ClientError) -> TestnetError + '_ {
    move |source| TestnetError::Client {
        node: name.to_string(),
        source,
    }
}

/// Every node's status, by name.
async fn statuses(net: &Testnet) -> Result<BTreeMap<String, NodeStatus>, TestnetError> {
    let mut out = BTreeMap::new();
    for name in net.info.nodes.keys() {
        let status = client(net, name)
            .await?
            .status()
            .await
            .map_err(client_err(name))?;
        out.insert(name.clone(), status);
    }
    Ok(out)
}

/// Resume (or pause) every node's attempts; returns the statuses.
async fn set_swapping(
    net: &Testnet,
    on: bool,
) -> Result<BTreeMap<String, NodeStatus>, TestnetError> {
    let mut out = BTreeMap::new();
    for name in net.info.nodes.keys() {
        let status = client(net, name)
            .await?
            .set_swapping(on)
            .await
            .map_err(client_err(name))?;
        out.insert(name.clone(), status);
    }
    Ok(out)
}

/// Tell every node to route by these rules from now on.
async fn set_routing(
    net: &Testnet,
    lookahead: Lookahead,
    htl_rule: HtlRule,
) -> Result<(), TestnetError> {
    for name in net.info.nodes.keys() {
        client(net, name)
            .await?
            .set_routing(lookahead, htl_rule)
            .await
            .map_err(client_err(name))?;
    }
    Ok(())
}

/// Mean link length over the topology's edges at the reported locations.
fn link_length(topology: &Topology, at: &BTreeMap<String, NodeStatus>) -> f64 {
    let loc = |i: usize| {
        at.get(&topology.nodes[i].name)
            .map(|s| Location::from_f64(s.location))
            .unwrap_or(topology.nodes[i].location)
    };
    let total: f64 = topology
        .edges
        .iter()
        .map(|&(a, b)| loc(a).distance(loc(b)) as f64 / 18_446_744_073_709_551_616.0)
        .sum();
    total / topology.edges.len().max(1) as f64
}

/// Place `count` random blocks at the nodes closest to their keys and fetch
/// each from another random node.
async fn measure(
    net: &Testnet,
    topology: &Topology,
    count: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Phase, TestnetError> {
    let at = statuses(net).await?;
    let mut phase = Phase {
        link_length: link_length(topology, &at),
        fetches: Vec::with_capacity(count),
    };
    let names: Vec<&String> = at.keys().collect();
    for _ in 0..count {
        let mut data = vec![0u8; 64];
        rng.fill_bytes(&mut data);
        let Ok((chk, block)) = Chk::encode(&data) else {
            continue; // 64 bytes always fit a block
        };
        let key = chk.routing;
        let target = key.location();
        let Some(holder) = at
            .iter()
            .min_by_key(|(_, s)| Location::from_f64(s.location).distance(target))
            .map(|(n, _)| n.clone())
        else {
            break;
        };
        let others: Vec<&&String> = names.iter().filter(|n| ***n != holder).collect();
        let Some(requester) = others.get(rng.gen_range(0..others.len().max(1))) else {
            break;
        };
        let requester = (**requester).clone();
        client(net, &holder)
            .await?
            .place(block)
            .await
            .map_err(client_err(&holder))?;
        let found = client(net, &requester).await?.get(key).await.is_ok();
        phase.fetches.push(SwapFetch {
            requester,
            holder,
            found,
            hops: None,
            messages: 0,
            key,
        });
    }
    Ok(phase)
}

/// Run the check on a testnet that is up (started with
/// [`SwapRun::node_config`] and shuffled locations).
pub async fn run_swap_check(
    net: &Testnet,
    topology: &Topology,
    opts: &SwapRun,
    seed: u64,
    on_step: impl Fn(&str),
) -> Result<SwapReport, TestnetError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let before = measure(net, topology, opts.fetches, &mut rng).await?;
    on_step(&format!(
        "before swapping: {}/{} found",
        before.found(),
        before.fetches.len()
    ));
    set_swapping(net, true).await?;
    tokio::time::sleep(Duration::from_secs(opts.secs)).await;
    set_swapping(net, false).await?;
    // Swaps in flight end within a walk's timeouts; then the locations hold.
    let settle = opts.node_config();
    tokio::time::sleep(Duration::from_millis(
        settle.step_timeout_ms * u64::from(settle.walk_htl) / 4,
    ))
    .await;
    let after = measure(net, topology, opts.fetches, &mut rng).await?;
    let done = statuses(net).await?;
    let swaps: u64 = done.values().map(|s| s.swap.stats.swaps).sum();
    let attempts = done.values().map(|s| s.swap.stats.attempts).sum();
    let tree_moves = done
        .values()
        .filter_map(|s| s.swap.tree.as_ref())
        .map(|t| t.moves)
        .sum();
    on_step(&format!(
        "after {} s ({} swaps, {tree_moves} tree moves): {}/{} found",
        opts.secs,
        swaps / 2,
        after.found(),
        after.fetches.len()
    ));
    let mut rules = Vec::new();
    for (lookahead, htl_rule) in [
        (Lookahead::None, HtlRule::Hop),
        (Lookahead::Foaf, HtlRule::Progress),
    ] {
        set_routing(net, lookahead, htl_rule).await?;
        // FOAF announcements go out on the nodes' next wake.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let phase = measure(net, topology, opts.fetches, &mut rng).await?;
        on_step(&format!(
            "{lookahead}/{htl_rule}: {}/{} found",
            phase.found(),
            phase.fetches.len()
        ));
        rules.push(RulePhase {
            lookahead: lookahead.to_string(),
            htl_rule: htl_rule.to_string(),
            phase,
        });
    }
    Ok(SwapReport {
        secs: opts.secs,
        embedding: opts.embedding.to_string(),
        before,
        after,
        rules,
        tree_moves,
        swaps: swaps / 2,
        attempts,
        miss_hops: u64::from(super::run::max_htl_of(topology)),
    })
}

/// Once the nodes are down (their logs flushed): each fetch's hops and
/// messages, from the requester's origin log and every node's audit log.
/// A fetch's searches are the requester's own (`none`, `freenet`) and any
/// search for its key (a tunnel's exit searches under its own uid; every
/// block is fresh, so its key names its fetch).
pub fn count_hops(dir: &Path, report: &mut SwapReport) -> Result<(), TestnetError> {
    let mut uid_of: HashMap<(String, RoutingKey), Uid> = HashMap::new();
    let mut searches: HashMap<RoutingKey, Vec<Uid>> = HashMap::new();
    let mut found: HashMap<Uid, u64> = HashMap::new();
    let mut messages: HashMap<Uid, u64> = HashMap::new();
    let nodes = std::fs::read_dir(dir).map_err(|e| super::io_err(dir, e))?;
    for entry in nodes.flatten() {
        let node_dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        for l in read_lines::<OriginLine>(&node_dir.join(ORIGIN_FILE)) {
            if let OriginEvent::RequestStarted { key, .. } = l.event {
                uid_of.insert((name.clone(), key), l.flow);
            }
        }
        for l in read_lines::<AuditLine>(&node_dir.join(AUDIT_FILE)) {
            if let AuditEvent::Send(m) = l.event {
                *messages.entry(m.flow).or_default() += 1;
                match m.kind {
                    MessageKind::DataFound => *found.entry(m.flow).or_default() += 1,
                    MessageKind::DataRequest => {
                        for key in m.all_keys() {
                            let uids = searches.entry(*key).or_default();
                            if !uids.contains(&m.flow) {
                                uids.push(m.flow);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let rules = report.rules.iter_mut().map(|r| &mut r.phase);
    for phase in [&mut report.before, &mut report.after]
        .into_iter()
        .chain(rules)
    {
        for f in &mut phase.fetches {
            let mut uids = searches.get(&f.key).cloned().unwrap_or_default();
            if let Some(u) = uid_of.get(&(f.requester.clone(), f.key)) {
                if !uids.contains(u) {
                    uids.push(*u);
                }
            }
            f.messages = uids.iter().filter_map(|u| messages.get(u)).sum();
            if f.found {
                f.hops = uids.iter().filter_map(|u| found.get(u)).copied().min();
            }
        }
    }
    Ok(())
}

/// The lines of a JSON-lines file that parse (none if it is missing).
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Run the check, bring the testnet down and read the hops back.
pub async fn run_and_stop(
    net: &mut Testnet,
    topology: &Topology,
    opts: &SwapRun,
    seed: u64,
    on_step: impl Fn(&str),
) -> Result<SwapReport, TestnetError> {
    let checked = run_swap_check(net, topology, opts, seed, on_step).await;
    net.stop();
    let mut report = checked?;
    count_hops(&net.dir, &mut report)?;
    Ok(report)
}
