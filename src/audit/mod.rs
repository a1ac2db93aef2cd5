//! `veil audit`: read a testnet directory's audit logs (format:
//! `docs/audit-log.md`) and report traffic, protocol invariants, leaks, and
//! what each node could infer about who originated a request.
//!
//! Only `audit.jsonl` (each node's local view) feeds the inference signals;
//! `origin.jsonl` is ground truth, used to score those signals and to check
//! invariants that need to know who originated a request.

pub mod log;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// How many examples each invariant keeps.
const MAX_EXAMPLES: usize = 5;
/// Length of the plaintext windows looked for in node files.
const WINDOW: usize = 32;
/// Node files larger than this are not scanned for leaks (and a warning says so).
const MAX_SCAN_BYTES: u64 = 512 * 1024 * 1024;
/// A classifier at least this precise (and better than the base rate) is
/// called out as a leak in the text report.
const LEAK_PRECISION: f64 = 0.9;

/// Why a testnet directory could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    BadTestnet { path: PathBuf, message: String },
    #[error("uid {uid:?} is not a request ID (1 to 16 hex digits)")]
    BadUid { uid: String },
    #[error("uid {uid} appears in no audit or origin log under {}", dir.display())]
    UnknownUid { uid: String, dir: PathBuf },
}

/// Knobs for [`audit_dir_with`]. Empty for now; [`Default`] is what
/// [`audit_dir`] uses.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AuditOptions {}

// ---------------------------------------------------------------------------
// Parsed logs

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Put,
}

impl Op {
    fn request_kind(self) -> &'static str {
        match self {
            Op::Get => "DataRequest",
            Op::Put => "InsertRequest",
        }
    }
}

const REPLY_KINDS: [&str; 7] = [
    "DataFound",
    "DataNotFound",
    "RouteNotFound",
    "RejectedLoop",
    "RejectedOverload",
    "InsertSucceeded",
    "InsertFailed",
];

#[derive(Clone, Debug)]
enum Ev {
    ReqRecv {
        uid: u64,
        htl: u32,
        from: String,
        op: Op,
    },
    ReqSent {
        uid: u64,
        htl: u32,
        to: String,
        op: Op,
    },
    RepRecv {
        uid: u64,
        reply: &'static str,
        from: String,
        htl: Option<u32>,
    },
    RepSent {
        uid: u64,
        reply: &'static str,
        to: String,
        htl: Option<u32>,
    },
    Other,
}

impl Ev {
    fn uid(&self) -> Option<u64> {
        match self {
            Ev::ReqRecv { uid, .. }
            | Ev::ReqSent { uid, .. }
            | Ev::RepRecv { uid, .. }
            | Ev::RepSent { uid, .. } => Some(*uid),
            Ev::Other => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Line {
    ts: u64,
    ev: Ev,
}

#[derive(Clone, Debug)]
struct OriginStart {
    ts: u64,
    op: Op,
}

#[derive(Clone, Debug)]
struct NodeData {
    name: String,
    events: Vec<Line>,
    /// Originated uids in file order.
    originated: Vec<u64>,
    starts: HashMap<u64, OriginStart>,
    /// uid -> (ts, outcome)
    ends: HashMap<u64, (u64, String)>,
}

#[derive(Deserialize)]
struct RawLine {
    ts: Option<u64>,
    node: Option<String>,
    event: Option<String>,
    uid: Option<String>,
    htl: Option<u32>,
    from: Option<String>,
    to: Option<String>,
    op: Option<String>,
    reply: Option<String>,
    outcome: Option<String>,
}

#[derive(Deserialize)]
struct TestnetFile {
    nodes: BTreeMap<String, TestnetNode>,
}

#[derive(Deserialize)]
struct TestnetNode {
    id: String,
}

#[derive(Deserialize)]
struct WorkloadFile {
    max_htl: Option<u32>,
    #[serde(default)]
    files: Vec<WorkloadEntry>,
}

#[derive(Deserialize)]
struct WorkloadEntry {
    path: String,
    uri: String,
}

struct Run {
    /// Sorted by name.
    nodes: Vec<NodeData>,
    warnings: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
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

/// Parse a uid as logged (hex, up to 16 digits).
fn parse_uid(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

fn fmt_uid(uid: u64) -> String {
    format!("{uid:016x}")
}

fn parse_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AuditError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| malformed(path, e.line(), e.to_string()))
}

/// Split a file into numbered non-empty lines and parse each as JSON.
fn read_jsonl(path: &Path) -> Result<Option<Vec<(usize, RawLine)>>, AuditError> {
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
        let parsed: RawLine = serde_json::from_str(text)
            .map_err(|e| malformed(path, lineno, format!("not a JSON log object: {e}")))?;
        out.push((lineno, parsed));
    }
    Ok(Some(out))
}

fn need<T: Clone>(v: &Option<T>, field: &str, path: &Path, line: usize) -> Result<T, AuditError> {
    v.clone()
        .ok_or_else(|| malformed(path, line, format!("missing field `{field}`")))
}

fn need_uid(raw: &RawLine, path: &Path, line: usize) -> Result<u64, AuditError> {
    let text = need(&raw.uid, "uid", path, line)?;
    parse_uid(&text)
        .ok_or_else(|| malformed(path, line, format!("uid {text:?} is not a hex request ID")))
}

fn need_op(raw: &RawLine, path: &Path, line: usize) -> Result<Op, AuditError> {
    match need(&raw.op, "op", path, line)?.as_str() {
        "get" => Ok(Op::Get),
        "put" => Ok(Op::Put),
        other => Err(malformed(
            path,
            line,
            format!("op {other:?} is neither \"get\" nor \"put\""),
        )),
    }
}

fn need_reply(raw: &RawLine, path: &Path, line: usize) -> Result<&'static str, AuditError> {
    let text = need(&raw.reply, "reply", path, line)?;
    REPLY_KINDS
        .iter()
        .copied()
        .find(|k| *k == text)
        .ok_or_else(|| malformed(path, line, format!("unknown reply kind {text:?}")))
}

fn load_run(dir: &Path) -> Result<Run, AuditError> {
    let testnet_path = dir.join("testnet.json");
    let testnet: TestnetFile = parse_json_file(&testnet_path)?;
    if testnet.nodes.is_empty() {
        return Err(AuditError::BadTestnet {
            path: testnet_path,
            message: "no nodes".into(),
        });
    }
    let mut id_to_name: HashMap<String, String> = HashMap::new();
    for (name, node) in &testnet.nodes {
        if let Some(other) = id_to_name.insert(node.id.clone(), name.clone()) {
            return Err(AuditError::BadTestnet {
                path: testnet_path,
                message: format!("nodes {other} and {name} have the same id"),
            });
        }
    }
    let peer_name = |key: String| id_to_name.get(&key).cloned().unwrap_or(key);

    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    for (name, entry) in &testnet.nodes {
        let node_dir = dir.join(name);
        let audit_path = node_dir.join("audit.jsonl");
        let mut events = Vec::new();
        match read_jsonl(&audit_path)? {
            None => warnings.push(format!("{name}: no audit.jsonl")),
            Some(lines) => {
                let mut foreign = false;
                for (line, raw) in lines {
                    let p = audit_path.as_path();
                    let ts = need(&raw.ts, "ts", p, line)?;
                    let event = need(&raw.event, "event", p, line)?;
                    if raw.node.as_ref().is_some_and(|n| *n != entry.id) && !foreign {
                        foreign = true;
                        warnings.push(format!(
                            "{}:{line}: `node` is not {name}'s id from testnet.json",
                            audit_path.display()
                        ));
                    }
                    let ev = match event.as_str() {
                        "request_received" => Ev::ReqRecv {
                            uid: need_uid(&raw, p, line)?,
                            htl: need(&raw.htl, "htl", p, line)?,
                            from: peer_name(need(&raw.from, "from", p, line)?),
                            op: need_op(&raw, p, line)?,
                        },
                        "request_sent" => Ev::ReqSent {
                            uid: need_uid(&raw, p, line)?,
                            htl: need(&raw.htl, "htl", p, line)?,
                            to: peer_name(need(&raw.to, "to", p, line)?),
                            op: need_op(&raw, p, line)?,
                        },
                        "reply_received" => Ev::RepRecv {
                            uid: need_uid(&raw, p, line)?,
                            reply: need_reply(&raw, p, line)?,
                            from: peer_name(need(&raw.from, "from", p, line)?),
                            htl: raw.htl,
                        },
                        "reply_sent" => Ev::RepSent {
                            uid: need_uid(&raw, p, line)?,
                            reply: need_reply(&raw, p, line)?,
                            to: peer_name(need(&raw.to, "to", p, line)?),
                            htl: raw.htl,
                        },
                        // block_cached, block_stored, link_up, link_down, and
                        // events added later: not used by the audit.
                        _ => Ev::Other,
                    };
                    events.push(Line { ts, ev });
                }
            }
        }

        let origin_path = node_dir.join("origin.jsonl");
        let mut originated = Vec::new();
        let mut starts = HashMap::new();
        let mut ends = HashMap::new();
        match read_jsonl(&origin_path)? {
            None => warnings.push(format!("{name}: no origin.jsonl")),
            Some(lines) => {
                for (line, raw) in lines {
                    let p = origin_path.as_path();
                    let ts = need(&raw.ts, "ts", p, line)?;
                    let uid = need_uid(&raw, p, line)?;
                    if let Some(outcome) = raw.outcome.clone() {
                        ends.entry(uid).or_insert((ts, outcome));
                    } else {
                        let op = need_op(&raw, p, line)?;
                        if starts.insert(uid, OriginStart { ts, op }).is_none() {
                            originated.push(uid);
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

// ---------------------------------------------------------------------------
// The report

/// Counts split by operation.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    pub total: usize,
    pub get: usize,
    pub put: usize,
}

/// A distribution summary; fields are `null` when there are no samples.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Summary::default();
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        // Nearest rank.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Summary {
            count: n,
            mean: Some(v.iter().sum::<f64>() / n as f64),
            median: Some(median),
            p95: Some(v[rank - 1]),
            max: Some(v[n - 1]),
        }
    }
}

/// One invariant: how often it broke, and a few examples.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Invariant {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Invariant {
    fn add(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example);
        }
    }
}

/// The leak check; `checked` is false when there was no `workload.json`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LeakCheck {
    pub checked: bool,
    pub count: usize,
    pub examples: Vec<String>,
    pub files_scanned: usize,
    pub workload_files: usize,
}

/// All invariant checks.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Violations {
    /// Sum of the counts below.
    pub total: usize,
    pub misrouted_reply: Invariant,
    pub htl_overspent: Invariant,
    pub remembered_uid: Invariant,
    pub leak: LeakCheck,
}

/// A local signal scored as a classifier of "my neighbour originated this".
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Classifier {
    pub name: String,
    /// What the signal says, as a phrase ("a request arriving with htl = max").
    pub description: String,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub tn: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// precision / base rate: 1 means no better than guessing.
    pub lift: Option<f64>,
}

/// Best-observer anonymity-set entropy over originated requests.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EntropyReport {
    /// Originated requests some other node received.
    pub requests_observed: usize,
    /// Originated requests no other node received (answered locally, no peers).
    pub requests_unobserved: usize,
    /// Observed requests whose best observer had H = 0 (knew the originator).
    pub requests_exposed: usize,
    pub mean_bits: Option<f64>,
    pub min_bits: Option<f64>,
    /// log2 N: the entropy with no information at all.
    pub max_bits: Option<f64>,
    /// Degree of anonymity d = H / log2 N.
    pub mean_degree: Option<f64>,
    pub min_degree: Option<f64>,
}

/// What each node could infer locally about who originated a request.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Anonymity {
    /// `request_received` lines scored.
    pub observations: usize,
    /// Observations whose sender really originated the request.
    pub positives: usize,
    /// positives / observations.
    pub base_rate: Option<f64>,
    pub max_htl: Option<u32>,
    /// `"workload.json"` or `"largest htl observed"`.
    pub max_htl_source: String,
    pub classifiers: Vec<Classifier>,
    pub entropy: EntropyReport,
    /// Plain-language findings (leaks), also shown in the text report.
    pub findings: Vec<String>,
}

/// The result of auditing a testnet directory.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AuditReport {
    pub dir: String,
    pub nodes: usize,
    /// Originated requests (origin.jsonl start lines).
    pub requests: OpCounts,
    /// Originated requests whose outcome is `found` / `inserted`.
    pub succeeded: OpCounts,
    /// Hops per successful get: `DataFound` replies sent for its uid.
    pub hops: Summary,
    /// `request_sent` + `reply_sent` lines per originated request.
    pub messages_per_request: Summary,
    /// `RouteNotFound` + `RejectedLoop` replies sent.
    pub backtracks: usize,
    /// `RejectedLoop` replies sent.
    pub loops_rejected: usize,
    pub violations: Violations,
    pub anonymity: Anonymity,
    pub warnings: Vec<String>,
}

/// Audit a testnet directory with default options.
pub fn audit_dir(dir: &Path) -> Result<AuditReport, AuditError> {
    audit_dir_with(dir, &AuditOptions::default())
}

/// Audit a testnet directory.
pub fn audit_dir_with(dir: &Path, _options: &AuditOptions) -> Result<AuditReport, AuditError> {
    let run = load_run(dir)?;
    let workload_path = dir.join("workload.json");
    let workload: Option<WorkloadFile> = if workload_path.exists() {
        Some(parse_json_file(&workload_path)?)
    } else {
        None
    };

    let mut report = AuditReport {
        dir: dir.display().to_string(),
        nodes: run.nodes.len(),
        warnings: run.warnings.clone(),
        ..AuditReport::default()
    };
    traffic(&run, &mut report);
    report.violations.misrouted_reply = check_misrouted(&run);
    report.violations.htl_overspent = check_overspent(&run);
    report.violations.remembered_uid = check_remembered(&run);
    report.violations.leak = match &workload {
        Some(w) => check_leaks(dir, &run, w, &mut report.warnings)?,
        None => LeakCheck::default(),
    };
    let v = &mut report.violations;
    v.total =
        v.misrouted_reply.count + v.htl_overspent.count + v.remembered_uid.count + v.leak.count;
    report.anonymity = anonymity(&run, workload.as_ref().and_then(|w| w.max_htl));
    Ok(report)
}

fn traffic(run: &Run, report: &mut AuditReport) {
    // Per uid: messages sent, DataFound replies sent.
    let mut messages: HashMap<u64, usize> = HashMap::new();
    let mut found_replies: HashMap<u64, usize> = HashMap::new();
    for node in &run.nodes {
        for line in &node.events {
            match &line.ev {
                Ev::ReqSent { uid, .. } => *messages.entry(*uid).or_default() += 1,
                Ev::RepSent { uid, reply, .. } => {
                    *messages.entry(*uid).or_default() += 1;
                    match *reply {
                        "DataFound" => *found_replies.entry(*uid).or_default() += 1,
                        "RouteNotFound" => report.backtracks += 1,
                        "RejectedLoop" => {
                            report.backtracks += 1;
                            report.loops_rejected += 1;
                        }
                        _ => {}
                    }
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

/// Invariant 1: every reply answers a request the peer has open at this node.
fn check_misrouted(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    for node in &run.nodes {
        let mut open: HashMap<(&str, u64), usize> = HashMap::new();
        for line in &node.events {
            match &line.ev {
                Ev::ReqRecv { uid, from, .. } => *open.entry((from.as_str(), *uid)).or_default() += 1,
                Ev::RepSent { uid, reply, to, .. } => {
                    match open.get_mut(&(to.as_str(), *uid)) {
                        Some(n) if *n > 0 => *n -= 1,
                        _ => inv.add(format!(
                            "{}: sent {reply} for uid {} to {to}, which had no open request for it there (ts {})",
                            node.name,
                            fmt_uid(*uid),
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
fn check_overspent(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    let mut sent_gets: HashMap<u64, usize> = HashMap::new();
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
        let mut first_sent: HashMap<u64, u32> = HashMap::new();
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
                    fmt_uid(*uid)
                ));
            }
        }
    }
    inv
}

/// Invariant 3: `RejectedLoop` only for a uid the node is handling.
fn check_remembered(run: &Run) -> Invariant {
    let mut inv = Invariant::default();
    for node in &run.nodes {
        let mut by_uid: BTreeMap<u64, Vec<&Line>> = BTreeMap::new();
        for line in &node.events {
            if let Some(uid) = line.ev.uid() {
                by_uid.entry(uid).or_default().push(line);
            }
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
                            Some(Ev::RepSent { to, reply: "RejectedLoop" | "RejectedOverload", .. })
                                if to == from
                        );
                        if !answered_at_once {
                            upstream = Some(from.as_str());
                        }
                    }
                    Ev::RepSent {
                        reply: "RejectedLoop",
                        to,
                        ..
                    } => {
                        let originating =
                            origin_window.is_some_and(|(s, e)| s <= line.ts && line.ts <= e);
                        if upstream.is_none() && !originating {
                            inv.add(format!(
                                "{}: sent RejectedLoop for uid {} to {to} at ts {} while not handling it",
                                node.name,
                                fmt_uid(uid),
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

// ---------------------------------------------------------------------------
// Leaks

struct Needle {
    bytes: Vec<u8>,
    /// "the decryption key of workload/f0.bin", "plaintext of ... (start window, hex)".
    what: String,
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn plaintext_needles(label: &str, data: &[u8], out: &mut Vec<Needle>) {
    let windows: Vec<(&str, &[u8])> = if data.len() <= WINDOW {
        vec![("whole file", data)]
    } else {
        let mid = (data.len() - WINDOW) / 2;
        let end = data.len() - WINDOW;
        vec![
            ("start", &data[..WINDOW]),
            ("middle", &data[mid..mid + WINDOW]),
            ("end", &data[end..]),
        ]
    };
    for (pos, w) in windows {
        let mut push = |enc: &str, bytes: Vec<u8>| {
            out.push(Needle {
                bytes,
                what: format!("plaintext of {label} ({pos} window, {enc})"),
            })
        };
        push("raw bytes", w.to_vec());
        push("hex", hex(w, false).into_bytes());
        push("HEX", hex(w, true).into_bytes());
        // Base64 depends on alignment: encode whole 3-byte groups from each
        // of three offsets, so a window shows whatever the text's alignment.
        for k in 0..3.min(w.len()) {
            let s = &w[k..];
            let l = s.len() / 3 * 3;
            if l < 6 {
                continue;
            }
            push("base64", STANDARD_NO_PAD.encode(&s[..l]).into_bytes());
            push("base64url", URL_SAFE_NO_PAD.encode(&s[..l]).into_bytes());
        }
    }
}

/// Does `hay` contain `needle`? Plain search for short needles.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Which needles occur in `hay`: one pass, looking up 8-byte prefixes.
fn find_needles(hay: &[u8], needles: &[Needle]) -> BTreeSet<usize> {
    const P: usize = 8;
    let mut by_prefix: HashMap<[u8; P], Vec<usize>> = HashMap::new();
    let mut found = BTreeSet::new();
    for (i, n) in needles.iter().enumerate() {
        match n.bytes.get(..P).and_then(|p| <[u8; P]>::try_from(p).ok()) {
            Some(p) => by_prefix.entry(p).or_default().push(i),
            None => {
                if contains(hay, &n.bytes) {
                    found.insert(i);
                }
            }
        }
    }
    if by_prefix.is_empty() {
        return found;
    }
    for start in 0..hay.len().saturating_sub(P - 1) {
        let Ok(p) = <[u8; P]>::try_from(&hay[start..start + P]) else {
            continue;
        };
        if let Some(candidates) = by_prefix.get(&p) {
            for &i in candidates {
                if hay[start..].starts_with(&needles[i].bytes) {
                    found.insert(i);
                }
            }
        }
    }
    found
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AuditError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(io_err(dir))?.path());
    }
    paths.sort();
    for path in paths {
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            files_under(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn check_leaks(
    dir: &Path,
    run: &Run,
    workload: &WorkloadFile,
    warnings: &mut Vec<String>,
) -> Result<LeakCheck, AuditError> {
    let mut check = LeakCheck {
        checked: true,
        workload_files: workload.files.len(),
        ..LeakCheck::default()
    };
    let mut needles = Vec::new();
    let mut workload_paths = HashSet::new();
    for entry in &workload.files {
        let label = entry.path.as_str();
        let uri = entry.uri.trim();
        if !uri.is_empty() {
            needles.push(Needle {
                bytes: uri.as_bytes().to_vec(),
                what: format!("the URI of {label}"),
            });
        }
        match uri.rsplit_once(',') {
            Some((_, key)) if !key.is_empty() => {
                needles.push(Needle {
                    bytes: key.as_bytes().to_vec(),
                    what: format!("the decryption key of {label}"),
                });
                if let Ok(raw) = URL_SAFE_NO_PAD.decode(key) {
                    for (enc, bytes) in [
                        ("hex", hex(&raw, false).into_bytes()),
                        ("HEX", hex(&raw, true).into_bytes()),
                        ("base64", STANDARD_NO_PAD.encode(&raw).into_bytes()),
                        ("raw bytes", raw.clone()),
                    ] {
                        needles.push(Needle {
                            bytes,
                            what: format!("the decryption key of {label} ({enc})"),
                        });
                    }
                }
            }
            _ => warnings.push(format!(
                "workload.json: URI of {label} has no decryption key part; key not checked"
            )),
        }
        let path = dir.join(&entry.path);
        match fs::read(&path) {
            Ok(data) if data.len() >= 4 => {
                plaintext_needles(label, &data, &mut needles);
                if let Ok(p) = fs::canonicalize(&path) {
                    workload_paths.insert(p);
                }
            }
            Ok(_) => warnings.push(format!(
                "workload file {label} is under 4 bytes; its plaintext is not checked"
            )),
            Err(e) => warnings.push(format!(
                "workload file {}: {e}; its plaintext is not checked",
                path.display()
            )),
        }
    }
    // Identical needles (e.g. the same window twice) would be reported twice.
    let mut seen = HashSet::new();
    needles.retain(|n| seen.insert(n.bytes.clone()));

    for node in &run.nodes {
        let mut files = Vec::new();
        files_under(&dir.join(&node.name), &mut files)?;
        for file in files {
            if fs::canonicalize(&file).is_ok_and(|p| workload_paths.contains(&p)) {
                continue;
            }
            let len = fs::metadata(&file).map_err(io_err(&file))?.len();
            if len > MAX_SCAN_BYTES {
                warnings.push(format!("{}: too large to scan for leaks", file.display()));
                continue;
            }
            let hay = fs::read(&file).map_err(io_err(&file))?;
            check.files_scanned += 1;
            let rel = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            for i in find_needles(&hay, &needles) {
                check.count += 1;
                if check.examples.len() < MAX_EXAMPLES {
                    check
                        .examples
                        .push(format!("{}: {rel} contains {}", node.name, needles[i].what));
                }
            }
        }
    }
    Ok(check)
}

// ---------------------------------------------------------------------------
// Anonymity

struct Observation<'a> {
    observer: &'a str,
    uid: u64,
    htl: u32,
    op: Op,
    first_seen: bool,
    truth: bool,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Entropy (bits) of an observer's posterior: `p` on its neighbour, the rest
/// spread over the `n - 2` nodes that are neither observer nor neighbour.
fn posterior_entropy(p: f64, n: usize) -> f64 {
    if n <= 2 {
        return 0.0;
    }
    let rest = 1.0 - p;
    let mut h = 0.0;
    if p > 0.0 {
        h -= p * p.log2();
    }
    if rest > 0.0 {
        h -= rest * (rest / (n - 2) as f64).log2();
    }
    h.max(0.0)
}

fn anonymity(run: &Run, workload_max: Option<u32>) -> Anonymity {
    let originated: HashMap<&str, &HashMap<u64, OriginStart>> = run
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), &n.starts))
        .collect();
    let mut obs = Vec::new();
    let mut largest_htl: Option<u32> = None;
    for node in &run.nodes {
        let mut seen: HashSet<u64> = HashSet::new();
        for line in &node.events {
            match &line.ev {
                Ev::ReqRecv { uid, htl, from, op } => {
                    let truth = originated
                        .get(from.as_str())
                        .is_some_and(|s| s.contains_key(uid));
                    obs.push(Observation {
                        observer: &node.name,
                        uid: *uid,
                        htl: *htl,
                        op: *op,
                        first_seen: !seen.contains(uid),
                        truth,
                    });
                    largest_htl = largest_htl.max(Some(*htl));
                }
                Ev::ReqSent { htl, .. } => largest_htl = largest_htl.max(Some(*htl)),
                _ => {}
            }
            if let Some(uid) = line.ev.uid() {
                seen.insert(uid);
            }
        }
    }
    let (max_htl, source) = match workload_max {
        Some(m) => (Some(m), "workload.json"),
        None => (largest_htl, "largest htl observed"),
    };
    let positives = obs.iter().filter(|o| o.truth).count();
    let mut a = Anonymity {
        observations: obs.len(),
        positives,
        base_rate: ratio(positives, obs.len()),
        max_htl,
        max_htl_source: source.to_string(),
        ..Anonymity::default()
    };

    type Signal = Box<dyn Fn(&Observation) -> bool>;
    let mut signals: Vec<(String, String, Signal)> = Vec::new();
    if let Some(m) = max_htl {
        signals.push((
            "htl_is_max".into(),
            "a request arriving with htl = max".into(),
            Box::new(move |o: &Observation| o.htl == m),
        ));
        let mut thresholds: Vec<u32> = [
            m.saturating_sub(1),
            m.saturating_sub(2),
            m.saturating_sub(4),
            m / 2,
        ]
        .into_iter()
        .filter(|t| *t >= 1 && *t < m)
        .collect();
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        thresholds.dedup();
        for t in thresholds {
            signals.push((
                format!("htl_ge_{t}"),
                format!("a request arriving with htl >= {t}"),
                Box::new(move |o: &Observation| o.htl >= t),
            ));
        }
    }
    signals.push((
        "first_seen".into(),
        "a request for a uid the node had never seen".into(),
        Box::new(|o: &Observation| o.first_seen),
    ));
    signals.push((
        "op_is_put".into(),
        "an insert".into(),
        Box::new(|o: &Observation| o.op == Op::Put),
    ));
    for (name, description, signal) in signals {
        let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
        for o in &obs {
            match (signal(o), o.truth) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        let precision = ratio(tp, tp + fp);
        if let (Some(p), Some(base)) = (precision, a.base_rate) {
            if tp > 0 && p >= LEAK_PRECISION && p > base {
                a.findings.push(format!(
                    "LEAK: {description} came from its originator in {:.3}% of cases ({tp} of {}; base rate {:.3}%), catching {:.3}% of first hops ({name})",
                    100.0 * p,
                    tp + fp,
                    100.0 * base,
                    100.0 * ratio(tp, tp + fn_).unwrap_or(0.0),
                ));
            }
        }
        a.classifiers.push(Classifier {
            name,
            description,
            tp,
            fp,
            fn_,
            tn,
            precision,
            recall: ratio(tp, tp + fn_),
            lift: match (precision, a.base_rate) {
                (Some(p), Some(b)) if b > 0.0 => Some(p / b),
                _ => None,
            },
        });
    }

    // Best-observer entropy.
    let n = run.nodes.len();
    let mut by_htl: HashMap<u32, (usize, usize)> = HashMap::new();
    for o in &obs {
        let e = by_htl.entry(o.htl).or_default();
        e.1 += 1;
        if o.truth {
            e.0 += 1;
        }
    }
    let mut best: HashMap<u64, f64> = HashMap::new();
    let mut originator_of: HashMap<u64, &str> = HashMap::new();
    for node in &run.nodes {
        for uid in &node.originated {
            originator_of.entry(*uid).or_insert(&node.name);
        }
    }
    for o in &obs {
        let Some(origin) = originator_of.get(&o.uid) else {
            continue;
        };
        if *origin == o.observer {
            continue;
        }
        let (pos, total) = by_htl.get(&o.htl).copied().unwrap_or((0, 1));
        let h = posterior_entropy(pos as f64 / total.max(1) as f64, n);
        let b = best.entry(o.uid).or_insert(f64::INFINITY);
        *b = b.min(h);
    }
    let hs: Vec<f64> = best.values().copied().collect();
    let e = &mut a.entropy;
    e.requests_observed = hs.len();
    e.requests_unobserved = originator_of.len() - hs.len();
    e.requests_exposed = hs.iter().filter(|h| **h < 1e-9).count();
    if !hs.is_empty() {
        let mean = hs.iter().sum::<f64>() / hs.len() as f64;
        let min = hs.iter().copied().fold(f64::INFINITY, f64::min);
        e.mean_bits = Some(mean);
        e.min_bits = Some(min);
        if n >= 2 {
            let hmax = (n as f64).log2();
            e.max_bits = Some(hmax);
            e.mean_degree = Some(mean / hmax);
            e.min_degree = Some(min / hmax);
        }
    }
    if e.requests_exposed > 0 {
        a.findings.push(format!(
            "EXPOSED: for {} of {} observed requests some node could name the originator with certainty (anonymity-set entropy H = 0)",
            e.requests_exposed, e.requests_observed
        ));
    }
    a
}

// ---------------------------------------------------------------------------
// Rendering

fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}

fn render_invariant(out: &mut String, name: &str, inv: &Invariant) {
    out.push_str(&format!("  {name}: {}\n", inv.count));
    for e in &inv.examples {
        out.push_str(&format!("    - {e}\n"));
    }
}

impl AuditReport {
    /// Violations of the protocol invariants (the leak check included).
    pub fn violation_count(&self) -> usize {
        self.violations.total
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize report: {e}\"}}"))
    }

    /// A compact, readable report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("veil audit {} ({} nodes)\n", self.dir, self.nodes));
        out.push_str("\nTraffic\n");
        let (r, s) = (&self.requests, &self.succeeded);
        out.push_str(&format!(
            "  requests: {} (get {}, put {}); succeeded: {} (get {}, put {})\n",
            r.total, r.get, r.put, s.total, s.get, s.put
        ));
        out.push_str(&format!(
            "  hops per successful get: median {}, p95 {}, max {} (n = {})\n",
            f3(self.hops.median),
            f3(self.hops.p95),
            f3(self.hops.max),
            self.hops.count
        ));
        let m = &self.messages_per_request;
        out.push_str(&format!(
            "  messages per request: mean {}, median {}, max {}\n",
            f3(m.mean),
            f3(m.median),
            f3(m.max)
        ));
        out.push_str(&format!(
            "  backtracks (RouteNotFound + RejectedLoop): {}; loops rejected: {}\n",
            self.backtracks, self.loops_rejected
        ));

        let v = &self.violations;
        out.push_str(&format!("\nInvariants ({} violations)\n", v.total));
        render_invariant(&mut out, "misrouted_reply", &v.misrouted_reply);
        render_invariant(&mut out, "htl_overspent", &v.htl_overspent);
        render_invariant(&mut out, "remembered_uid", &v.remembered_uid);
        if v.leak.checked {
            out.push_str(&format!(
                "  leak: {} ({} workload files, {} node files scanned)\n",
                v.leak.count, v.leak.workload_files, v.leak.files_scanned
            ));
            for e in &v.leak.examples {
                out.push_str(&format!("    - {e}\n"));
            }
        } else {
            out.push_str("  leak: not checked (no workload.json)\n");
        }

        let a = &self.anonymity;
        out.push_str("\nAnonymity (each node's local view: is my neighbour the originator?)\n");
        out.push_str(&format!(
            "  observations: {} requests received, {} from their originator (base rate {}); max htl {} ({})\n",
            a.observations,
            a.positives,
            f3(a.base_rate),
            a.max_htl.map_or_else(|| "n/a".to_string(), |m| m.to_string()),
            a.max_htl_source
        ));
        out.push_str(&format!(
            "  {:<14} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}\n",
            "signal", "TP", "FP", "FN", "TN", "precision", "recall", "lift"
        ));
        for c in &a.classifiers {
            out.push_str(&format!(
                "  {:<14} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}\n",
                c.name,
                c.tp,
                c.fp,
                c.fn_,
                c.tn,
                f3(c.precision),
                f3(c.recall),
                f3(c.lift)
            ));
        }
        out.push_str(
            "  (first_seen holds on every first hop, so its recall is 1 by construction; \
             it is only as precise as uids are rare to come back)\n",
        );
        let e = &a.entropy;
        out.push_str(&format!(
            "  best-observer entropy over {} observed requests ({} unobserved): mean {} bits, min {} bits (of {} max)\n",
            e.requests_observed,
            e.requests_unobserved,
            f3(e.mean_bits),
            f3(e.min_bits),
            f3(e.max_bits)
        ));
        out.push_str(&format!(
            "  degree of anonymity d = H / log2 N: mean {}, min {}\n",
            f3(e.mean_degree),
            f3(e.min_degree)
        ));
        for f in &a.findings {
            out.push_str(&format!("  {f}\n"));
        }
        if !self.warnings.is_empty() {
            out.push_str("\nWarnings\n");
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Trace

/// Only `RouteNotFound` among the replies carries an HTL.
fn reply_htl(reply: &str, htl: Option<u32>) -> Option<u32> {
    if reply == "RouteNotFound" {
        htl
    } else {
        None
    }
}

struct TraceEvent {
    ts: u64,
    sent: bool,
    peer: String,
    kind: &'static str,
    htl: Option<u32>,
    /// For a received event: (sender node index, index in its list).
    matched: Option<(usize, usize)>,
}

/// The messages of one request in the `veil trace` line format
/// (`FROM -> TO Kind`, plus ` htl=N` for kinds that carry one), in causal
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
    let index: HashMap<&str, usize> = run
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut lists: Vec<Vec<TraceEvent>> = Vec::new();
    let mut known = false;
    for node in &run.nodes {
        known |= node.starts.contains_key(&wanted);
        let mut list = Vec::new();
        for line in &node.events {
            if line.ev.uid() != Some(wanted) {
                continue;
            }
            known = true;
            let (sent, peer, kind, htl) = match &line.ev {
                Ev::ReqSent { to, op, htl, .. } => (true, to, op.request_kind(), Some(*htl)),
                Ev::ReqRecv { from, op, htl, .. } => (false, from, op.request_kind(), Some(*htl)),
                Ev::RepSent { to, reply, htl, .. } => (true, to, *reply, reply_htl(reply, *htl)),
                Ev::RepRecv {
                    from, reply, htl, ..
                } => (false, from, *reply, reply_htl(reply, *htl)),
                Ev::Other => continue,
            };
            list.push(TraceEvent {
                ts: line.ts,
                sent,
                peer: peer.clone(),
                kind,
                htl,
                matched: None,
            });
        }
        lists.push(list);
    }
    if !known {
        return Err(AuditError::UnknownUid {
            uid: fmt_uid(wanted),
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
            out.push(match e.htl {
                Some(h) => format!("{from} -> {to} {} htl={h}", e.kind),
                None => format!("{from} -> {to} {}", e.kind),
            });
        }
        heads[n] += 1;
    }
    Ok(out)
}
