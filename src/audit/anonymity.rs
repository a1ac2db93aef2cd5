//! What each node could infer locally about who originated a request:
//! signals scored as classifiers, and anonymity-set entropy.

use std::collections::{HashMap, HashSet};

use super::load::{Ev, OriginStart, Run};
use super::report::{Anonymity, Classifier};
use crate::message::{Htl, Uid};
use crate::routing::Op;

/// A classifier at least this precise (and better than the base rate) is
/// called out as a leak in the text report.
const LEAK_PRECISION: f64 = 0.9;

struct Observation<'a> {
    observer: &'a str,
    uid: Uid,
    htl: Htl,
    op: Op,
    first_seen: bool,
    truth: bool,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Entropy (bits) of an observer's posterior: `p` on its neighbour, the rest
/// spread over the `n - 2` nodes that are neither observer nor neighbour.
fn posterior_entropy(p: f64, n: usize) -> f64 {
    if n <= 2 {
        return 0.0;
    }
    let rest = 1.0 - p;
    let mut h = 0.0;
    if p > 0.0 {
        h -= p * p.log2();
    }
    if rest > 0.0 {
        h -= rest * (rest / (n - 2) as f64).log2();
    }
    h.max(0.0)
}

/// Score each node's local signals, and the best observer's entropy.
pub(super) fn score(run: &Run, workload_max: Option<Htl>) -> Anonymity {
    let originated: HashMap<&str, &HashMap<Uid, OriginStart>> = run
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), &n.starts))
        .collect();
    let mut obs = Vec::new();
    let mut largest_htl: Option<Htl> = None;
    for node in &run.nodes {
        let mut seen: HashSet<Uid> = HashSet::new();
        for line in &node.events {
            match &line.ev {
                Ev::ReqRecv { uid, htl, from, op } => {
                    let truth = originated
                        .get(from.as_str())
                        .is_some_and(|s| s.contains_key(uid));
                    obs.push(Observation {
                        observer: &node.name,
                        uid: *uid,
                        htl: *htl,
                        op: *op,
                        first_seen: !seen.contains(uid),
                        truth,
                    });
                    largest_htl = largest_htl.max(Some(*htl));
                }
                Ev::ReqSent { htl, .. } => largest_htl = largest_htl.max(Some(*htl)),
                _ => {}
            }
            seen.insert(line.ev.uid());
        }
    }
    let (max_htl, source) = match workload_max {
        Some(m) => (Some(m), "workload.json"),
        None => (largest_htl, "largest htl observed"),
    };
    let positives = obs.iter().filter(|o| o.truth).count();
    let mut a = Anonymity {
        observations: obs.len(),
        positives,
        base_rate: ratio(positives, obs.len()),
        max_htl,
        max_htl_source: source.to_string(),
        ..Anonymity::default()
    };

    type Signal = Box<dyn Fn(&Observation) -> bool>;
    let mut signals: Vec<(String, String, Signal)> = Vec::new();
    if let Some(m) = max_htl {
        signals.push((
            "htl_is_max".into(),
            "a request arriving with htl = max".into(),
            Box::new(move |o: &Observation| o.htl == m),
        ));
        let mut thresholds: Vec<Htl> = [
            m.saturating_sub(1),
            m.saturating_sub(2),
            m.saturating_sub(4),
            m / 2,
        ]
        .into_iter()
        .filter(|t| *t >= 1 && *t < m)
        .collect();
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        thresholds.dedup();
        for t in thresholds {
            signals.push((
                format!("htl_ge_{t}"),
                format!("a request arriving with htl >= {t}"),
                Box::new(move |o: &Observation| o.htl >= t),
            ));
        }
    }
    signals.push((
        "first_seen".into(),
        "a request for a uid the node had never seen".into(),
        Box::new(|o: &Observation| o.first_seen),
    ));
    signals.push((
        "op_is_put".into(),
        "an insert".into(),
        Box::new(|o: &Observation| o.op == Op::Put),
    ));
    for (name, description, signal) in signals {
        let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
        for o in &obs {
            match (signal(o), o.truth) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        let precision = ratio(tp, tp + fp);
        if let (Some(p), Some(base)) = (precision, a.base_rate) {
            if tp > 0 && p >= LEAK_PRECISION && p > base {
                a.findings.push(format!(
                    "LEAK: {description} came from its originator in {:.3}% of cases ({tp} of {}; base rate {:.3}%), catching {:.3}% of first hops ({name})",
                    100.0 * p,
                    tp + fp,
                    100.0 * base,
                    100.0 * ratio(tp, tp + fn_).unwrap_or(0.0),
                ));
            }
        }
        a.classifiers.push(Classifier {
            name,
            description,
            tp,
            fp,
            fn_,
            tn,
            precision,
            recall: ratio(tp, tp + fn_),
            lift: match (precision, a.base_rate) {
                (Some(p), Some(b)) if b > 0.0 => Some(p / b),
                _ => None,
            },
        });
    }

    // Best-observer entropy.
    let n = run.nodes.len();
    let mut by_htl: HashMap<Htl, (usize, usize)> = HashMap::new();
    for o in &obs {
        let e = by_htl.entry(o.htl).or_default();
        e.1 += 1;
        if o.truth {
            e.0 += 1;
        }
    }
    let mut best: HashMap<Uid, f64> = HashMap::new();
    let mut originator_of: HashMap<Uid, &str> = HashMap::new();
    for node in &run.nodes {
        for uid in &node.originated {
            originator_of.entry(*uid).or_insert(&node.name);
        }
    }
    for o in &obs {
        let Some(origin) = originator_of.get(&o.uid) else {
            continue;
        };
        if *origin == o.observer {
            continue;
        }
        let (pos, total) = by_htl.get(&o.htl).copied().unwrap_or((0, 1));
        let h = posterior_entropy(pos as f64 / total.max(1) as f64, n);
        let b = best.entry(o.uid).or_insert(f64::INFINITY);
        *b = b.min(h);
    }
    let hs: Vec<f64> = best.values().copied().collect();
    let e = &mut a.entropy;
    e.requests_observed = hs.len();
    e.requests_unobserved = originator_of.len() - hs.len();
    e.requests_exposed = hs.iter().filter(|h| **h < 1e-9).count();
    if !hs.is_empty() {
        let mean = hs.iter().sum::<f64>() / hs.len() as f64;
        let min = hs.iter().copied().fold(f64::INFINITY, f64::min);
        e.mean_bits = Some(mean);
        e.min_bits = Some(min);
        if n >= 2 {
            let hmax = (n as f64).log2();
            e.max_bits = Some(hmax);
            e.mean_degree = Some(mean / hmax);
            e.min_degree = Some(min / hmax);
        }
    }
    if e.requests_exposed > 0 {
        a.findings.push(format!(
            "EXPOSED: for {} of {} observed requests some node could name the originator with certainty (anonymity-set entropy H = 0)",
            e.requests_exposed, e.requests_observed
        ));
    }
    a
}
