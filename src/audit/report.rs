//! The audit report: what `veil audit` prints (as text or JSON), and its
//! text form.

use serde::Serialize;

use crate::message::Htl;

/// How many examples each invariant keeps.
const MAX_EXAMPLES: usize = 5;

/// Counts split by operation.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    pub total: usize,
    pub get: usize,
    pub put: usize,
}

/// A distribution summary; fields are `null` when there are no samples.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
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
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LeakCheck {
    pub checked: bool,
    pub count: usize,
    pub examples: Vec<String>,
    pub files_scanned: usize,
    pub workload_files: usize,
}

/// All invariant checks.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Violations {
    /// Sum of the counts below.
    pub total: usize,
    pub misrouted_reply: Invariant,
    pub htl_overspent: Invariant,
    pub remembered_uid: Invariant,
    pub leak: LeakCheck,
}

/// A local signal scored as a classifier of "my neighbour originated this".
#[derive(Clone, Debug, Serialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
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
}

/// What each node could infer locally about who originated a request.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
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
    /// Plain-language findings (leaks), also shown in the text report.
    pub findings: Vec<String>,
}

/// The result of auditing a testnet directory.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AuditReport {
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
    pub violations: Violations,
    pub anonymity: Anonymity,
    pub warnings: Vec<String>,
}

fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}

fn render_invariant(out: &mut String, name: &str, inv: &Invariant) {
    out.push_str(&format!("  {name}: {}\n", inv.count));
    for e in &inv.examples {
        out.push_str(&format!("    - {e}\n"));
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
        if !self.warnings.is_empty() {
            out.push_str("\nWarnings\n");
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        out
    }
}
