//! The observations the adversary scores, and the features a neighbour can
//! compute for each from its own log and the public topology.
//!
//! An observation is a message a node (the observer O) received that starts
//! a flow, or a unit of work on one, from a neighbour (the sender S): the
//! first request or insert O receives from S on a flow, the first tunnel
//! build on a tunnel id, and every cell sent away from the originator
//! (`TunnelForward`: keys only at the exit, which opens it). Its
//! label, "S originated it", is ground truth: S's `origin.jsonl` holds
//! `flow_started` for (flow, to = O). On a tunnel, the flow is the tunnel id
//! of that one link, so the build and every batch the originator sent to its
//! first hop are labelled "originated", and the same messages relayed further
//! are not. The label is never a feature.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::load::Run;
use crate::keys::RoutingKey;
use crate::message::{Htl, MessageKind, Uid};

/// How long after the end of a flow the (simulated, perfect) cache probe
/// asks the sender whether it holds the block, in microseconds.
pub(super) const PROBE_DELAY_US: u64 = 1_000_000;

/// What an observation belongs to for the train/test split: a workload
/// file, or (outside any file) the routing key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Group {
    File(usize),
    Key(RoutingKey),
    /// A message with no key (a tunnel build no batch followed): its flow.
    Flow(Uid),
}

/// One observation and its features.
#[derive(Clone, Debug)]
pub(super) struct Observation {
    /// Index of the observer in `Run::nodes`.
    pub observer: usize,
    /// Index of the sender in `Run::nodes`.
    pub sender: usize,
    pub flow: Uid,
    /// The routing keys the message carries (one for a request, a batch's
    /// list for a tunnel batch, none for a build).
    pub keys: Vec<RoutingKey>,
    pub group: Group,
    /// When the observer received it (µs, its log's clock).
    pub at_us: u64,
    /// Ground truth: the sender's client started this flow on this link.
    pub truth: bool,
    pub kind: MessageKind,
    /// A tunnel cell the observer opened as the tunnel's exit (which knows
    /// it is one, and so that its sender is not the originator).
    pub opened: bool,
    pub htl: Option<Htl>,
    /// Bytes of cells and blocks the message carries.
    pub bytes: Option<u32>,
    /// The observer had never seen this flow from any neighbour before.
    pub first_seen: bool,
    /// Circular distance from the (first) key to the sender's location, in
    /// [0, 0.5].
    pub key_distance: Option<f64>,
    /// The sender's share of the file's keys this node received from it,
    /// times the sender's degree: about 1 for an originator spreading a
    /// file over its neighbours, far below for a forwarder.
    pub share_ratio: Option<f64>,
    /// Microseconds since this node last sent the sender a reply.
    pub gap_us: Option<u64>,
    /// Microseconds from this message to the next reply this node sent the
    /// sender on the same flow: the round trip beyond this node (on a
    /// tunnel, to the exit and its search).
    pub answer_us: Option<u64>,
    /// The smallest `gap_us` over the sender's requests for the same file
    /// at this node (the download as this node sees it).
    pub min_gap_us: Option<u64>,
    /// Whether the sender held one of the keys in its store or cache by
    /// [`PROBE_DELAY_US`] after this node's last reply on the flow.
    pub cache_held: Option<bool>,
}

/// The workload's keys: which file each routing key belongs to, and how
/// many keys each file has.
#[derive(Clone, Debug, Default)]
pub(super) struct FileKeys {
    pub file_of: HashMap<RoutingKey, usize>,
    pub sizes: Vec<usize>,
}

fn circular(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(1.0);
    d.min(1.0 - d)
}

/// Is this a cell sent away from a tunnel's originator (each one its own
/// observation)?
fn is_batch(kind: MessageKind) -> bool {
    kind == MessageKind::TunnelForward
}

/// Every observation in the run, in (observer, file order).
pub(super) fn observe(run: &Run, files: &FileKeys) -> Vec<Observation> {
    let index = run.index();
    // The public topology: each node's degree and announced location.
    let mut degree: Vec<usize> = run.nodes.iter().map(|n| n.neighbours.len()).collect();
    let mut location: HashMap<&str, f64> = HashMap::new();
    for n in &run.nodes {
        for (peer, loc) in &n.neighbours {
            if let Some(l) = loc {
                location.entry(peer.as_str()).or_insert(*l);
            }
        }
    }
    for (i, n) in run.nodes.iter().enumerate() {
        if degree[i] == 0 {
            let peers: HashSet<&str> = n.events.iter().map(|l| l.peer.as_str()).collect();
            degree[i] = peers.len();
        }
    }

    let mut out: Vec<Observation> = Vec::new();
    for (o, node) in run.nodes.iter().enumerate() {
        let start = out.len();
        // Where this observer believes each neighbour is: what it announced
        // last (at its link's hello, or when it swapped), as of each line.
        let mut seen_at: HashMap<&str, f64> = HashMap::new();
        let mut moves = node.located.iter().peekable();
        let mut last_reply_to: HashMap<&str, u64> = HashMap::new();
        let mut seen_pair: HashSet<(&str, Uid)> = HashSet::new();
        let mut seen_flow: HashSet<Uid> = HashSet::new();
        // (sender, flow) -> its observations so far, to find each one's end
        // (the last reply on the flow before the next observation on it).
        let mut open: HashMap<(&str, Uid), usize> = HashMap::new();
        let mut flow_end: HashMap<usize, u64> = HashMap::new();
        // (sender, flow) -> observations not yet answered on it.
        let mut unanswered: HashMap<(&str, Uid), Vec<usize>> = HashMap::new();
        for (j, line) in node.events.iter().enumerate() {
            while let Some((_, who, l)) = moves.next_if(|(at, _, _)| *at <= j) {
                seen_at.insert(who.as_str(), *l);
            }
            let peer = line.peer.as_str();
            if line.sent {
                if !line.kind.starts_flow() {
                    last_reply_to.insert(peer, line.ts);
                    if let Some(&i) = open.get(&(peer, line.flow)) {
                        flow_end.insert(i, line.ts);
                    }
                    for i in unanswered.remove(&(peer, line.flow)).unwrap_or_default() {
                        if let Some(obs) = out.get_mut(i) {
                            obs.answer_us = line.ts.checked_sub(obs.at_us);
                        }
                    }
                }
                seen_flow.insert(line.flow);
                continue;
            }
            let first_seen = seen_flow.insert(line.flow);
            if !line.kind.starts_flow() {
                continue;
            }
            // A request, an insert or a build counts once per (sender, flow);
            // every batch on a tunnel is its own unit of work.
            let first_on_pair = seen_pair.insert((peer, line.flow));
            if !first_on_pair && !is_batch(line.kind) {
                continue;
            }
            let Some(&s) = index.get(peer) else { continue };
            let key = line.keys.first().copied();
            let group = match key {
                Some(k) => files
                    .file_of
                    .get(&k)
                    .map_or(Group::Key(k), |f| Group::File(*f)),
                None => Group::Flow(line.flow),
            };
            let truth = run.nodes[s]
                .flows_started
                .contains(&(line.flow, node.name.clone()));
            let announced = seen_at.get(peer).or_else(|| location.get(peer));
            let key_distance = match (key, announced) {
                (Some(k), Some(l)) => Some(circular(k.location().as_f64(), *l)),
                _ => None,
            };
            open.insert((peer, line.flow), out.len());
            unanswered
                .entry((peer, line.flow))
                .or_default()
                .push(out.len());
            out.push(Observation {
                observer: o,
                sender: s,
                flow: line.flow,
                keys: line.keys.clone(),
                group,
                truth,
                kind: line.kind,
                opened: line.opened,
                htl: line.htl,
                bytes: line.bytes,
                first_seen,
                key_distance,
                share_ratio: None,
                gap_us: last_reply_to.get(peer).map(|t| line.ts.saturating_sub(*t)),
                answer_us: None,
                at_us: line.ts,
                min_gap_us: None,
                // Filled in below, once the flow's end is known.
                cache_held: None,
            });
        }
        // The cache probe, at the end of each flow.
        for (i, obs) in out.iter_mut().enumerate().skip(start) {
            if obs.keys.is_empty() {
                continue;
            }
            let end = flow_end.get(&i).copied().unwrap_or(0);
            let probe_at = end.saturating_add(PROBE_DELAY_US);
            let held = &run.nodes[obs.sender].held;
            obs.cache_held = Some(
                obs.keys
                    .iter()
                    .any(|k| held.get(k).is_some_and(|t| *t <= probe_at)),
            );
        }
        // A build belongs to the download its tunnel's first batch serves
        // (the observer sees both on the same tunnel id).
        let mut batch_group: HashMap<(usize, Uid), Group> = HashMap::new();
        for obs in &out[start..] {
            if is_batch(obs.kind) {
                batch_group
                    .entry((obs.sender, obs.flow))
                    .or_insert(obs.group);
            }
        }
        for obs in &mut out[start..] {
            if let Group::Flow(flow) = obs.group {
                if let Some(g) = batch_group.get(&(obs.sender, flow)) {
                    obs.group = *g;
                }
            }
        }
        // Shares and minimum gaps per (sender, file) at this observer.
        let mut keys_from: BTreeMap<(usize, usize), HashSet<RoutingKey>> = BTreeMap::new();
        let mut min_gap: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for obs in &out[start..] {
            let Group::File(f) = obs.group else { continue };
            let keys = keys_from.entry((obs.sender, f)).or_default();
            keys.extend(
                obs.keys
                    .iter()
                    .filter(|k| files.file_of.get(*k) == Some(&f))
                    .copied(),
            );
            if let Some(g) = obs.gap_us {
                let m = min_gap.entry((obs.sender, f)).or_insert(g);
                *m = (*m).min(g);
            }
        }
        for obs in &mut out[start..] {
            let Group::File(f) = obs.group else { continue };
            let size = files.sizes.get(f).copied().unwrap_or(0).max(1);
            let got = keys_from.get(&(obs.sender, f)).map_or(0, HashSet::len);
            obs.share_ratio = Some(got as f64 / size as f64 * degree[obs.sender] as f64);
            obs.min_gap_us = min_gap.get(&(obs.sender, f)).copied();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::load::{Line, NodeData};

    /// The key distance is taken from where the observer last knew the
    /// sender to be: its hello's location, then each move it announced.
    #[test]
    fn the_key_distance_follows_a_neighbour_that_moved() {
        let key = RoutingKey([0; 32]);
        let at = key.location().as_f64();
        let request = |flow: Uid, ts: u64| Line {
            ts,
            sent: false,
            kind: MessageKind::DataRequest,
            peer: "b".into(),
            flow,
            htl: Some(10),
            keys: vec![key],
            opened: false,
            bytes: None,
            progress: false,
        };
        let mut a = NodeData {
            name: "a".into(),
            ..NodeData::default()
        };
        a.neighbours
            .insert("b".into(), Some((at + 0.1).rem_euclid(1.0)));
        a.located.push((0, "b".into(), (at + 0.1).rem_euclid(1.0)));
        a.events.push(request(1, 10));
        a.located.push((1, "b".into(), (at + 0.4).rem_euclid(1.0)));
        a.events.push(request(2, 20));
        let b = NodeData {
            name: "b".into(),
            ..NodeData::default()
        };
        let run = Run {
            nodes: vec![a, b],
            warnings: Vec::new(),
        };
        let seen = observe(&run, &FileKeys::default());
        let distances: Vec<f64> = seen.iter().filter_map(|o| o.key_distance).collect();
        assert_eq!(distances.len(), 2);
        assert!((distances[0] - 0.1).abs() < 1e-9, "{distances:?}");
        assert!((distances[1] - 0.4).abs() < 1e-9, "{distances:?}");
    }
}
