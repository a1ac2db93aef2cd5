//! Reading a testnet directory back: `testnet.json`, `workload.json` and
//! every node's logs, parsed with the types that wrote them, into the
//! per-node event lists the checks work on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::AuditError;
use crate::formats::audit_log::{request_op, AuditEvent, AuditLine, OriginEvent, OriginLine};
use crate::formats::testnet::{TestnetInfo, WorkloadInfo, TESTNET_FILE, WORKLOAD_FILE};
use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::Op;

/// One message a node sent or received, peers by name.
#[derive(Clone, Debug)]
pub(super) struct Line {
    /// The node's wall clock, microseconds.
    pub ts: u64,
    pub sent: bool,
    pub kind: MessageKind,
    /// The neighbour it went to or came from.
    pub peer: String,
    pub flow: Uid,
    pub htl: Option<Htl>,
    /// Every routing key it carries (for a tunnel cell: what this node,
    /// its exit, opened in it).
    pub keys: Vec<RoutingKey>,
    /// A tunnel cell this node opened as the exit.
    pub opened: bool,
    /// Bytes of cells and blocks it carries, if the log says.
    pub bytes: Option<u32>,
    /// The node routed by the progress rule when it logged this
    /// (`routing_rules` lines).
    pub progress: bool,
}

impl Line {
    /// The operation, for a request.
    pub(super) fn op(&self) -> Option<Op> {
        request_op(self.kind)
    }

    /// A request this node received.
    pub(super) fn is_request_received(&self) -> bool {
        !self.sent && self.kind.is_request()
    }

    /// A request this node sent.
    pub(super) fn is_request_sent(&self) -> bool {
        self.sent && self.kind.is_request()
    }

    /// A reply this node sent (tunnel messages are neither requests nor
    /// replies: they follow their tunnel, not a request's path).
    pub(super) fn is_reply_sent(&self) -> bool {
        self.sent && !self.kind.is_request() && !self.kind.is_tunnel()
    }
}

/// A local request's start, from `origin.jsonl`.
#[derive(Clone, Debug)]
pub(super) struct OriginStart {
    pub ts: u64,
    pub op: Op,
}

/// One node's logs.
#[derive(Clone, Debug, Default)]
pub(super) struct NodeData {
    pub name: String,
    /// Messages sent and received, in file order.
    pub events: Vec<Line>,
    /// When each block first entered the store or cache (µs).
    pub held: HashMap<RoutingKey, u64>,
    /// Neighbours seen in `link_up` lines, with the location they announced.
    pub neighbours: BTreeMap<String, Option<f64>>,
    /// Every location a neighbour announced (`link_up`, `neighbour_moved`),
    /// in file order: (how many of `events` came before it, peer, location).
    pub located: Vec<(usize, String, f64)>,
    /// Originated uids in file order.
    pub originated: Vec<Uid>,
    pub starts: HashMap<Uid, OriginStart>,
    /// uid -> (ts, outcome)
    pub ends: HashMap<Uid, (u64, String)>,
    /// Ground truth: (flow, neighbour) pairs this node's client started.
    pub flows_started: HashSet<(Uid, String)>,
    /// What this node opened as a tunnel's exit: (tunnel, from, keys).
    pub exits: Vec<(Uid, String, Vec<RoutingKey>)>,
    /// The node routes by the progress rule now (its last `routing_rules`).
    pub progress: bool,
}

impl NodeData {
    /// Take in one `audit.jsonl` record of this node's; `peer_name` names
    /// a neighbour by its key.
    pub(super) fn apply_audit(
        &mut self,
        ts: u64,
        event: AuditEvent,
        peer_name: &impl Fn(PeerKey) -> String,
    ) {
        let (sent, m) = match event {
            AuditEvent::Send(m) => (true, m),
            AuditEvent::Recv(m) => (false, m),
            AuditEvent::BlockCached { key } | AuditEvent::BlockStored { key } => {
                self.held.entry(key).or_insert(ts);
                return;
            }
            AuditEvent::LinkUp { peer, location } => {
                let name = peer_name(peer);
                if let Some(l) = location {
                    self.located.push((self.events.len(), name.clone(), l));
                }
                self.neighbours.insert(name, location);
                return;
            }
            AuditEvent::NeighbourMoved { peer, location } => {
                self.located
                    .push((self.events.len(), peer_name(peer), location));
                return;
            }
            AuditEvent::RoutingRules { htl_rule, .. } => {
                self.progress = htl_rule == crate::routing::HtlRule::Progress;
                return;
            }
            AuditEvent::TunnelExit { peer, flow, keys } => {
                // What the exit opened belongs to the cell it just
                // received on that tunnel.
                let peer = peer_name(peer);
                let cell = self.events.iter_mut().rev().find(|l| {
                    !l.sent
                        && l.kind == MessageKind::TunnelForward
                        && l.flow == flow
                        && l.peer == peer
                });
                if let Some(line) = cell {
                    line.keys.extend(keys.iter().copied());
                    line.opened = true;
                }
                self.exits.push((flow, peer, keys));
                return;
            }
            // Links going down, and events added later: not used by the
            // audit.
            _ => return,
        };
        let keys = m.all_keys().copied().collect();
        self.events.push(Line {
            ts,
            sent,
            kind: m.kind,
            peer: peer_name(m.peer),
            flow: m.flow,
            htl: m.htl,
            keys,
            opened: false,
            bytes: m.bytes,
            progress: self.progress,
        });
    }

    /// Take in one `origin.jsonl` record of this node's.
    pub(super) fn apply_origin(
        &mut self,
        line: OriginLine,
        peer_name: &impl Fn(PeerKey) -> String,
    ) {
        let OriginLine { ts_us, flow, event } = line;
        match event {
            OriginEvent::RequestFinished { outcome } => {
                self.ends.entry(flow).or_insert((ts_us, outcome));
            }
            OriginEvent::RequestStarted { op, .. } => {
                let start = OriginStart { ts: ts_us, op };
                if self.starts.insert(flow, start).is_none() {
                    self.originated.push(flow);
                }
            }
            OriginEvent::FlowStarted { to, .. } => {
                self.flows_started.insert((flow, peer_name(to)));
            }
            OriginEvent::Other => {}
        }
    }
}

/// A whole testnet's logs.
pub(super) struct Run {
    /// Sorted by name.
    pub nodes: Vec<NodeData>,
    pub warnings: Vec<String>,
}

impl Run {
    /// Each node's index in [`Run::nodes`], by name.
    pub(super) fn index(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect()
    }
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
        let mut node = NodeData {
            name: name.clone(),
            ..NodeData::default()
        };
        match read_jsonl::<AuditLine>(&audit_path)? {
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
                    node.apply_audit(record.ts_us, record.event, &peer_name);
                }
            }
        }

        let origin_path = node_dir.join(super::log::ORIGIN_FILE);
        match read_jsonl::<OriginLine>(&origin_path)? {
            None => warnings.push(format!("{name}: no origin.jsonl")),
            Some(lines) => {
                for (_, line) in lines {
                    node.apply_origin(line, &peer_name);
                }
            }
        }
        nodes.push(node);
    }
    Ok(Run { nodes, warnings })
}
