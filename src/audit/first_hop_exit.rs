//! The first hop plus the exit: a pool of colluders that links a tunnel
//! it exits to one it entered, by timing and volume, and so names who
//! fetched what. Each pool member that received tunnel cells straight from
//! a node outside the pool holds an *entry* (that node, the flow, the cells'
//! times); each tunnel a pool member exits holds the keys it opened, and
//! when. For every exited tunnel the pool looks for the entry whose cells
//! came before the exit's, in step (every opened cell has an entry cell
//! within [`WINDOW_US`] before it) and in number (the entry carried at
//! least as many cells, and at most [`EXTRA_CELLS`] more: the extensions
//! of the hops between), furthest upstream, and names that entry's sender
//! as the one who fetched the files whose keys the exit opened.
//!
//! It is right when the named node started that flow (`flow_started` in its
//! `origin.jsonl`) and fetched the file (`fetched_by` in `workload.json`):
//! ground truth, never a signal. Files a pool member fetched are left out
//! (the pool cannot tell its own tunnels from others'). Against tunnels that work, the pool can
//! be right only when the originator's first hop is one of its own, so
//! P(right | the exit is in the pool) should stay near the share of an
//! originator's neighbours in the pool; the verdict fails when its Wilson
//! lower bound exceeds that share by more than [`MAX_EXCESS`] (as when the
//! exit is the originator's neighbour).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::known_content::Truth;
use super::load::Run;
use super::report::FirstHopExitReport;
use super::signals::wilson;
use crate::formats::testnet::WorkloadInfo;
use crate::message::{MessageKind, Uid};

/// An opened cell must follow an entry cell by at most this much (µs).
pub const WINDOW_US: u64 = 500_000;
/// Cells an entry may carry beyond what its exit opened: the builds and
/// extensions of the hops between them.
pub const EXTRA_CELLS: usize = 16;
/// The verdict fails when P(right | exit in the pool)'s lower bound
/// exceeds the pool's share of the originators' neighbours by more.
pub const MAX_EXCESS: f64 = 0.25;
/// The share of nodes pooled when `--colluders` is not given.
pub const DEFAULT_SHARE: f64 = 0.25;

/// One flow a pool member saw: (its node, the neighbour, the flow id).
type FlowId = (usize, usize, Uid);

/// Play the pair on the run; `None` without a workload that names
/// fetchers, or without tunnels.
pub(super) fn measure(
    run: &Run,
    workload: &WorkloadInfo,
    pool: &HashSet<usize>,
) -> Option<FirstHopExitReport> {
    let index = run.index();
    let Truth { fetchers, file_of } = Truth::of(run, workload)?;
    // Entries: cells a pool member received from outside the pool.
    let mut entries: BTreeMap<FlowId, Vec<u64>> = BTreeMap::new();
    // Exits: per exited tunnel, the opened cells' times and the files.
    let mut exits: BTreeMap<FlowId, (Vec<u64>, HashSet<usize>)> = BTreeMap::new();
    for &o in pool {
        let Some(node) = run.nodes.get(o) else {
            continue;
        };
        for line in node
            .events
            .iter()
            .filter(|l| !l.sent && l.kind == MessageKind::TunnelForward)
        {
            let Some(&s) = index.get(line.peer.as_str()) else {
                continue;
            };
            if !pool.contains(&s) {
                entries.entry((o, s, line.flow)).or_default().push(line.ts);
            }
            if line.opened {
                let exit = exits.entry((o, s, line.flow)).or_default();
                exit.0.push(line.ts);
                exit.1
                    .extend(line.keys.iter().filter_map(|k| file_of.get(k).copied()));
            }
        }
    }
    let mut report = FirstHopExitReport {
        colluders: pool.len(),
        window_ms: WINDOW_US / 1_000,
        max_excess: MAX_EXCESS,
        ..FirstHopExitReport::default()
    };
    let mut shares = Vec::new();
    for (&(_, _, _), (times, files)) in exits.iter().filter(|(_, (_, f))| !f.is_empty()) {
        let named = best_entry(&entries, times);
        for &f in files {
            // A file a pool member fetched: the pool cannot tell its own
            // tunnels from others', and the test is about outsiders.
            let Some(fetched) = fetchers.get(f).filter(|set| set.is_disjoint(pool)) else {
                continue;
            };
            if fetched.is_empty() {
                continue;
            }
            report.exited += 1;
            // The share of this file's fetchers' neighbours in the pool.
            for &fetcher in fetched {
                shares.push(pool_share(run, &index, fetcher, pool));
            }
            let Some((o, s, flow)) = named else {
                continue;
            };
            report.linked += 1;
            let started = run.nodes.get(s).is_some_and(|n| {
                run.nodes
                    .get(o)
                    .is_some_and(|on| n.flows_started.contains(&(flow, on.name.clone())))
            });
            if started && fetched.contains(&s) {
                report.right += 1;
            }
        }
    }
    if report.exited == 0 {
        return None;
    }
    report.p_right = Some(report.right as f64 / report.exited as f64);
    let (lo, hi) = wilson(report.right, report.exited);
    report.interval = Some([lo, hi]);
    report.first_hop_share =
        (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64);
    let expected = report.first_hop_share.unwrap_or(0.0);
    report.verdict = if lo > expected + MAX_EXCESS {
        "fail"
    } else {
        "pass"
    }
    .to_string();
    Some(report)
}

/// Of the entries whose cells run just ahead of `times` and carry as many
/// (or a few more), the one furthest ahead: several pool members on one
/// tunnel all see it, and the first of them saw it from its originator if
/// any did (the exit's own entry, lag 0, is named only when no other
/// matches).
fn best_entry(entries: &BTreeMap<FlowId, Vec<u64>>, times: &[u64]) -> Option<FlowId> {
    let (first, last) = (*times.iter().min()?, *times.iter().max()?);
    let mut best: Option<(u64, FlowId)> = None;
    for (&id, cells) in entries {
        if cells.len() < times.len() || cells.len() > times.len() + EXTRA_CELLS {
            continue;
        }
        // Cheap bounds before the cell-by-cell check.
        let (Some(&c0), Some(&c1)) = (cells.iter().min(), cells.iter().max()) else {
            continue;
        };
        if c0 > first || c1.saturating_add(WINDOW_US) < last {
            continue;
        }
        let mut sorted = cells.clone();
        sorted.sort_unstable();
        let mut lag = 0u64;
        let in_step = times.iter().all(|&t| {
            let i = sorted.partition_point(|&c| c <= t);
            match i.checked_sub(1).map(|i| sorted[i]) {
                Some(c) if t - c <= WINDOW_US => {
                    lag = lag.saturating_add(t - c);
                    true
                }
                _ => false,
            }
        });
        if !in_step {
            continue;
        }
        // Of the entries in step, the furthest upstream: the most lag.
        if best.is_none_or(|(l, _)| lag > l) {
            best = Some((lag, id));
        }
    }
    best.map(|(_, id)| id)
}

/// The share of `node`'s neighbours in the pool.
fn pool_share(run: &Run, index: &HashMap<&str, usize>, node: usize, pool: &HashSet<usize>) -> f64 {
    let Some(n) = run.nodes.get(node) else {
        return 0.0;
    };
    let total = n.neighbours.len();
    let pooled = n
        .neighbours
        .keys()
        .filter(|p| index.get(p.as_str()).is_some_and(|i| pool.contains(i)))
        .count();
    pooled as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_in_step_and_furthest_upstream_is_named() {
        let exit = [1_000_000, 2_000_000, 3_000_000];
        let mut entries = BTreeMap::new();
        // The exit's own entry: in step, lag 0.
        entries.insert((9, 6, 1), exit.to_vec());
        // In step, two more cells (extensions), 1 ms ahead.
        entries.insert((1, 2, 7), vec![500, 999_000, 1_999_000, 2_999_000, 3]);
        // In step, 0.5 ms ahead: nearer the exit.
        entries.insert((1, 3, 8), vec![10, 999_500, 1_999_500, 2_999_500]);
        // Too few cells.
        entries.insert((1, 4, 9), vec![999_900, 1_999_900]);
        // Out of step: the last opened cell has no entry cell in the window.
        entries.insert((1, 5, 10), vec![1, 999_000, 1_999_000, 1_999_500]);
        // Too many cells.
        entries.insert((1, 8, 11), (0..40).map(|i| i * 80_000).collect());
        assert_eq!(best_entry(&entries, &exit), Some((1, 2, 7)));
        entries.remove(&(1, 2, 7));
        assert_eq!(best_entry(&entries, &exit), Some((1, 3, 8)));
        entries.remove(&(1, 3, 8));
        assert_eq!(best_entry(&entries, &exit), Some((9, 6, 1)));
        entries.remove(&(9, 6, 1));
        assert_eq!(best_entry(&entries, &exit), None);
    }
}
