//! The audit report: what `veil audit` prints (as text or JSON); its text
//! form is `text.rs`.

use serde::Serialize;

use crate::message::Htl;

mod text;

/// How many examples each invariant keeps.
const MAX_EXAMPLES: usize = 5;

/// Counts split by operation.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct OpCounts {
    pub total: usize,
    pub get: usize,
    pub put: usize,
}

/// A distribution summary; fields are `null` when there are no samples.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Summary {
    pub count: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    pub(super) fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Summary::default();
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        // Nearest rank.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Summary {
            count: n,
            mean: Some(v.iter().sum::<f64>() / n as f64),
            median: Some(median),
            p95: Some(v[rank - 1]),
            max: Some(v[n - 1]),
        }
    }
}

/// One invariant: how often it broke, and a few examples.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Invariant {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Invariant {
    pub(super) fn add(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example);
        }
    }
}

/// The leak check; `checked` is false when there was no `workload.json`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct LeakCheck {
    pub checked: bool,
    pub count: usize,
    pub examples: Vec<String>,
    pub files_scanned: usize,
    pub workload_files: usize,
}

/// All invariant checks.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Violations {
    /// Sum of the counts below.
    pub total: usize,
    pub misrouted_reply: Invariant,
    pub htl_overspent: Invariant,
    pub remembered_uid: Invariant,
    pub leak: LeakCheck,
}

/// A local signal scored as a classifier of "my neighbour originated this".
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Classifier {
    pub name: String,
    /// What the signal says, as a phrase ("a request arriving with htl = max").
    pub description: String,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub tn: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// precision / base rate: 1 means no better than guessing.
    pub lift: Option<f64>,
}

/// Best-observer anonymity-set entropy over originated requests.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct EntropyReport {
    /// Originated requests some other node received.
    pub requests_observed: usize,
    /// Originated requests no other node received (answered locally, no peers).
    pub requests_unobserved: usize,
    /// Observed requests whose best observer had H = 0 (knew the originator).
    pub requests_exposed: usize,
    pub mean_bits: Option<f64>,
    pub min_bits: Option<f64>,
    /// log2 N: the entropy with no information at all.
    pub max_bits: Option<f64>,
    /// Degree of anonymity d = H / log2 N.
    pub mean_degree: Option<f64>,
    pub min_degree: Option<f64>,
    /// 5th percentile (nearest rank) and median of d.
    pub p5_degree: Option<f64>,
    pub median_degree: Option<f64>,
    /// The originator's rank in its request's posterior (1 = most likely).
    pub originator_rank: Summary,
    /// Requests whose originator the adversary ranked first.
    pub originator_ranked_first: usize,
}

/// One bin of a signal: P(originator | bin) with its Wilson 95% interval.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SignalBin {
    pub bin: String,
    /// Observations in the bin.
    pub support: usize,
    /// Of which the sender was the originator.
    pub positives: usize,
    pub p: f64,
    pub lower: f64,
    pub upper: f64,
}

/// One feature, binned.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SignalTable {
    pub name: String,
    pub description: String,
    pub bins: Vec<SignalBin>,
}

/// The bin with the highest upper bound among those the verdict counts.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct WorstBin {
    pub signal: String,
    pub bin: String,
    pub support: usize,
    pub p: f64,
    pub upper: f64,
}

/// What each node could infer locally about who originated a request.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Anonymity {
    /// `request_received` lines scored.
    pub observations: usize,
    /// Observations whose sender really originated the request.
    pub positives: usize,
    /// positives / observations.
    pub base_rate: Option<f64>,
    pub max_htl: Option<Htl>,
    /// `"workload.json"` or `"largest htl observed"`.
    pub max_htl_source: String,
    pub classifiers: Vec<Classifier>,
    pub entropy: EntropyReport,
    /// Each feature binned: P(originator | bin), support, interval.
    pub signals: Vec<SignalTable>,
    /// The combined adversary (naive Bayes over every feature's bins),
    /// two-fold cross-validated by file: ROC AUC and its bootstrap 95%
    /// interval.
    pub auc: Option<f64>,
    pub auc_ci: Option<[f64; 2]>,
    /// Groups (files, or keys outside any file) the split was made over.
    pub cv_groups: usize,
    /// The worst counted bin (support >= `min_support`) by upper bound.
    pub max_posterior: Option<WorstBin>,
    /// Median d = H / log2 N over observed requests.
    pub d_median: Option<f64>,
    /// The pooled observers (`--colluders`); empty: each node on its own.
    pub colluders: Vec<String>,
    /// `"pass"`, `"fail"`, or `"inconclusive"` when no observation is
    /// labelled as sent by its originator (nothing to measure).
    pub verdict: String,
    /// Why the verdict failed, worst first.
    pub failures: Vec<String>,
    /// The limits the verdict used.
    pub limits: Limits,
    /// Plain-language findings (leaks), also shown in the text report.
    pub findings: Vec<String>,
    /// Whether the node that answered a search held the data.
    pub holder: HolderReport,
    /// The known-content adversary (`src/audit/known_content.rs`), when
    /// `workload.json` names who fetched each file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_content: Option<KnownContentReport>,
    /// The first hop plus the exit (`src/audit/first_hop_exit.rs`), when
    /// the workload names fetchers and the run has tunnels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hop_exit: Option<FirstHopExitReport>,
}

/// A pool of colluders (`--colluders`, else a quarter of the nodes) that
/// links each tunnel it exits to one it entered, by timing and volume, and
/// names who fetched the files whose keys it opened.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct FirstHopExitReport {
    /// Nodes in the pool.
    pub colluders: usize,
    /// (tunnel the pool exited, file whose keys it opened) pairs, over
    /// files no pool member fetched.
    pub exited: usize,
    /// Those the pool linked to a tunnel it entered (it named someone).
    pub linked: usize,
    /// Those where the named node started that tunnel and fetched the file.
    pub right: usize,
    /// right / exited: P(the pool names the fetcher | it is the exit).
    pub p_right: Option<f64>,
    /// Its Wilson 95% interval.
    pub interval: Option<[f64; 2]>,
    /// The mean share of a fetcher's neighbours in the pool: what the pool
    /// gets right by holding the first hop.
    pub first_hop_share: Option<f64>,
    /// An opened cell is linked to an entry cell at most this far ahead.
    pub window_ms: u64,
    /// The verdict fails when the interval's lower bound exceeds
    /// `first_hop_share` by more than this.
    pub max_excess: f64,
    /// `"pass"` or `"fail"`.
    pub verdict: String,
}

/// A node (or the pooled `--colluders`) that knows every key of the
/// workload's files decides, for each neighbour and file, whether that
/// neighbour downloaded it, from the share of the file's keys it saw come
/// from that neighbour.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct KnownContentReport {
    /// (observer or pool, neighbour, file) triples scored.
    pub pairs: usize,
    /// Those where the neighbour did fetch the file.
    pub positives: usize,
    /// ROC AUC of the share of keys seen (ties one half).
    pub auc: Option<f64>,
    /// Of the rule "the neighbour sent at least `threshold` of the file's keys".
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub threshold: f64,
    /// The verdict's limit on `auc`.
    pub max_auc: f64,
    /// `"pass"`, `"fail"` or `"inconclusive"` (one class only).
    pub verdict: String,
}

/// P(holder | the node that answered): over every search that found its
/// block, how often the neighbour the requester got it from is the node
/// that answered from what it held (`src/audit/holder.rs`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct HolderReport {
    /// Searches that found their block (requests of a client's node, or an
    /// exit's searches).
    pub searches: usize,
    /// Those whose answering neighbour held the block.
    pub from_holder: usize,
    /// from_holder / searches.
    pub p: Option<f64>,
    /// Its Wilson 95% interval.
    pub interval: Option<[f64; 2]>,
}

/// The verdict's limits.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Limits {
    pub max_posterior: f64,
    pub max_auc: f64,
    pub min_support: usize,
}

/// The result of auditing a testnet directory.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct AuditReport {
    /// The schema version of `veil audit --json` (docs/formats.md).
    pub version: crate::formats::Version<1>,
    pub dir: String,
    pub nodes: usize,
    /// Originated requests (origin.jsonl start lines).
    pub requests: OpCounts,
    /// Originated requests whose outcome is `found` / `inserted`.
    pub succeeded: OpCounts,
    /// Hops per successful get: `DataFound` replies sent for its uid.
    pub hops: Summary,
    /// `request_sent` + `reply_sent` lines per originated request.
    pub messages_per_request: Summary,
    /// `RouteNotFound` + `RejectedLoop` replies sent.
    pub backtracks: usize,
    /// `RejectedLoop` replies sent.
    pub loops_rejected: usize,
    /// Those by the operation of the request they refused.
    pub loops_by_op: OpCounts,
    /// Block searches: originated requests plus the exits' searches.
    pub block_requests: OpCounts,
    /// Tunnel traffic (the `tunnel` mode's builds, batches and the exits'
    /// searches); absent when no tunnel message was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnels: Option<TunnelTraffic>,
    pub violations: Violations,
    pub anonymity: Anonymity,
    pub warnings: Vec<String>,
}

/// What the tunnels carried, counted from every node's `audit.jsonl` and
/// labelled with the originators' `origin.jsonl`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct TunnelTraffic {
    /// Tunnel builds the originators sent: one per tunnel.
    pub tunnels: usize,
    /// Builds relays sent on, extending a walk.
    pub extensions: usize,
    /// Hops per tunnel: (builds sent in all) / tunnels.
    pub mean_walk_hops: Option<f64>,
    /// Cells the originators sent into their tunnels (`TunnelForward`:
    /// extensions, keys and blocks alike, which no relay can tell apart).
    pub cells: usize,
    /// Cells relays passed on, either way.
    pub cells_relayed: usize,
    /// Cells the exits opened, and the routing keys in them.
    pub cells_opened: usize,
    pub keys_opened: usize,
    /// Cells sent or relayed whose audit record carries a routing key. A
    /// relay cannot read a cell, so this is 0 unless a log leaks.
    pub relayed_with_keys: usize,
    /// Searches the exits started for the keys and blocks they were sent.
    pub exit_searches: OpCounts,
    /// Exit searches that found the block, or stored the insert.
    pub exit_succeeded: OpCounts,
    /// Hops per exit search that found its block (`DataFound` replies sent
    /// for its uid), as `hops` counts them for a client's own gets.
    pub exit_hops: Summary,
    /// Cells the exits (and extending last hops) sealed and sent back.
    pub exit_answers: usize,
    /// `TunnelDown` messages sent (a hop gone, idle, or refused).
    pub tunnels_down: usize,
}

impl AuditReport {
    /// `RejectedLoop` replies per block search (`None` without searches).
    pub fn loops_per_block_request(&self) -> Option<f64> {
        per(self.loops_rejected, self.block_requests.total)
    }

    /// Violations of the protocol invariants (the leak check included).
    pub fn violation_count(&self) -> usize {
        self.violations.total
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
    }
}

/// `n / of`, or `None` when `of` is 0.
pub(crate) fn per(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}
