//! Reading a testnet directory back: `testnet.json`, `workload.json` and
//! every node's logs, parsed with the types that wrote them, into the
//! per-node event lists the checks work on.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::record::{AuditEvent, AuditLine, OriginEvent, OriginLine};
use super::AuditError;
use crate::identity::PeerKey;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::Op;
use crate::testnet::{TestnetInfo, WorkloadInfo, TESTNET_FILE, WORKLOAD_FILE};

/// A routing event as the checks see it: peers by name.
#[derive(Clone, Debug)]
pub(super) enum Ev {
    ReqRecv {
        uid: Uid,
        htl: Htl,
        from: String,
        op: Op,
    },
    ReqSent {
        uid: Uid,
        htl: Htl,
        to: String,
        op: Op,
    },
    RepRecv {
        uid: Uid,
        reply: MessageKind,
        from: String,
        htl: Option<Htl>,
    },
    RepSent {
        uid: Uid,
        reply: MessageKind,
        to: String,
        htl: Option<Htl>,
    },
}

impl Ev {
    pub(super) fn uid(&self) -> Uid {
        match self {
            Ev::ReqRecv { uid, .. }
            | Ev::ReqSent { uid, .. }
            | Ev::RepRecv { uid, .. }
            | Ev::RepSent { uid, .. } => *uid,
        }
    }
}

/// One routing event and the node's timestamp for it.
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub ts: u64,
    pub ev: Ev,
}

/// A local request's start, from `origin.jsonl`.
#[derive(Clone, Debug)]
pub(super) struct OriginStart {
    pub ts: u64,
    pub op: Op,
}

/// One node's logs.
#[derive(Clone, Debug)]
pub(super) struct NodeData {
    pub name: String,
    /// Request and reply events, in file order.
    pub events: Vec<Line>,
    /// Originated uids in file order.
    pub originated: Vec<Uid>,
    pub starts: HashMap<Uid, OriginStart>,
    /// uid -> (ts, outcome)
    pub ends: HashMap<Uid, (u64, String)>,
}

/// A whole testnet's logs.
pub(super) struct Run {
    /// Sorted by name.
    pub nodes: Vec<NodeData>,
    pub warnings: Vec<String>,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn malformed(path: &Path, line: usize, message: impl Into<String>) -> AuditError {
    AuditError::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn parse_json_file<T: DeserializeOwned>(path: &Path) -> Result<T, AuditError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| malformed(path, e.line(), e.to_string()))
}

/// `workload.json`, when there is one.
pub(super) fn load_workload(dir: &Path) -> Result<Option<WorkloadInfo>, AuditError> {
    let path = dir.join(WORKLOAD_FILE);
    if !path.exists() {
        return Ok(None);
    }
    parse_json_file(&path).map(Some)
}

/// Parse every non-empty line of a JSON Lines file as a `T`, with its line
/// number; `None` when the file does not exist.
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<(usize, T)>>, AuditError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| malformed(path, lineno, "line is not valid UTF-8"))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let parsed = serde_json::from_str(text)
            .map_err(|e| malformed(path, lineno, format!("not a log record: {e}")))?;
        out.push((lineno, parsed));
    }
    Ok(Some(out))
}

/// The kind of a reply line, refusing request kinds.
fn reply_kind(kind: MessageKind, path: &Path, line: usize) -> Result<MessageKind, AuditError> {
    if kind.is_request() {
        return Err(malformed(path, line, format!("{kind} is not a reply kind")));
    }
    Ok(kind)
}

/// Read every node's logs named in `testnet.json`.
pub(super) fn load_run(dir: &Path) -> Result<Run, AuditError> {
    let testnet_path = dir.join(TESTNET_FILE);
    let testnet: TestnetInfo = parse_json_file(&testnet_path)?;
    if testnet.nodes.is_empty() {
        return Err(AuditError::BadTestnet {
            path: testnet_path,
            message: "no nodes".into(),
        });
    }
    let mut id_to_name: HashMap<PeerKey, String> = HashMap::new();
    for (name, node) in &testnet.nodes {
        if let Some(other) = id_to_name.insert(node.id, name.clone()) {
            return Err(AuditError::BadTestnet {
                path: testnet_path,
                message: format!("nodes {other} and {name} have the same id"),
            });
        }
    }
    let peer_name = |key: PeerKey| {
        id_to_name
            .get(&key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    };

    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    for (name, entry) in &testnet.nodes {
        let node_dir = dir.join(name);
        let audit_path = node_dir.join(super::log::AUDIT_FILE);
        let p = audit_path.as_path();
        let mut events = Vec::new();
        match read_jsonl::<AuditLine>(p)? {
            None => warnings.push(format!("{name}: no audit.jsonl")),
            Some(lines) => {
                let mut foreign = false;
                for (line, record) in lines {
                    if record.node != entry.id && !foreign {
                        foreign = true;
                        warnings.push(format!(
                            "{}:{line}: `node` is not {name}'s id from testnet.json",
                            audit_path.display()
                        ));
                    }
                    let ev = match record.event {
                        AuditEvent::RequestReceived {
                            uid, htl, from, op, ..
                        } => Ev::ReqRecv {
                            uid,
                            htl,
                            from: peer_name(from),
                            op,
                        },
                        AuditEvent::RequestSent {
                            uid, htl, to, op, ..
                        } => Ev::ReqSent {
                            uid,
                            htl,
                            to: peer_name(to),
                            op,
                        },
                        AuditEvent::ReplyReceived {
                            uid,
                            reply,
                            htl,
                            from,
                        } => Ev::RepRecv {
                            uid,
                            reply: reply_kind(reply, p, line)?,
                            from: peer_name(from),
                            htl,
                        },
                        AuditEvent::ReplySent {
                            uid,
                            reply,
                            htl,
                            to,
                        } => Ev::RepSent {
                            uid,
                            reply: reply_kind(reply, p, line)?,
                            to: peer_name(to),
                            htl,
                        },
                        // Blocks, links, and events added later: not used
                        // by the audit.
                        _ => continue,
                    };
                    events.push(Line { ts: record.ts, ev });
                }
            }
        }

        let origin_path = node_dir.join(super::log::ORIGIN_FILE);
        let mut originated = Vec::new();
        let mut starts = HashMap::new();
        let mut ends = HashMap::new();
        match read_jsonl::<OriginLine>(&origin_path)? {
            None => warnings.push(format!("{name}: no origin.jsonl")),
            Some(lines) => {
                for (_, OriginLine { ts, uid, event }) in lines {
                    match event {
                        OriginEvent::Finished { outcome } => {
                            ends.entry(uid).or_insert((ts, outcome));
                        }
                        OriginEvent::Started { op, .. } => {
                            if starts.insert(uid, OriginStart { ts, op }).is_none() {
                                originated.push(uid);
                            }
                        }
                    }
                }
            }
        }
        nodes.push(NodeData {
            name: name.clone(),
            events,
            originated,
            starts,
            ends,
        });
    }
    Ok(Run { nodes, warnings })
}
