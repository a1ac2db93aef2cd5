//! Per request: the adversary's posterior over all N nodes as the
//! originator, from the classifier's (out-of-sample) probabilities and the
//! topology, its entropy H, d = H / log2 N, and the originator's rank.
//!
//! The adversary is one node (every node in turn; a request counts with
//! its most informed observer) or a pool of colluders. The candidates are
//! every node outside the adversary (it knows it did not originate the
//! request). The classifier's out-of-sample probability p that a sender S
//! originated what it sent is already P(S is the originator | what the
//! adversary saw of S): S gets p, and the rest, 1 - p, is spread evenly
//! over every other candidate (the adversary has no evidence that favours
//! one node it never heard from over another). Several observations of the
//! same flow from the same sender (a tunnel's batches) are one piece of
//! evidence, scored by their mean probability; senders of the same flow
//! are mutually exclusive explanations, each weighted by its odds.
//!
//! A request is a flow its originator started: a uid (every hop of a
//! request shares it) or, in tunnel mode, the tunnel id on the
//! originator's first link (the builds and batches its first hop saw).

use std::collections::{HashMap, HashSet};

use super::features::Observation;
use super::load::Run;
use crate::message::Uid;

/// Probabilities are kept in [CLIP, 1 - CLIP] so one observation never
/// makes a posterior exactly 0 or 1.
const CLIP: f64 = 1e-4;

/// One request as its best-informed adversary sees it.
#[derive(Clone, Debug)]
pub(super) struct RequestView {
    /// Entropy of the posterior, bits.
    pub h: f64,
    /// h / log2 N.
    pub d: f64,
    /// The originator's rank in the posterior (1 = most likely).
    pub rank: usize,
    /// The posterior probability of the true originator.
    pub p_originator: f64,
}

/// The requests and what their adversaries learn.
pub(super) struct Posteriors {
    pub views: Vec<RequestView>,
    /// Requests no adversary observed.
    pub unobserved: usize,
}

fn view(
    n: usize,
    excluded: &HashSet<usize>,
    weights: &HashMap<usize, f64>,
    originator: usize,
) -> RequestView {
    let candidates = n - excluded.len();
    // Summed in node order, so that the same weights give the same bits.
    let mut ordered: Vec<(usize, f64)> = weights.iter().map(|(x, w)| (*x, *w)).collect();
    ordered.sort_unstable_by_key(|(x, _)| *x);
    let max_w = ordered.iter().map(|(_, w)| *w).fold(0.0, f64::max);
    // Candidates without an observation have log-weight 0.
    let rest = candidates.saturating_sub(weights.len()) as f64;
    let z = rest * (-max_w).exp() + ordered.iter().map(|(_, w)| (w - max_w).exp()).sum::<f64>();
    let q = |w: f64| (w - max_w).exp() / z;
    let q_rest = q(0.0);
    let mut h = 0.0;
    if q_rest > 0.0 {
        h -= rest * q_rest * q_rest.log2();
    }
    for (_, w) in &ordered {
        let p = q(*w);
        if p > 0.0 {
            h -= p * p.log2();
        }
    }
    let h = h.max(0.0);
    let p_orig = q(weights.get(&originator).copied().unwrap_or(0.0));
    let above_rest = if q_rest > p_orig { rest as usize } else { 0 };
    let rank = 1
        + above_rest
        + weights
            .iter()
            .filter(|(x, w)| **x != originator && q(**w) > p_orig)
            .count();
    let hmax = (n as f64).log2();
    RequestView {
        h,
        d: if hmax > 0.0 { h / hmax } else { 0.0 },
        rank,
        p_originator: p_orig,
    }
}

/// The posterior of every request originated outside the adversary.
/// `colluders` pools those nodes; `None` makes each node its own adversary.
pub(super) fn posteriors(
    run: &Run,
    obs: &[&Observation],
    score: &[f64],
    colluders: Option<&HashSet<usize>>,
) -> Posteriors {
    let n = run.nodes.len();
    let mut by_flow: HashMap<Uid, Vec<usize>> = HashMap::new();
    for (i, o) in obs.iter().enumerate() {
        by_flow.entry(o.flow).or_default().push(i);
    }
    let mut out = Posteriors {
        views: Vec::new(),
        unobserved: 0,
    };
    for (x, node) in run.nodes.iter().enumerate() {
        if colluders.is_some_and(|c| c.contains(&x)) {
            continue;
        }
        let mut flows: Vec<Uid> = node.originated.clone();
        let mut started: Vec<Uid> = node.flows_started.iter().map(|(f, _)| *f).collect();
        started.sort_unstable();
        flows.extend(started);
        let mut once = HashSet::new();
        flows.retain(|f| once.insert(*f));
        for flow in flows {
            let seen = by_flow
                .get(&flow)
                .into_iter()
                .flatten()
                .copied()
                .filter(|i| obs[*i].observer != x);
            // The adversaries: the pool, or each observer on its own.
            let mut adversaries: HashMap<Vec<usize>, Vec<usize>> = HashMap::new();
            for i in seen {
                let who = match colluders {
                    Some(c) => {
                        let mut all: Vec<usize> = c.iter().copied().collect();
                        all.sort_unstable();
                        all
                    }
                    None => vec![obs[i].observer],
                };
                adversaries.entry(who).or_default().push(i);
            }
            let best = adversaries
                .iter()
                .map(|(who, seen)| {
                    let excluded: HashSet<usize> = who.iter().copied().collect();
                    // Each sender's mean probability over its observations.
                    let mut per_sender: HashMap<usize, (f64, usize)> = HashMap::new();
                    for &i in seen {
                        let e = per_sender.entry(obs[i].sender).or_default();
                        e.0 += score[i];
                        e.1 += 1;
                    }
                    per_sender.retain(|s, _| !excluded.contains(s));
                    let candidates = n.saturating_sub(excluded.len());
                    let rest = candidates.saturating_sub(per_sender.len()).max(1) as f64;
                    // Log-weights against a silent candidate's 0.
                    let weights: HashMap<usize, f64> = per_sender
                        .into_iter()
                        .map(|(s, (sum, k))| {
                            let p = (sum / k as f64).clamp(CLIP, 1.0 - CLIP);
                            (s, (p / (1.0 - p)).ln() + rest.ln())
                        })
                        .collect();
                    (who, view(n, &excluded, &weights, x))
                })
                // Equal entropies (two observers each scoring their sender
                // alike) go to the lowest observer, not to the hash map's
                // order: same run, same figures.
                .min_by(|(wa, a), (wb, b)| a.h.total_cmp(&b.h).then_with(|| wa.cmp(wb)))
                .map(|(_, v)| v);
            match best {
                Some(v) => out.views.push(v),
                None => out.unobserved += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_evidence_is_uniform_and_strong_evidence_names_the_sender() {
        let excluded: HashSet<usize> = [0].into_iter().collect();
        let v = view(9, &excluded, &HashMap::new(), 3);
        assert!((v.h - 3.0).abs() < 1e-9, "{v:?}");
        assert!((v.p_originator - 0.125).abs() < 1e-9);
        let weights: HashMap<usize, f64> = [(3, 20.0)].into_iter().collect();
        let v = view(9, &excluded, &weights, 3);
        assert!(v.h < 0.01 && v.rank == 1 && v.p_originator > 0.99, "{v:?}");
        let v = view(9, &excluded, &weights, 4);
        assert!(v.rank > 1 && v.p_originator < 0.01, "{v:?}");
    }

    #[test]
    fn one_sender_gets_its_probability_and_the_rest_is_even() {
        // 9 nodes, the adversary is node 0: 8 candidates. Sender 3 scored
        // 0.25 gets 0.25; the 7 others share 0.75.
        let excluded: HashSet<usize> = [0].into_iter().collect();
        let rest: f64 = 7.0;
        let weights: HashMap<usize, f64> = [(3, (0.25f64 / 0.75).ln() + rest.ln())]
            .into_iter()
            .collect();
        let v = view(9, &excluded, &weights, 3);
        assert!((v.p_originator - 0.25).abs() < 1e-9, "{v:?}");
        let v = view(9, &excluded, &weights, 5);
        assert!((v.p_originator - 0.75 / 7.0).abs() < 1e-9, "{v:?}");
    }
}
