//! What a neighbour (or a pool of colluders) could infer about who
//! originated a request: the observations and their features
//! ([`super::features`]), one signal at a time ([`super::signals`]), the
//! combined adversary ([`super::classifier`]), per-request posteriors
//! ([`super::posterior`]) and the verdict ([`super::verdict`]). The older
//! fixed HTL rules stay as `classifiers` (confusion matrices).

use std::collections::HashSet;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::features::{observe, FileKeys, Observation};
use super::load::Run;
use super::report::{Anonymity, Classifier, Limits, Summary};
use super::{classifier, posterior, signals, verdict};
use crate::message::Htl;
use crate::routing::Op;

/// A rule at least this precise (and better than the base rate) is called
/// out as a leak in the text report.
const LEAK_PRECISION: f64 = 0.9;

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// What the adversary is and how it is judged.
pub(super) struct Setup<'a> {
    pub files: &'a FileKeys,
    pub workload_max: Option<Htl>,
    pub colluders: Option<usize>,
    pub seed: u64,
    pub limits: Limits,
}

/// Score the run.
/// The `--colluders` pool: `c` nodes drawn from the seed (the same pool for
/// every adversary of one audit).
pub(super) fn colluder_pool(run: &Run, c: Option<usize>, seed: u64) -> Option<HashSet<usize>> {
    c.map(|c| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = run.nodes.len();
        sample(&mut rng, n, c.min(n)).into_iter().collect()
    })
}

pub(super) fn score(run: &Run, setup: &Setup) -> Anonymity {
    let all = observe(run, setup.files);
    let pool = colluder_pool(run, setup.colluders, setup.seed);
    // With colluders, only what they saw, of requests from outside the pool.
    let obs: Vec<&Observation> = all
        .iter()
        .filter(|o| {
            pool.as_ref()
                .is_none_or(|p| p.contains(&o.observer) && !p.contains(&o.sender))
        })
        .collect();
    let positives = obs.iter().filter(|o| o.truth).count();
    let largest_htl = obs.iter().filter_map(|o| o.htl).max();
    let (max_htl, source) = match setup.workload_max {
        Some(m) => (Some(m), "workload.json"),
        None => (largest_htl, "largest htl observed"),
    };
    let mut a = Anonymity {
        observations: obs.len(),
        positives,
        base_rate: ratio(positives, obs.len()),
        max_htl,
        max_htl_source: source.to_string(),
        ..Anonymity::default()
    };
    if let Some(p) = &pool {
        let mut names: Vec<String> = p.iter().map(|i| run.nodes[*i].name.clone()).collect();
        names.sort();
        a.colluders = names;
    }
    rules(&obs, &mut a);

    let features = signals::features();
    a.signals = signals::tables(&obs, &features);
    let scored = classifier::cross_validate(&obs, &features, setup.seed);
    a.auc = scored.auc;
    a.auc_ci = scored.auc_ci.map(|(lo, hi)| [lo, hi]);
    a.cv_groups = scored.groups;

    let post = posterior::posteriors(run, &obs, &scored.score, pool.as_ref());
    let e = &mut a.entropy;
    e.requests_observed = post.views.len();
    e.requests_unobserved = post.unobserved;
    let n = run.nodes.len();
    let hs: Vec<f64> = post.views.iter().map(|v| v.h).collect();
    let ds: Vec<f64> = post.views.iter().map(|v| v.d).collect();
    e.requests_exposed = post
        .views
        .iter()
        .filter(|v| v.rank == 1 && v.p_originator >= 0.99)
        .count();
    e.originator_ranked_first = post.views.iter().filter(|v| v.rank == 1).count();
    let ranks: Vec<f64> = post.views.iter().map(|v| v.rank as f64).collect();
    e.originator_rank = Summary::of(&ranks);
    if !hs.is_empty() {
        let h = Summary::of(&hs);
        e.mean_bits = h.mean;
        e.min_bits = hs.iter().copied().reduce(f64::min);
        if n >= 2 {
            e.max_bits = Some((n as f64).log2());
            let d = Summary::of(&ds);
            e.mean_degree = d.mean;
            e.median_degree = d.median;
            e.min_degree = ds.iter().copied().reduce(f64::min);
            let mut sorted = ds.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = ((0.05 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            e.p5_degree = Some(sorted[rank - 1]);
        }
    }
    a.d_median = e.median_degree;
    if e.requests_exposed > 0 {
        a.findings.push(format!(
            "EXPOSED: for {} of {} observed requests an adversary gave the originator posterior >= 0.99",
            e.requests_exposed, e.requests_observed
        ));
    }
    verdict::judge(&mut a, &setup.limits);
    a
}

/// The fixed rules (htl at or near the maximum, first sight of a flow, an
/// insert) as confusion matrices.
fn rules(obs: &[&Observation], a: &mut Anonymity) {
    type Rule = Box<dyn Fn(&Observation) -> bool>;
    let mut rules: Vec<(String, String, Rule)> = Vec::new();
    if let Some(m) = a.max_htl {
        rules.push((
            "htl_is_max".into(),
            "a request arriving with htl = max".into(),
            Box::new(move |o: &Observation| o.htl == Some(m)),
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
            rules.push((
                format!("htl_ge_{t}"),
                format!("a request arriving with htl >= {t}"),
                Box::new(move |o: &Observation| o.htl.is_some_and(|h| h >= t)),
            ));
        }
    }
    rules.push((
        "first_seen".into(),
        "a request for a flow the node had never seen".into(),
        Box::new(|o: &Observation| o.first_seen),
    ));
    rules.push((
        "op_is_put".into(),
        "an insert".into(),
        Box::new(|o: &Observation| crate::formats::audit_log::request_op(o.kind) == Some(Op::Put)),
    ));
    for (name, description, rule) in rules {
        let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
        for o in obs {
            match (rule(o), o.truth) {
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
}
