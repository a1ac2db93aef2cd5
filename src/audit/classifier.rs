//! The combined adversary: a categorical naive Bayes classifier over every
//! feature's bins, cross-validated by download (file), scored by ROC AUC
//! with a seeded bootstrap interval.
//!
//! Naive Bayes is a few dozen lines over the bins the signal tables already
//! compute, so it is written here rather than pulled from a crate: the
//! maintained Rust ML crates (linfa, smartcore) bring large dependency trees
//! (ndarray, and BLAS for some) for what is counting and a logarithm.
//!
//! The model: for each feature f and bin b, P(b | originator) and
//! P(b | forwarder) with add-one smoothing; the score of an observation is
//! the posterior P(originator | all its bins), assuming the features are
//! independent given the class.
//!
//! The AUC is stratified by message kind: it is the probability that an
//! originator's message scores above a forwarder's message *of the same
//! kind*. The kind is public, and a kind no originator ever sends (a
//! tunnel's exit sends every `DataRequest` in tunnel mode) says nothing
//! about who originated anything; pooling kinds would credit the adversary
//! for telling tunnel batches from exit requests instead of originators
//! from forwarders. With one kind (the `none` and `freenet` modes send only
//! requests and inserts, both with originators among their senders) it is
//! the plain ROC AUC. For the same reason the adversary trains one model
//! per kind: within a kind, a feature that is the same for every message
//! (no htl on a tunnel batch) says nothing, where one pooled model would
//! count it once per such feature and grow falsely certain.

use std::collections::{BTreeSet, HashMap};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::features::{Group, Observation};
use super::signals::{Bin, Feature};

/// Bootstrap resamples for the AUC interval.
const BOOTSTRAP: usize = 200;

/// A trained model.
struct Model {
    /// log P(originator) - log P(forwarder).
    prior: f64,
    /// Per feature: bin label -> log-likelihood ratio.
    llr: Vec<HashMap<String, f64>>,
    /// Per feature: the ratio for a bin unseen in training.
    unseen: Vec<f64>,
}

// `f` indexes both a row of `bins` and the model's per-feature vectors.
#[allow(clippy::needless_range_loop)]
fn train(obs: &[&Observation], bins: &[Vec<Bin>], idx: &[usize], n_features: usize) -> Model {
    let pos = idx.iter().filter(|i| obs[**i].truth).count() as f64;
    let neg = idx.len() as f64 - pos;
    let prior = ((pos + 1.0) / (neg + 1.0)).ln();
    let mut llr = Vec::with_capacity(n_features);
    let mut unseen = Vec::with_capacity(n_features);
    for f in 0..n_features {
        let mut counts: HashMap<&str, (f64, f64)> = HashMap::new();
        for &i in idx {
            let e = counts.entry(bins[i][f].1.as_str()).or_default();
            if obs[i].truth {
                e.0 += 1.0;
            } else {
                e.1 += 1.0;
            }
        }
        let k = counts.len() as f64 + 1.0;
        let ratio = |p: f64, n: f64| ((p + 1.0) / (pos + k)).ln() - ((n + 1.0) / (neg + k)).ln();
        llr.push(
            counts
                .iter()
                .map(|(b, (p, n))| (b.to_string(), ratio(*p, *n)))
                .collect(),
        );
        unseen.push(ratio(0.0, 0.0));
    }
    Model { prior, llr, unseen }
}

impl Model {
    fn probability(&self, bins: &[Bin]) -> f64 {
        let mut logit = self.prior;
        for (f, (_, label)) in bins.iter().enumerate() {
            logit += self.llr[f].get(label).copied().unwrap_or(self.unseen[f]);
        }
        1.0 / (1.0 + (-logit).exp())
    }
}

/// Out-of-sample scores and the AUC.
pub(super) struct Scored {
    /// P(originator) for each observation, from the model trained on the
    /// other half of the groups.
    pub score: Vec<f64>,
    pub auc: Option<f64>,
    pub auc_ci: Option<(f64, f64)>,
    pub groups: usize,
}

/// Two-fold cross-validation split by group: the groups are shuffled
/// (seeded) and halved; each half is scored by the model trained on the
/// other.
pub(super) fn cross_validate(obs: &[&Observation], features: &[Feature], seed: u64) -> Scored {
    let bins: Vec<Vec<Bin>> = obs
        .iter()
        .map(|o| features.iter().map(|f| (f.bin)(o)).collect())
        .collect();
    let unit_of: Vec<Group> = obs.iter().map(|o| fold_unit(o)).collect();
    let mut groups: Vec<Group> = unit_of
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    groups.shuffle(&mut rng);
    let half: HashMap<Group, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (*g, usize::from(i >= groups.len() / 2)))
        .collect();
    let fold_of: Vec<usize> = unit_of
        .iter()
        .map(|g| half.get(g).copied().unwrap_or(0))
        .collect();
    // A cell the observer opened as its exit is an observation of its own
    // kind: the exit knows its sender is a relay (the tunnel's design), and
    // the question is how well an observer ranks the neighbours it cannot
    // tell apart by that.
    let strata: Vec<usize> = obs
        .iter()
        .map(|o| 2 * o.kind as usize + usize::from(o.opened))
        .collect();
    let kinds: BTreeSet<usize> = strata.iter().copied().collect();
    let mut score = vec![0.5; obs.len()];
    for k in 0..2 {
        // One model per message kind (see the module's notes on strata).
        for kind in &kinds {
            let in_kind = |i: &usize| strata[*i] == *kind;
            let train_idx: Vec<usize> = (0..obs.len())
                .filter(|i| fold_of[*i] != k && in_kind(i))
                .collect();
            if train_idx.is_empty() {
                continue;
            }
            let model = train(obs, &bins, &train_idx, features.len());
            for i in (0..obs.len()).filter(|i| fold_of[*i] == k && in_kind(i)) {
                score[i] = model.probability(&bins[i]);
            }
        }
    }
    let labels: Vec<bool> = obs.iter().map(|o| o.truth).collect();
    // Each (observer, sender, flow) weighs one in total (see `weights`).
    let weight = weights(obs);
    let all: Vec<usize> = (0..obs.len()).collect();
    let auc = stratified_auc(&score, &labels, &weight, &strata, &all);
    // Cluster bootstrap: resample whole groups, so one file's many blocks
    // count as one draw.
    let mut members: HashMap<Group, Vec<usize>> = HashMap::new();
    for (i, g) in unit_of.iter().enumerate() {
        members.entry(*g).or_default().push(i);
    }
    let mut samples = Vec::with_capacity(BOOTSTRAP);
    if auc.is_some() && groups.len() >= 2 {
        for _ in 0..BOOTSTRAP {
            let mut idx = Vec::with_capacity(obs.len());
            for _ in 0..groups.len() {
                let g = groups[rng.gen_range(0..groups.len())];
                idx.extend_from_slice(&members[&g]);
            }
            if let Some(a) = stratified_auc(&score, &labels, &weight, &strata, &idx) {
                samples.push(a);
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let auc_ci = (!samples.is_empty()).then(|| {
        let at = |q: f64| samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)];
        (at(0.025), at(0.975))
    });
    Scored {
        score,
        auc,
        auc_ci,
        groups: groups.len(),
    }
}

/// What the cross-validation keeps together in one fold: a download (the
/// file) for requests; for tunnel messages the tunnel on that link, since
/// one tunnel carries several files and its sender would otherwise be
/// learnt in one fold and recognised in the other.
fn fold_unit(o: &Observation) -> Group {
    if o.kind.is_tunnel() {
        Group::Flow(o.flow)
    } else {
        o.group
    }
}

/// Each observation's weight in the AUC: 1 / (messages its sender sent this
/// observer on this flow). A request weighs 1; a tunnel link's batches share
/// one label, so together they weigh 1, as one observation.
fn weights(obs: &[&Observation]) -> Vec<f64> {
    let mut count: HashMap<(usize, usize, crate::message::Uid), usize> = HashMap::new();
    for o in obs {
        *count.entry((o.observer, o.sender, o.flow)).or_default() += 1;
    }
    obs.iter()
        .map(|o| 1.0 / count[&(o.observer, o.sender, o.flow)] as f64)
        .collect()
}

/// The weighted AUC within strata: over every (originator, forwarder) pair
/// in the same stratum, weighted by the product of their weights, the share
/// the originator scores above, ties one half. `None` when no stratum holds
/// both classes.
pub(super) fn stratified_auc(
    score: &[f64],
    labels: &[bool],
    weight: &[f64],
    strata: &[usize],
    idx: &[usize],
) -> Option<f64> {
    let mut by: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for &i in idx {
        by.entry(strata[i]).or_default().push(i);
    }
    let (mut wins, mut pairs) = (0.0, 0.0);
    for members in by.values() {
        let (w, p) = weighted_wins(score, labels, weight, members);
        wins += w;
        pairs += p;
    }
    (pairs > 0.0).then(|| wins / pairs)
}

/// Over the observations `idx` (with repeats): the weighted count of
/// (originator, forwarder) pairs the originator wins (ties one half), and
/// the weighted count of all such pairs.
fn weighted_wins(score: &[f64], labels: &[bool], weight: &[f64], idx: &[usize]) -> (f64, f64) {
    let mut v: Vec<usize> = idx.to_vec();
    v.sort_by(|a, b| score[*a].total_cmp(&score[*b]));
    let (mut wins, mut neg_below, mut pos_total, mut neg_total) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        let (mut pos_here, mut neg_here) = (0.0, 0.0);
        while j < v.len() && score[v[j]] == score[v[i]] {
            if labels[v[j]] {
                pos_here += weight[v[j]];
            } else {
                neg_here += weight[v[j]];
            }
            j += 1;
        }
        wins += pos_here * (neg_below + 0.5 * neg_here);
        neg_below += neg_here;
        pos_total += pos_here;
        neg_total += neg_here;
        i = j;
    }
    (wins, pos_total * neg_total)
}

/// ROC AUC of `score` against `labels` over the observations `idx` (with
/// repeats), every observation weighing 1: the probability that a random
/// originator scores above a random forwarder, ties counting one half.
/// `None` without both classes.
pub(super) fn auc(score: &[f64], labels: &[bool], idx: &[usize]) -> Option<f64> {
    let ones = vec![1.0; score.len()];
    let (wins, pairs) = weighted_wins(score, labels, &ones, idx);
    (pairs > 0.0).then(|| wins / pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_reversed_scores() {
        let labels = [true, true, false, false];
        let all = [0, 1, 2, 3];
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels, &all), Some(1.0));
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels, &all), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels, &all), Some(0.5));
        assert_eq!(auc(&[0.5; 4], &[true; 4], &all), None);
        // One swapped pair of four: 3/4.
        assert_eq!(auc(&[0.9, 0.3, 0.4, 0.1], &labels, &all), Some(0.75));
    }

    #[test]
    fn stratified_auc_compares_only_within_a_stratum() {
        // Stratum 0 holds only forwarders scored low; stratum 1 is a coin
        // toss. Pooled, the adversary looks strong; within kinds it is not.
        let score = [0.1, 0.1, 0.1, 0.1, 0.6, 0.6, 0.6, 0.6];
        let labels = [false, false, false, false, true, false, true, false];
        let strata = [0, 0, 0, 0, 1, 1, 1, 1];
        let all: Vec<usize> = (0..8).collect();
        assert!(auc(&score, &labels, &all).is_some_and(|a| a > 0.8));
        let w = [1.0; 8];
        assert_eq!(
            stratified_auc(&score, &labels, &w, &strata, &all),
            Some(0.5)
        );
        // One stratum: the plain AUC.
        let one = [0; 8];
        assert_eq!(
            stratified_auc(&score, &labels, &w, &one, &all),
            auc(&score, &labels, &all)
        );
        assert_eq!(stratified_auc(&score, &[false; 8], &w, &strata, &all), None);
        // Weights: one heavy originator above and one light one below the
        // only forwarder.
        let (s2, l2) = ([0.9, 0.1, 0.5], [true, true, false]);
        let w2 = [3.0, 1.0, 1.0];
        assert_eq!(
            stratified_auc(&s2, &l2, &w2, &[0; 3], &[0, 1, 2]),
            Some(0.75)
        );
    }
}
