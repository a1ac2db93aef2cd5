//! The protocol invariants checked over all nodes' logs: replies go where
//! requests came from, a get spends no more than its HTL, and a node rejects
//! a loop only for a uid it is handling.

use std::collections::{BTreeMap, HashMap};

use super::load::{Ev, Line, Run};
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
            match &line.ev {
                Ev::ReqRecv { uid, from, .. } => *open.entry((from.as_str(), *uid)).or_default() += 1,
                Ev::RepSent { uid, reply, to, .. } => {
                    match open.get_mut(&(to.as_str(), *uid)) {
                        Some(n) if *n > 0 => *n -= 1,
                        _ => inv.add(format!(
                            "{}: sent {reply} for uid {} to {to}, which had no open request for it there (ts {})",
                            node.name,
                            format_uid(*uid),
                            line.ts
                        )),
                    }
                }
                _ => {}
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
            if let Ev::ReqSent {
                uid, op: Op::Get, ..
            } = &line.ev
            {
                *sent_gets.entry(*uid).or_default() += 1;
            }
        }
    }
    for node in &run.nodes {
        // The HTL of this node's first request_sent per uid.
        let mut first_sent: HashMap<Uid, Htl> = HashMap::new();
        for line in &node.events {
            if let Ev::ReqSent { uid, htl, .. } = &line.ev {
                first_sent.entry(*uid).or_insert(*htl);
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
            by_uid.entry(line.ev.uid()).or_default().push(line);
        }
        for (uid, lines) in by_uid {
            let origin_window = node.starts.get(&uid).map(|s| {
                let end = node.ends.get(&uid).map_or(u64::MAX, |(ts, _)| *ts);
                (s.ts, end)
            });
            let mut upstream: Option<&str> = None;
            for (i, line) in lines.iter().enumerate() {
                match &line.ev {
                    Ev::ReqRecv { from, .. } if upstream.is_none() => {
                        let answered_at_once = matches!(
                            lines.get(i + 1).map(|l| &l.ev),
                            Some(Ev::RepSent { to, reply: MessageKind::RejectedLoop | MessageKind::RejectedOverload, .. })
                                if to == from
                        );
                        if !answered_at_once {
                            upstream = Some(from.as_str());
                        }
                    }
                    Ev::RepSent {
                        reply: MessageKind::RejectedLoop,
                        to,
                        ..
                    } => {
                        let originating =
                            origin_window.is_some_and(|(s, e)| s <= line.ts && line.ts <= e);
                        if upstream.is_none() && !originating {
                            inv.add(format!(
                                "{}: sent RejectedLoop for uid {} to {to} at ts {} while not handling it",
                                node.name,
                                format_uid(uid),
                                line.ts
                            ));
                        }
                    }
                    Ev::RepSent { to, .. } if upstream == Some(to.as_str()) => upstream = None,
                    _ => {}
                }
            }
        }
    }
    inv
}
