//! The protocol invariants checked over all nodes' logs: replies go where
//! requests came from, a get spends no more than its HTL, and a node rejects
//! a loop only for a uid it is handling.

use std::collections::{BTreeMap, HashMap};

use super::load::{Line, Run};
use super::record::format_uid;
use super::report::Invariant;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::Op;

/// Invariant 1: every reply answers a request the peer has open at this node.
pub(super) fn check_misrouted(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    for node in &run.nodes {
        let mut open: HashMap<(&str, Uid), usize> = HashMap::new();
        for line in &node.events {
            let key = (line.peer.as_str(), line.flow);
            if line.is_request_received() {
                *open.entry(key).or_default() += 1;
            } else if line.is_reply_sent() {
                match open.get_mut(&key) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => inv.add(format!(
                        "{}: sent {} for uid {} to {}, which had no open request for it there (ts {})",
                        node.name,
                        line.kind,
                        format_uid(line.flow),
                        line.peer,
                        line.ts
                    )),
                }
            }
        }
    }
    inv
}

/// Invariant 2: a get never sends more requests than its originator's HTL.
pub(super) fn check_overspent(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    let mut sent_gets: HashMap<Uid, usize> = HashMap::new();
    for node in &run.nodes {
        for line in &node.events {
            if line.sent && line.op() == Some(Op::Get) {
                *sent_gets.entry(line.flow).or_default() += 1;
            }
        }
    }
    for node in &run.nodes {
        // The HTL of this node's first request_sent per uid.
        let mut first_sent: HashMap<Uid, Htl> = HashMap::new();
        for line in &node.events {
            if let (true, Some(htl)) = (line.is_request_sent(), line.htl) {
                first_sent.entry(line.flow).or_insert(htl);
            }
        }
        for uid in &node.originated {
            let first_htl = first_sent.get(uid).copied();
            let Some(htl) = first_htl else { continue };
            let sent = sent_gets.get(uid).copied().unwrap_or(0);
            if sent > htl as usize {
                inv.add(format!(
                    "{}: uid {} started with htl {htl} but {sent} get requests were sent for it",
                    node.name,
                    format_uid(*uid)
                ));
            }
        }
    }
    inv
}

/// Invariant 3: `RejectedLoop` only for a uid the node is handling.
pub(super) fn check_remembered(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    for node in &run.nodes {
        let mut by_uid: BTreeMap<Uid, Vec<&Line>> = BTreeMap::new();
        for line in &node.events {
            by_uid.entry(line.flow).or_default().push(line);
        }
        for (uid, lines) in by_uid {
            let origin_window = node.starts.get(&uid).map(|s| {
                let end = node.ends.get(&uid).map_or(u64::MAX, |(ts, _)| *ts);
                (s.ts, end)
            });
            let mut upstream: Option<&str> = None;
            for (i, line) in lines.iter().enumerate() {
                let from = line.peer.as_str();
                if line.is_request_received() {
                    if upstream.is_none() {
                        let answered_at_once = lines.get(i + 1).is_some_and(|next| {
                            next.is_reply_sent()
                                && next.peer == from
                                && matches!(
                                    next.kind,
                                    MessageKind::RejectedLoop | MessageKind::RejectedOverload
                                )
                        });
                        if !answered_at_once {
                            upstream = Some(from);
                        }
                    }
                } else if line.is_reply_sent() && line.kind == MessageKind::RejectedLoop {
                    let originating =
                        origin_window.is_some_and(|(s, e)| s <= line.ts && line.ts <= e);
                    if upstream.is_none() && !originating {
                        inv.add(format!(
                            "{}: sent RejectedLoop for uid {} to {from} at ts {} while not handling it",
                            node.name,
                            format_uid(uid),
                            line.ts
                        ));
                    }
                } else if line.is_reply_sent() && upstream == Some(from) {
                    upstream = None;
                }
            }
        }
    }
    inv
}
