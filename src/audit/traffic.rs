//! The traffic section: requests originated and answered, hops, messages
//! per request, backtracks.

use std::collections::HashMap;

use super::load::Run;
use super::report::{AuditReport, Summary};
use crate::message::{MessageKind, Uid};
use crate::routing::Op;

/// Fill in the traffic section: requests, successes, hops, messages,
/// backtracks.
pub(super) fn count(run: &Run, report: &mut AuditReport) {
    // Per uid: messages sent, DataFound replies sent.
    let mut messages: HashMap<Uid, usize> = HashMap::new();
    let mut found_replies: HashMap<Uid, usize> = HashMap::new();
    for node in &run.nodes {
        for line in node.events.iter().filter(|l| l.sent) {
            let uid = line.flow;
            *messages.entry(uid).or_default() += 1;
            match line.kind {
                MessageKind::DataFound => *found_replies.entry(uid).or_default() += 1,
                MessageKind::RouteNotFound => report.backtracks += 1,
                MessageKind::RejectedLoop => {
                    report.backtracks += 1;
                    report.loops_rejected += 1;
                }
                _ => {}
            }
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
}
