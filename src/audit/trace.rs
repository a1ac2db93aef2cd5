//! The trace line: one message hop as `veil trace` and `veil audit --trace`
//! print it, and [`trace_uid`], one request's path rebuilt from the logs.

use std::collections::HashSet;
use std::path::Path;

use super::load::load_run;
use super::AuditError;
use crate::formats::audit_log::{format_uid, parse_uid};
use crate::message::{Htl, Message, MessageKind};

/// `FROM -> TO Kind`, with ` htl=N` for kinds that carry an HTL (an HTL
/// given for any other kind is not shown).
pub fn trace_line(from: &str, to: &str, kind: MessageKind, htl: Option<Htl>) -> String {
    match htl.filter(|_| kind.carries_htl()) {
        Some(h) => format!("{from} -> {to} {kind} htl={h}"),
        None => format!("{from} -> {to} {kind}"),
    }
}

/// The trace line of a message sent from `from` to `to`.
pub fn format_trace_line(from: &str, to: &str, msg: &Message) -> String {
    trace_line(from, to, msg.message_kind(), msg.htl())
}

struct TraceEvent {
    ts: u64,
    sent: bool,
    peer: String,
    kind: MessageKind,
    htl: Option<Htl>,
    /// For a received event: (sender node index, index in its list).
    matched: Option<(usize, usize)>,
}

/// The messages of one request as [`trace_line`]s, in causal
/// order: each node's lines keep their file order, a message is received
/// after it is sent, and among events that could come next the earliest
/// timestamp wins (ties by node name). One line per message, printed from
/// the sender's log; a message only its receiver logged is printed from the
/// receiver's.
pub fn trace_uid(dir: &Path, uid: &str) -> Result<Vec<String>, AuditError> {
    let wanted = parse_uid(uid.trim()).ok_or_else(|| AuditError::BadUid {
        uid: uid.to_string(),
    })?;
    let run = load_run(dir)?;
    let index = run.index();
    let mut lists: Vec<Vec<TraceEvent>> = Vec::new();
    let mut known = false;
    for node in &run.nodes {
        known |= node.starts.contains_key(&wanted);
        let mut list = Vec::new();
        for line in &node.events {
            if line.flow != wanted {
                continue;
            }
            known = true;
            list.push(TraceEvent {
                ts: line.ts,
                sent: line.sent,
                peer: line.peer.clone(),
                kind: line.kind,
                htl: line.htl,
                matched: None,
            });
        }
        lists.push(list);
    }
    if !known {
        return Err(AuditError::UnknownUid {
            uid: format_uid(wanted),
            dir: dir.to_path_buf(),
        });
    }

    // Match each receive to the earliest unmatched send of the same kind.
    let mut used: HashSet<(usize, usize)> = HashSet::new();
    for y in 0..lists.len() {
        for j in 0..lists[y].len() {
            if lists[y][j].sent {
                continue;
            }
            let Some(&x) = index.get(lists[y][j].peer.as_str()) else {
                continue;
            };
            let me = run.nodes[y].name.as_str();
            let kind = lists[y][j].kind;
            let found = lists[x].iter().enumerate().position(|(k, e)| {
                e.sent && e.peer == me && e.kind == kind && !used.contains(&(x, k))
            });
            if let Some(k) = found {
                used.insert((x, k));
                lists[y][j].matched = Some((x, k));
            }
        }
    }

    // Topological merge.
    let mut heads = vec![0usize; lists.len()];
    let mut out = Vec::new();
    loop {
        let mut ready: Option<(u64, usize)> = None;
        let mut any: Option<(u64, usize)> = None;
        for (n, list) in lists.iter().enumerate() {
            let Some(e) = list.get(heads[n]) else {
                continue;
            };
            // Node order is name order, so the first of equal ts is the tie-break.
            if any.is_none_or(|(ts, _)| e.ts < ts) {
                any = Some((e.ts, n));
            }
            let is_ready = e.matched.is_none_or(|(x, k)| heads[x] > k);
            if is_ready && ready.is_none_or(|(ts, _)| e.ts < ts) {
                ready = Some((e.ts, n));
            }
        }
        // Without a ready event the logs contradict each other (a cycle);
        // fall back to the earliest head so every message still shows.
        let Some((_, n)) = ready.or(any) else { break };
        let e = &lists[n][heads[n]];
        let me = run.nodes[n].name.as_str();
        if e.sent || e.matched.is_none() {
            let (from, to) = if e.sent {
                (me, e.peer.as_str())
            } else {
                (e.peer.as_str(), me)
            };
            out.push(trace_line(from, to, e.kind, e.htl));
        }
        heads[n] += 1;
    }
    Ok(out)
}
