//! The audit report: what `veil audit` prints (as text or JSON), and its
//! text form.

use serde::Serialize;

use crate::message::Htl;

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

fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}

fn render_tunnels(out: &mut String, t: &TunnelTraffic) {
    let (s, k) = (&t.exit_searches, &t.exit_succeeded);
    out.push_str(&format!(
        "  tunnels: {} built, {} extensions, {} hops per walk on average; {} torn down\n\
         \x20 cells sent by originators: {}; relayed {} times ({} relayed cells carry a key); \
         opened by exits: {} ({} keys)\n\
         \x20 exits' searches: {} (get {}, put {}); found {}/{}, inserted {}/{}; \
         {} answers sent back\n\
         \x20 hops per exit get found: median {}, p95 {}, max {}\n",
        t.tunnels,
        t.extensions,
        f3(t.mean_walk_hops),
        t.tunnels_down,
        t.cells,
        t.cells_relayed,
        t.relayed_with_keys,
        t.cells_opened,
        t.keys_opened,
        s.total,
        s.get,
        s.put,
        k.get,
        s.get,
        k.put,
        s.put,
        t.exit_answers,
        f3(t.exit_hops.median),
        f3(t.exit_hops.p95),
        f3(t.exit_hops.max),
    ));
}

fn render_invariant(out: &mut String, name: &str, inv: &Invariant) {
    out.push_str(&format!("  {name}: {}\n", inv.count));
    for e in &inv.examples {
        out.push_str(&format!("    - {e}\n"));
    }
}

/// Signals, the combined adversary, posteriors and the verdict.
fn render_adversary(out: &mut String, a: &Anonymity) {
    if !a.colluders.is_empty() {
        out.push_str(&format!(
            "  colluders ({}): {}\n",
            a.colluders.len(),
            a.colluders.join(" ")
        ));
    }
    out.push_str(&format!(
        "\nSignals: P(originator | bin), Wilson 95% interval (base rate {}; the verdict counts bins with n >= {})\n",
        f3(a.base_rate),
        a.limits.min_support
    ));
    for t in &a.signals {
        out.push_str(&format!("  {} ({})\n", t.name, t.description));
        for b in &t.bins {
            out.push_str(&format!(
                "    {:<14} n={:<6} p={:.3} [{:.3}, {:.3}]\n",
                b.bin, b.support, b.p, b.lower, b.upper
            ));
        }
    }
    let ci = a.auc_ci.map_or_else(
        || "n/a".to_string(),
        |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"),
    );
    out.push_str(&format!(
        "\nCombined adversary (naive Bayes over all signals, 2-fold by file over {} groups): AUC {} (95% CI {ci})\n",
        a.cv_groups,
        f3(a.auc)
    ));
    let e = &a.entropy;
    out.push_str(&format!(
        "Per request posterior over {} requests: d min {}, p5 {}, median {}; originator ranked first in {}, median rank {}\n",
        e.requests_observed,
        f3(e.min_degree),
        f3(e.p5_degree),
        f3(e.median_degree),
        e.originator_ranked_first,
        f3(e.originator_rank.median)
    ));
    if let Some(k) = &a.known_content {
        out.push_str(&format!(
            "Known content: over {} (observer, neighbour, file) triples ({} downloads), AUC {}; \
             precision {}, recall {} at a share >= {}: {}\n",
            k.pairs,
            k.positives,
            f3(k.auc),
            f3(k.precision),
            f3(k.recall),
            k.threshold,
            k.verdict.to_uppercase()
        ));
    }
    if let Some(p) = &a.first_hop_exit {
        out.push_str(&format!(
            "First hop + exit: a pool of {} linked {} of the {} (tunnel it exited, file) pairs \
             by timing and named the fetcher in {} (P {}, 95% interval {}); it holds {} of a \
             fetcher's neighbours: {}\n",
            p.colluders,
            p.linked,
            p.exited,
            p.right,
            f3(p.p_right),
            p.interval
                .map_or_else(|| "n/a".to_string(), |[l, u]| format!("[{l:.3}, {u:.3}]")),
            f3(p.first_hop_share),
            p.verdict.to_uppercase()
        ));
    }
    let h = &a.holder;
    out.push_str(&format!(
        "Holder: the neighbour that answered a search held the block in {} of {} searches \
         (P {}, 95% interval {})\n",
        h.from_holder,
        h.searches,
        f3(h.p),
        h.interval
            .map_or_else(|| "n/a".to_string(), |[l, u]| format!("[{l:.3}, {u:.3}]"))
    ));
    if let Some(w) = &a.max_posterior {
        out.push_str(&format!(
            "Worst counted bin: {} = {} (p {:.3}, upper {:.3}, n {})\n",
            w.signal, w.bin, w.p, w.upper, w.support
        ));
    }
    if a.passed() {
        let known = a.known_content.as_ref().map_or_else(String::new, |k| {
            format!(", known content AUC <= {}", k.max_auc)
        });
        let pair = a.first_hop_exit.as_ref().map_or_else(String::new, |p| {
            format!(", first hop + exit within its share + {}", p.max_excess)
        });
        out.push_str(&format!(
            "ANONYMITY: PASS (every counted bin's upper bound <= {}, AUC <= {}{known}{pair})\n",
            a.limits.max_posterior, a.limits.max_auc
        ));
    } else if a.inconclusive() {
        out.push_str("ANONYMITY: INCONCLUSIVE\n");
        for f in &a.failures {
            out.push_str(&format!("  {f}\n"));
        }
    } else {
        out.push_str(&format!(
            "ANONYMITY: FAIL ({})\n",
            a.failing_signal().unwrap_or("?")
        ));
        for f in &a.failures {
            out.push_str(&format!("  {f}\n"));
        }
    }
}

impl AuditReport {
    /// Violations of the protocol invariants (the leak check included).
    pub fn violation_count(&self) -> usize {
        self.violations.total
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
    }

    /// A compact, readable report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("veil audit {} ({} nodes)\n", self.dir, self.nodes));
        out.push_str("\nTraffic\n");
        let (r, s) = (&self.requests, &self.succeeded);
        out.push_str(&format!(
            "  requests: {} (get {}, put {}); succeeded: {} (get {}, put {})\n",
            r.total, r.get, r.put, s.total, s.get, s.put
        ));
        out.push_str(&format!(
            "  hops per successful get: median {}, p95 {}, max {} (n = {})\n",
            f3(self.hops.median),
            f3(self.hops.p95),
            f3(self.hops.max),
            self.hops.count
        ));
        let m = &self.messages_per_request;
        out.push_str(&format!(
            "  messages per request: mean {}, median {}, max {}\n",
            f3(m.mean),
            f3(m.median),
            f3(m.max)
        ));
        out.push_str(&format!(
            "  backtracks (RouteNotFound + RejectedLoop): {}; loops rejected: {}\n",
            self.backtracks, self.loops_rejected
        ));
        if let Some(t) = &self.tunnels {
            render_tunnels(&mut out, t);
        }

        let v = &self.violations;
        out.push_str(&format!("\nInvariants ({} violations)\n", v.total));
        render_invariant(&mut out, "misrouted_reply", &v.misrouted_reply);
        render_invariant(&mut out, "htl_overspent", &v.htl_overspent);
        render_invariant(&mut out, "remembered_uid", &v.remembered_uid);
        if v.leak.checked {
            out.push_str(&format!(
                "  leak: {} ({} workload files, {} node files scanned)\n",
                v.leak.count, v.leak.workload_files, v.leak.files_scanned
            ));
            for e in &v.leak.examples {
                out.push_str(&format!("    - {e}\n"));
            }
        } else {
            out.push_str("  leak: not checked (no workload.json)\n");
        }

        let a = &self.anonymity;
        out.push_str("\nAnonymity (each node's local view: is my neighbour the originator?)\n");
        out.push_str(&format!(
            "  observations: {} requests received, {} from their originator (base rate {}); max htl {} ({})\n",
            a.observations,
            a.positives,
            f3(a.base_rate),
            a.max_htl.map_or_else(|| "n/a".to_string(), |m| m.to_string()),
            a.max_htl_source
        ));
        out.push_str(&format!(
            "  {:<14} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}\n",
            "signal", "TP", "FP", "FN", "TN", "precision", "recall", "lift"
        ));
        for c in &a.classifiers {
            out.push_str(&format!(
                "  {:<14} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}\n",
                c.name,
                c.tp,
                c.fp,
                c.fn_,
                c.tn,
                f3(c.precision),
                f3(c.recall),
                f3(c.lift)
            ));
        }
        out.push_str(
            "  (first_seen holds on every first hop, so its recall is 1 by construction; \
             it is only as precise as uids are rare to come back)\n",
        );
        let e = &a.entropy;
        out.push_str(&format!(
            "  best-observer entropy over {} observed requests ({} unobserved): mean {} bits, min {} bits (of {} max)\n",
            e.requests_observed,
            e.requests_unobserved,
            f3(e.mean_bits),
            f3(e.min_bits),
            f3(e.max_bits)
        ));
        out.push_str(&format!(
            "  degree of anonymity d = H / log2 N: mean {}, min {}\n",
            f3(e.mean_degree),
            f3(e.min_degree)
        ));
        for f in &a.findings {
            out.push_str(&format!("  {f}\n"));
        }
        render_adversary(&mut out, a);
        if !self.warnings.is_empty() {
            out.push_str("\nWarnings\n");
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        out
    }
}
