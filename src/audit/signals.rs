//! One signal at a time: each feature cut into bins, and for each bin
//! P(originator | bin) with a Wilson 95% interval and its support. The same
//! bins are the classifier's inputs.
//!
//! A bin's support counts independent units: the messages one sender sent
//! one observer on one flow (a request counts once anyway; a tunnel's many
//! batches on one link carry one label, so they count once per bin), and for
//! per-download features each (observer, sender, file) once. Counting every
//! batch would let one short tunnel's traffic pass for hundreds of
//! independent observations and shrink the interval accordingly.

use std::collections::{BTreeMap, HashSet};

use super::features::Observation;
use super::report::{SignalBin, SignalTable};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Gap bin edges, microseconds.
const GAP_EDGES_US: [u64; 9] = [
    100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000,
];
/// Share-ratio bin edges (share of a file's keys times the sender's degree).
const SHARE_EDGES: [f64; 6] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0];
/// Width of a key-distance bin (the distance is in [0, 0.5]).
const DISTANCE_WIDTH: f64 = 0.05;

/// A bin: its order among the feature's bins, and its label.
pub(super) type Bin = (i64, String);

/// A feature: a name, what it means, and how an observation is binned.
pub(super) struct Feature {
    pub name: &'static str,
    pub description: &'static str,
    pub bin: fn(&Observation) -> Bin,
    /// The feature has one value per download (observer, sender, file):
    /// its table counts each download once, so a bin's support is the
    /// number of independent downloads, not of their blocks.
    pub per_download: bool,
}

fn na() -> Bin {
    (i64::MAX, "n/a".to_string())
}

fn us(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{}s", v / 1_000_000)
    } else if v >= 1_000 {
        format!("{}ms", v / 1_000)
    } else {
        format!("{v}us")
    }
}

fn gap_bin(gap: Option<u64>) -> Bin {
    let Some(g) = gap else { return na() };
    let i = GAP_EDGES_US.iter().position(|e| g < *e);
    match i {
        Some(0) => (0, format!("<{}", us(GAP_EDGES_US[0]))),
        Some(i) => (
            i as i64,
            format!("{}-{}", us(GAP_EDGES_US[i - 1]), us(GAP_EDGES_US[i])),
        ),
        None => (
            GAP_EDGES_US.len() as i64,
            format!(">={}", us(GAP_EDGES_US[GAP_EDGES_US.len() - 1])),
        ),
    }
}

fn share_bin(o: &Observation) -> Bin {
    let Some(r) = o.share_ratio else { return na() };
    match SHARE_EDGES.iter().position(|e| r < *e) {
        Some(0) => (0, format!("<{}", SHARE_EDGES[0])),
        Some(i) => (
            i as i64,
            format!("{}-{}", SHARE_EDGES[i - 1], SHARE_EDGES[i]),
        ),
        None => (SHARE_EDGES.len() as i64, format!(">={}", SHARE_EDGES[5])),
    }
}

fn distance_bin(o: &Observation) -> Bin {
    let Some(d) = o.key_distance else { return na() };
    let i = ((d / DISTANCE_WIDTH) as i64).clamp(0, 9);
    let lo = i as f64 * DISTANCE_WIDTH;
    (i, format!("{lo:.2}-{:.2}", lo + DISTANCE_WIDTH))
}

/// Every feature the audit scores, in report order.
pub(super) fn features() -> Vec<Feature> {
    vec![
        Feature {
            name: "htl",
            description: "hops-to-live of the message",
            bin: |o| match o.htl {
                Some(h) => (i64::from(h), h.to_string()),
                None => na(),
            },
            per_download: false,
        },
        Feature {
            name: "kind",
            description: "the message kind",
            bin: |o| match o.opened {
                true => (1, format!("{} (opened as exit)", o.kind.as_str())),
                false => (0, o.kind.as_str().to_string()),
            },
            per_download: false,
        },
        Feature {
            name: "size",
            description: "bytes of cells and blocks the message carries",
            bin: |o| match o.bytes {
                Some(b) => (i64::from(b), format!("{b} B")),
                None => na(),
            },
            per_download: false,
        },
        Feature {
            name: "key_distance",
            description: "distance from the key to the sender's location",
            bin: distance_bin,
            per_download: false,
        },
        Feature {
            name: "share",
            description: "sender's share of the file's keys received here, times its degree",
            bin: share_bin,
            per_download: true,
        },
        Feature {
            name: "gap",
            description: "time since this node last sent the sender a reply",
            bin: |o| gap_bin(o.gap_us),
            per_download: false,
        },
        Feature {
            name: "answer",
            description: "time until this node next replied to the sender on the flow",
            bin: |o| gap_bin(o.answer_us),
            per_download: false,
        },
        Feature {
            name: "min_gap",
            description: "smallest such gap over the sender's requests for the file",
            bin: |o| gap_bin(o.min_gap_us),
            per_download: true,
        },
        Feature {
            name: "cache_probe",
            description: "the sender held the block after the flow (perfect cache probe)",
            bin: |o| match o.cache_held {
                Some(true) => (1, "held".to_string()),
                Some(false) => (0, "not held".to_string()),
                None => na(),
            },
            per_download: false,
        },
    ]
}

/// The Wilson score interval for `k` successes in `n` trials.
pub(super) fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Each feature's bins over the observations.
pub(super) fn tables(obs: &[&Observation], features: &[Feature]) -> Vec<SignalTable> {
    features
        .iter()
        .map(|f| {
            let mut bins: BTreeMap<Bin, (usize, usize)> = BTreeMap::new();
            let mut downloads = HashSet::new();
            let mut units = HashSet::new();
            for o in obs {
                if f.per_download && !downloads.insert((o.observer, o.sender, o.group)) {
                    continue;
                }
                // A tunnel's batches on one link share their sender and
                // label: one unit of evidence per bin, not one per batch.
                let bin = (f.bin)(o);
                if !units.insert((o.observer, o.sender, o.flow, bin.clone())) {
                    continue;
                }
                let e = bins.entry(bin).or_default();
                e.0 += 1;
                e.1 += usize::from(o.truth);
            }
            SignalTable {
                name: f.name.to_string(),
                description: f.description.to_string(),
                bins: bins
                    .into_iter()
                    .map(|((_, label), (support, positives))| {
                        let (lo, hi) = wilson(positives, support);
                        SignalBin {
                            bin: label,
                            support,
                            positives,
                            p: positives as f64 / support as f64,
                            lower: lo,
                            upper: hi,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 10 of 20: centre 0.5, about +-0.2.
        let (lo, hi) = wilson(10, 20);
        assert!(
            (lo - 0.2993).abs() < 1e-3 && (hi - 0.7007).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1611).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn gap_bins_are_ordered_and_labelled() {
        assert_eq!(gap_bin(Some(50)), (0, "<100us".to_string()));
        assert_eq!(gap_bin(Some(2_500)), (3, "1ms-3ms".to_string()));
        assert_eq!(gap_bin(Some(5_000_000)), (9, ">=1s".to_string()));
        assert_eq!(gap_bin(None).1, "n/a");
    }
}
