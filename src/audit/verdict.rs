//! The anonymity verdict: FAIL when some signal's counted bin could put
//! P(originator) above the limit, or when the combined adversary's AUC is
//! above its limit; PASS otherwise.
//!
//! Only bins with at least `min_support` observations count, and a bin is
//! judged by the upper bound of its Wilson 95% interval (a bin passes only
//! if even its upper bound is within the limit). The AUC is judged by its
//! cross-validated point estimate; its bootstrap interval is reported.

use super::report::{Anonymity, Limits, WorstBin};

/// Bins with fewer observations do not count toward the verdict.
pub const MIN_SUPPORT: usize = 20;

/// Fill in `max_posterior`, `verdict` and `failures`.
pub(super) fn judge(a: &mut Anonymity, limits: &Limits) {
    let mut counted: Vec<WorstBin> = a
        .signals
        .iter()
        .flat_map(|t| {
            t.bins
                .iter()
                .filter(|b| b.support >= limits.min_support)
                .map(|b| WorstBin {
                    signal: t.name.clone(),
                    bin: b.bin.clone(),
                    support: b.support,
                    p: b.p,
                    upper: b.upper,
                })
        })
        .collect();
    // The worst bin first; among bins with the same upper bound (several
    // can reach 1.0 in `none` mode), the one with the most evidence.
    counted.sort_by(|x, y| {
        y.upper
            .total_cmp(&x.upper)
            .then(y.p.total_cmp(&x.p))
            .then(y.support.cmp(&x.support))
    });
    a.failures.clear();
    for b in counted.iter().filter(|b| b.upper > limits.max_posterior) {
        a.failures.push(format!(
            "signal {} = {}: P(originator) = {:.3}, upper bound {:.3} > {} (n = {})",
            b.signal, b.bin, b.p, b.upper, limits.max_posterior, b.support
        ));
    }
    if let Some(auc) = a.auc.filter(|auc| *auc > limits.max_auc) {
        a.failures.push(format!(
            "classifier: cross-validated AUC {auc:.3} > {}",
            limits.max_auc
        ));
    }
    a.max_posterior = counted.into_iter().next();
    a.limits = limits.clone();
    a.verdict = if a.failures.is_empty() {
        "pass"
    } else {
        "fail"
    }
    .to_string();
    if a.positives == 0 {
        // With no observation labelled "from its originator", every figure
        // above is computed on one class only: a PASS would say nothing.
        // (A run whose nodes wrote no origin.jsonl, or whose clients started
        // nothing the adversary could see.)
        a.verdict = "inconclusive".to_string();
        a.failures = vec![format!(
            "none of the {} observations is labelled as sent by its originator: \
             the audit cannot measure this run (no origin.jsonl ground truth, \
             or no client traffic the adversary observed)",
            a.observations
        )];
    }
}

impl Anonymity {
    /// Could the audit measure the run at all? See [`judge`].
    pub fn inconclusive(&self) -> bool {
        self.verdict == "inconclusive"
    }

    /// Did the anonymity verdict pass?
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// The signal the verdict failed on first (the worst bin's signal, or
    /// `classifier`).
    pub fn failing_signal(&self) -> Option<&str> {
        let first = self.failures.first()?;
        let rest = first.strip_prefix("signal ").unwrap_or(first);
        rest.split([' ', ':']).next()
    }
}
