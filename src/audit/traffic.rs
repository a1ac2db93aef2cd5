//! The traffic section: requests originated and answered, hops, messages
//! per request, backtracks.

use std::collections::{HashMap, HashSet};

use super::load::{NodeData, Run};
use super::report::{AuditReport, OpCounts, Summary, TunnelTraffic};
use crate::message::{MessageKind, Uid};
use crate::routing::Op;

/// Fill in the traffic section: requests, successes, hops, messages,
/// backtracks.
pub(super) fn count(run: &Run, report: &mut AuditReport) {
    // Per uid: messages sent, DataFound replies sent, the operation.
    let mut messages: HashMap<Uid, usize> = HashMap::new();
    let mut found_replies: HashMap<Uid, usize> = HashMap::new();
    let mut op_of: HashMap<Uid, Op> = HashMap::new();
    let mut loops: Vec<Uid> = Vec::new();
    for node in &run.nodes {
        for line in node.events.iter().filter(|l| l.sent) {
            let uid = line.flow;
            *messages.entry(uid).or_default() += 1;
            if let Some(op) = line.op() {
                op_of.insert(uid, op);
            }
            match line.kind {
                MessageKind::DataFound => *found_replies.entry(uid).or_default() += 1,
                MessageKind::RouteNotFound => report.backtracks += 1,
                MessageKind::RejectedLoop => {
                    report.backtracks += 1;
                    report.loops_rejected += 1;
                    loops.push(uid);
                }
                _ => {}
            }
        }
    }
    for uid in loops {
        if let Some(&op) = op_of.get(&uid) {
            bump(&mut report.loops_by_op, op);
        }
    }
    let mut hops = Vec::new();
    let mut per_request = Vec::new();
    for node in &run.nodes {
        for uid in &node.originated {
            let Some(start) = node.starts.get(uid) else {
                continue;
            };
            report.requests.total += 1;
            let ok = match start.op {
                Op::Get => {
                    report.requests.get += 1;
                    "found"
                }
                Op::Put => {
                    report.requests.put += 1;
                    "inserted"
                }
            };
            per_request.push(messages.get(uid).copied().unwrap_or(0) as f64);
            if node.ends.get(uid).is_some_and(|(_, o)| o == ok) {
                report.succeeded.total += 1;
                match start.op {
                    Op::Get => {
                        report.succeeded.get += 1;
                        hops.push(found_replies.get(uid).copied().unwrap_or(0) as f64);
                    }
                    Op::Put => report.succeeded.put += 1,
                }
            }
        }
    }
    report.hops = Summary::of(&hops);
    report.messages_per_request = Summary::of(&per_request);
    report.tunnels = tunnels(run, &found_replies);
    let exits = report.tunnels.as_ref().map(|t| t.exit_searches.clone());
    let (r, e) = (&report.requests, exits.unwrap_or_default());
    report.block_requests = OpCounts {
        total: r.total + e.total,
        get: r.get + e.get,
        put: r.put + e.put,
    };
}

fn bump(counts: &mut OpCounts, op: Op) {
    counts.total += 1;
    match op {
        Op::Get => counts.get += 1,
        Op::Put => counts.put += 1,
    }
}

/// The tunnel section, or `None` when no node logged a tunnel message.
/// A build or batch is the originator's when its `origin.jsonl` announced
/// that flow on that link; a search is an exit's when its node sent the
/// request without having received it and its client did not start it.
fn tunnels(run: &Run, found_replies: &HashMap<Uid, usize>) -> Option<TunnelTraffic> {
    let mut t = TunnelTraffic::default();
    let mut any = false;
    let mut hops = Vec::new();
    for node in &run.nodes {
        any |= node.events.iter().any(|l| l.kind.is_tunnel());
        count_tunnel_lines(node, &mut t);
        count_exit_searches(node, &mut t, found_replies, &mut hops);
    }
    t.exit_hops = Summary::of(&hops);
    if !any {
        return None;
    }
    t.mean_walk_hops =
        (t.tunnels > 0).then(|| (t.tunnels + t.extensions) as f64 / t.tunnels as f64);
    Some(t)
}

/// Builds, batches, answers and tear-downs one node sent.
fn count_tunnel_lines(node: &NodeData, t: &mut TunnelTraffic) {
    for line in node.events.iter().filter(|l| l.sent) {
        let own = node.flows_started.contains(&(line.flow, line.peer.clone()));
        match line.kind {
            MessageKind::TunnelBuild if own => t.tunnels += 1,
            MessageKind::TunnelBuild => t.extensions += 1,
            MessageKind::TunnelForward if own => t.cells += 1,
            MessageKind::TunnelDown => t.tunnels_down += 1,
            _ => {}
        }
    }
    // A cell received from downstream, or from upstream and not opened
    // here, is relayed (a node's own tunnel's cells end or start at it).
    for line in node.events.iter().filter(|l| !l.sent) {
        let own = node.flows_started.contains(&(line.flow, line.peer.clone()));
        match line.kind {
            MessageKind::TunnelForward if line.opened => {
                t.cells_opened += 1;
                t.keys_opened += line.keys.len();
            }
            MessageKind::TunnelForward => t.cells_relayed += 1,
            MessageKind::TunnelBackward if !own => t.cells_relayed += 1,
            _ => {}
        }
    }
    t.relayed_with_keys += node
        .events
        .iter()
        .filter(|l| l.kind.is_tunnel() && !l.opened && !l.keys.is_empty())
        .count();
    // Answers a node sends are its own as an exit, or relayed: one for each
    // it received from downstream on a tunnel it relays (an answer on its
    // own client's tunnel ends there).
    let mut sent = 0usize;
    let mut relayed = 0usize;
    for line in &node.events {
        if line.kind != MessageKind::TunnelBackward {
            continue;
        }
        if line.sent {
            sent += 1;
        } else if !node.flows_started.contains(&(line.flow, line.peer.clone())) {
            relayed += 1;
        }
    }
    t.exit_answers += sent.saturating_sub(relayed);
}

/// Searches this node started as an exit, and how they ended.
fn count_exit_searches(
    node: &NodeData,
    t: &mut TunnelTraffic,
    found_replies: &HashMap<Uid, usize>,
    hops: &mut Vec<f64>,
) {
    let own: HashSet<Uid> = node.originated.iter().copied().collect();
    let mut received: HashSet<Uid> = HashSet::new();
    let mut started: HashMap<Uid, Op> = HashMap::new();
    let mut succeeded: HashSet<Uid> = HashSet::new();
    for line in &node.events {
        let flow = line.flow;
        match (line.sent, line.op()) {
            (false, Some(_)) => {
                received.insert(flow);
            }
            (true, Some(op)) if !received.contains(&flow) && !own.contains(&flow) => {
                started.entry(flow).or_insert(op);
            }
            _ => {}
        }
        let success = matches!(
            line.kind,
            MessageKind::DataFound | MessageKind::InsertSucceeded
        );
        if !line.sent && success && started.contains_key(&flow) {
            succeeded.insert(flow);
        }
    }
    for (flow, op) in &started {
        bump(&mut t.exit_searches, *op);
        if succeeded.contains(flow) {
            bump(&mut t.exit_succeeded, *op);
            if *op == Op::Get {
                hops.push(found_replies.get(flow).copied().unwrap_or(0) as f64);
            }
        }
    }
}
