//! The audit report's text form (`veil audit` without `--json`).

use super::{per, Anonymity, AuditReport, Invariant, TunnelTraffic};

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
            "  backtracks (RouteNotFound + RejectedLoop): {}; loops rejected: {} \
             ({} per block request; get {}, put {})\n",
            self.backtracks,
            self.loops_rejected,
            f3(self.loops_per_block_request()),
            f3(per(self.loops_by_op.get, self.block_requests.get)),
            f3(per(self.loops_by_op.put, self.block_requests.put)),
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
