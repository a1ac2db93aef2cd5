//! The protocol invariants checked over all nodes' logs: replies go where
//! requests came from, a get spends no more than its HTL (plus the free hops
//! `freenet` mode allows), and a node rejects
//! a loop only for a uid it is handling.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::load::{Line, Run};
use super::report::Invariant;
use crate::config::CONFIG_FILE;
use crate::formats::audit_log::format_uid;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::{Anonymity, Op, DEFAULT_MAX_HTL};

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

/// A node's HTL rules, as its `node.toml` states them (defaults when the
/// file is missing or unreadable: the audit reads, it does not validate).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
struct HtlRules {
    #[serde(default)]
    anonymity: Anonymity,
    #[serde(default)]
    router: RouterRules,
}

#[derive(Clone, Copy, Debug, serde::Deserialize)]
struct RouterRules {
    #[serde(default = "default_max_htl")]
    max_htl: Htl,
}

impl Default for RouterRules {
    fn default() -> Self {
        RouterRules {
            max_htl: DEFAULT_MAX_HTL,
        }
    }
}

fn default_max_htl() -> Htl {
    DEFAULT_MAX_HTL
}

fn htl_rules(dir: &Path, node: &str) -> HtlRules {
    std::fs::read_to_string(dir.join(node).join(CONFIG_FILE))
        .ok()
        .and_then(|text| toml::from_str(&text).ok())
        .unwrap_or_default()
}

/// Invariant 2: a get never sends more requests than its budget allows.
///
/// With every node in `none` mode the budget is the originator's first HTL.
/// Once any node runs `freenet` (read from each node's `node.toml` under
/// `dir`), a node may keep the HTL it received at its maximum or at 1 (a
/// free hop), so the bound is the first HTL plus the gets sent at a
/// receiver's maximum HTL plus the gets sent at HTL 1; and since each of
/// those forms one simple chain, each count is at most `nodes - 1`
/// (`docs/protocol.md` §4).
pub(super) fn check_overspent(run: &Run, dir: &Path) -> Invariant {
    let mut inv = Invariant::default();
    let rules: HashMap<&str, HtlRules> = run
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), htl_rules(dir, &n.name)))
        .collect();
    let freenet = rules.values().any(|r| r.anonymity == Anonymity::Freenet);
    let chain_limit = run.nodes.len().saturating_sub(1);
    // Per uid: gets sent, and those sent at the receiver's maximum and at 1.
    let mut sent_gets: HashMap<Uid, (usize, usize, usize)> = HashMap::new();
    let progress = progress_allowance(run);
    for node in &run.nodes {
        for line in &node.events {
            if line.sent && line.op() == Some(Op::Get) {
                let max = rules
                    .get(line.peer.as_str())
                    .map_or(DEFAULT_MAX_HTL, |r| r.router.max_htl);
                let counts = sent_gets.entry(line.flow).or_default();
                counts.0 += 1;
                counts.1 += usize::from(line.htl == Some(max));
                counts.2 += usize::from(line.htl == Some(1));
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
            let (sent, at_max, at_one) = sent_gets.get(uid).copied().unwrap_or_default();
            // Hops the progress rule made free, and loops it refunded.
            let free = progress.get(uid).copied().unwrap_or(0);
            let uid = format_uid(*uid);
            if !freenet {
                if sent > htl as usize + free {
                    let more = match free {
                        0 => String::new(),
                        n => format!(" (htl + {n} free under the progress rule)"),
                    };
                    inv.add(format!(
                        "{}: uid {uid} started with htl {htl} but {sent} get requests were sent for it{more}",
                        node.name
                    ));
                }
                continue;
            }
            let bound = htl as usize + at_max + at_one + free;
            if sent > bound {
                inv.add(format!(
                    "{}: uid {uid} started with htl {htl}; {sent} get requests were sent for it, more than htl + {at_max} at max + {at_one} at 1",
                    node.name
                ));
            }
            if at_max > chain_limit || at_one > chain_limit {
                inv.add(format!(
                    "{}: uid {uid}: {at_max} get requests at max htl and {at_one} at htl 1; each chain is at most {chain_limit} hops",
                    node.name
                ));
            }
        }
    }
    inv
}

/// Per uid, the get requests the progress rule lets a search send beyond
/// its first HTL: at a node that routed by it, the first get sent at the
/// HTL the node received (a hop towards the key is free), and every
/// `RejectedLoop` it received (a loop costs nothing). Under the hop rule
/// both are zero, so the bound stays the first HTL.
fn progress_allowance(run: &Run) -> HashMap<Uid, usize> {
    let mut free: HashMap<Uid, usize> = HashMap::new();
    for node in &run.nodes {
        let mut received: HashMap<Uid, Htl> = HashMap::new();
        let mut kept: HashSet<Uid> = HashSet::new();
        for line in node.events.iter().filter(|l| l.progress) {
            match (line.sent, line.kind) {
                (false, MessageKind::RejectedLoop) => *free.entry(line.flow).or_default() += 1,
                (false, _) if line.op() == Some(Op::Get) => {
                    if let Some(htl) = line.htl {
                        received.entry(line.flow).or_insert(htl);
                    }
                }
                (true, _) if line.op() == Some(Op::Get) => {
                    let at_received = received.get(&line.flow) == line.htl.as_ref();
                    if at_received && line.htl.is_some() && kept.insert(line.flow) {
                        *free.entry(line.flow).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }
    free
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
            // A request this node sent before receiving it, and not its
            // client's: a tunnel exit running a batch's keys. It handles
            // the uid as an originator does.
            let exit_started =
                origin_window.is_none() && lines.first().is_some_and(|l| l.is_request_sent());
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
                    let originating = exit_started
                        || origin_window.is_some_and(|(s, e)| s <= line.ts && line.ts <= e);
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
