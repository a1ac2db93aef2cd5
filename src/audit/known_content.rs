//! The known-content adversary (the attack Levine et al., CCS 2020, used
//! against Freenet): a node, or a pool of colluding nodes, that knows every
//! routing key of the workload's files decides, for each neighbour and each
//! file, whether that neighbour downloaded the file. Its evidence is every
//! key of the file it could read arriving from that neighbour: the keys of
//! requests and inserts, and what it opened as a tunnel's exit. Its score
//! is the share of the file's keys so seen. Ground truth (never a signal)
//! is the workload's record of who fetched each file (`fetched_by` in
//! `workload.json`).
//!
//! Reported: the ROC AUC of the score (ties count one half), and precision
//! and recall of the rule "a neighbour sent at least half the file's keys".
//! The verdict fails above `max_auc` ([`MAX_AUC`] by default).

use std::collections::{HashMap, HashSet};

use super::load::Run;
use super::report::KnownContentReport;
use crate::formats::testnet::WorkloadInfo;
use crate::keys::RoutingKey;

/// The known-content adversary passes at or below this AUC by default
/// (`veil audit --max-known-content-auc`).
pub const MAX_AUC: f64 = 0.6;

/// The share of a file's keys from one neighbour that the rule calls a
/// download.
const THRESHOLD: f64 = 0.5;

/// The workload's ground truth, by node index: who fetched each file, and
/// which file each routing key belongs to.
pub(super) struct Truth {
    pub fetchers: Vec<HashSet<usize>>,
    pub file_of: HashMap<RoutingKey, usize>,
}

impl Truth {
    /// `None` for a workload.json without ground truth (an older testnet).
    pub(super) fn of(run: &Run, workload: &WorkloadInfo) -> Option<Truth> {
        let index = run.index();
        let fetchers: Vec<HashSet<usize>> = workload
            .files
            .iter()
            .map(|f| {
                f.fetched_by
                    .iter()
                    .filter_map(|n| index.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        if fetchers.iter().all(HashSet::is_empty) {
            return None;
        }
        let file_of = workload
            .files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.keys.iter().map(move |k| (*k, i)))
            .collect();
        Some(Truth { fetchers, file_of })
    }
}

/// Score every (observer or pool, neighbour, file) the workload allows.
pub(super) fn measure(
    run: &Run,
    workload: &WorkloadInfo,
    pool: Option<&HashSet<usize>>,
    max_auc: f64,
) -> Option<KnownContentReport> {
    let index = run.index();
    let Truth { fetchers, file_of } = Truth::of(run, workload)?;
    // (viewpoint, neighbour) -> file -> keys of it seen from that neighbour.
    // A viewpoint is one node, or the whole pool (usize::MAX).
    let mut seen: HashMap<(usize, usize), HashMap<usize, HashSet<RoutingKey>>> = HashMap::new();
    let mut pairs: HashSet<(usize, usize)> = HashSet::new();
    for (o, node) in run.nodes.iter().enumerate() {
        if pool.is_some_and(|p| !p.contains(&o)) {
            continue;
        }
        let view = if pool.is_some() { usize::MAX } else { o };
        for name in node.neighbours.keys() {
            if let Some(&s) = index.get(name.as_str()) {
                if !pool.is_some_and(|p| p.contains(&s)) {
                    pairs.insert((view, s));
                }
            }
        }
        for line in node.events.iter().filter(|l| !l.sent && !l.keys.is_empty()) {
            let Some(&s) = index.get(line.peer.as_str()) else {
                continue;
            };
            if pool.is_some_and(|p| p.contains(&s)) {
                continue;
            }
            pairs.insert((view, s));
            for k in &line.keys {
                if let Some(&f) = file_of.get(k) {
                    seen.entry((view, s))
                        .or_default()
                        .entry(f)
                        .or_default()
                        .insert(*k);
                }
            }
        }
    }
    let mut scored: Vec<(f64, bool)> = Vec::new();
    for &(view, s) in &pairs {
        for (f, file) in workload.files.iter().enumerate() {
            let got = seen
                .get(&(view, s))
                .and_then(|m| m.get(&f))
                .map_or(0, HashSet::len);
            let score = got as f64 / file.keys.len().max(1) as f64;
            let truth = fetchers.get(f).is_some_and(|set| set.contains(&s));
            scored.push((score, truth));
        }
    }
    let positives = scored.iter().filter(|(_, t)| *t).count();
    let flagged = scored.iter().filter(|(s, _)| *s >= THRESHOLD).count();
    let hits = scored.iter().filter(|(s, t)| *t && *s >= THRESHOLD).count();
    let auc = auc(&scored);
    let verdict = match auc {
        Some(a) if a > max_auc => "fail",
        Some(_) => "pass",
        None => "inconclusive",
    };
    Some(KnownContentReport {
        pairs: scored.len(),
        positives,
        auc,
        precision: (flagged > 0).then(|| hits as f64 / flagged as f64),
        recall: (positives > 0).then(|| hits as f64 / positives as f64),
        threshold: THRESHOLD,
        max_auc,
        verdict: verdict.to_string(),
    })
}

/// ROC AUC, ties one half; `None` without both classes.
fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let (score, labels): (Vec<f64>, Vec<bool>) = scored.iter().copied().unzip();
    let all: Vec<usize> = (0..scored.len()).collect();
    super::classifier::auc(&score, &labels, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_ranks_and_splits_ties() {
        let perfect = [(0.0, false), (1.0, true), (0.2, false), (0.9, true)];
        assert_eq!(auc(&perfect), Some(1.0));
        assert_eq!(auc(&[(0.0, false), (0.0, true)]), Some(0.5));
        assert_eq!(auc(&[(0.3, true)]), None);
    }
}
