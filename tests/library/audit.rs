//! `veil audit` on synthetic testnet directories: a correct run of the A..F
//! lecture example, copies with one planted violation each, and a run whose
//! relays sometimes forward at the maximum HTL.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use tempfile::TempDir;

use veil::audit::{audit_dir, trace_uid, AuditError, AuditReport};
use veil::keys::Chk;

const UID: &str = "9f3a0c1d2e4b5a69";

/// A testnet directory being written: one audit and origin log per node.
struct Net {
    dir: TempDir,
    names: Vec<&'static str>,
    audit: BTreeMap<&'static str, Vec<String>>,
    origin: BTreeMap<&'static str, Vec<String>>,
    /// Per-node clock offsets (ms), to model skewed wall clocks.
    skew: BTreeMap<&'static str, i64>,
    now: u64,
    key: String,
    uri: String,
    /// (node, uid) pairs whose requests the node's client has in flight.
    originating: std::collections::HashSet<(&'static str, String)>,
    plaintext: Vec<u8>,
}

fn id_of(name: &str) -> String {
    let mut raw = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        raw[i % 32] ^= b;
    }
    raw[31] = 0x5a;
    URL_SAFE_NO_PAD.encode(raw)
}

fn plaintext() -> Vec<u8> {
    // Deterministic, incompressible-looking bytes (no run of text that could
    // turn up by accident in a log).
    let mut x: u32 = 0x1234_5678;
    (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

impl Net {
    fn new(names: &[&'static str]) -> Net {
        let plaintext = plaintext();
        let (chk, _block) = Chk::encode(&plaintext).unwrap();
        Net {
            dir: TempDir::new().unwrap(),
            names: names.to_vec(),
            audit: names.iter().map(|n| (*n, Vec::new())).collect(),
            origin: names.iter().map(|n| (*n, Vec::new())).collect(),
            skew: BTreeMap::new(),
            now: 1_764_072_000_000,
            key: chk.routing.to_base64(),
            originating: Default::default(),
            uri: chk.to_uri(),
            plaintext,
        }
    }

    fn ts(&self, node: &str) -> u64 {
        let skew = self.skew.get(node).copied().unwrap_or(0);
        self.now.saturating_add_signed(skew)
    }

    fn start(&mut self, node: &'static str, uid: &str, op: &str) {
        let line = json!({"ts_us": self.ts(node) * 1000, "flow": uid, "event": "request_started",
                          "key": self.key, "op": op});
        self.origin.get_mut(node).unwrap().push(line.to_string());
        self.originating.insert((node, uid.to_string()));
        self.now += 1;
    }

    fn end(&mut self, node: &'static str, uid: &str, outcome: &str) {
        let line = json!({"ts_us": self.ts(node) * 1000, "flow": uid, "event": "request_finished",
                          "outcome": outcome});
        self.origin.get_mut(node).unwrap().push(line.to_string());
        self.originating.remove(&(node, uid.to_string()));
        self.now += 1;
    }

    /// One message, logged as sent at `from` and received at `to`.
    fn msg(
        &mut self,
        from: &'static str,
        to: &'static str,
        kind: &str,
        uid: &str,
        htl: Option<u32>,
    ) {
        let mut extra = json!({"kind": kind, "flow": uid});
        if let Some(h) = htl {
            extra["htl"] = json!(h);
        }
        if kind == "DataRequest" || kind == "InsertRequest" {
            extra["key"] = json!(self.key);
            if self.originating.contains(&(from, uid.to_string())) {
                let op = if kind == "DataRequest" { "get" } else { "put" };
                let line = json!({"ts_us": self.ts(from) * 1000, "flow": uid,
                                  "event": "flow_started", "to": id_of(to), "op": op});
                self.origin.get_mut(from).unwrap().push(line.to_string());
            }
        }
        let line = |ts: u64, node: &str, event: &str, peer: &str| {
            let mut v = json!({"ts_us": ts * 1000, "node": id_of(node), "event": event,
                               "peer": id_of(peer)});
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            v.to_string()
        };
        let s = line(self.ts(from), from, "send", to);
        self.audit.get_mut(from).unwrap().push(s);
        self.now += 5;
        let r = line(self.ts(to), to, "recv", from);
        self.audit.get_mut(to).unwrap().push(r);
        self.now += 5;
    }

    fn raw_audit(&mut self, node: &'static str, line: String) {
        self.audit.get_mut(node).unwrap().push(line);
    }

    fn write(&self, workload: bool) -> &Path {
        let dir = self.dir.path();
        let nodes: serde_json::Map<String, serde_json::Value> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    json!({"id": id_of(n), "listen": format!("127.0.0.1:{}", 7401 + i),
                           "client": {"kind": "tcp", "addr": format!("127.0.0.1:{}", 8401 + i),
                                      "cookie": format!("/nonexistent/{n}/client.cookie")},
                           "pid": 100 + i}),
                )
            })
            .collect();
        fs::write(
            dir.join("testnet.json"),
            json!({"version": 1, "ready": true, "nodes": nodes}).to_string(),
        )
        .unwrap();
        for n in &self.names {
            fs::create_dir_all(dir.join(n)).unwrap();
            let mut a = self.audit[n].join("\n");
            a.push('\n');
            fs::write(dir.join(n).join("audit.jsonl"), a).unwrap();
            let mut o = self.origin[n].join("\n");
            o.push('\n');
            fs::write(dir.join(n).join("origin.jsonl"), o).unwrap();
            fs::write(dir.join(n).join("node.log"), "INFO node started\n").unwrap();
        }
        if workload {
            fs::create_dir_all(dir.join("workload")).unwrap();
            fs::write(dir.join("workload/f0.bin"), &self.plaintext).unwrap();
            fs::write(
                dir.join("workload.json"),
                json!({"version": 1, "max_htl": 18, "files": [{"path": "workload/f0.bin", "uri": self.uri}]})
                    .to_string(),
            )
            .unwrap();
        }
        dir
    }

    fn append(&self, node: &str, file: &str, text: &str) {
        let path = self.dir.path().join(node).join(file);
        let mut old = fs::read(&path).unwrap_or_default();
        old.extend_from_slice(text.as_bytes());
        fs::write(path, old).unwrap();
    }
}

const NAMES: [&str; 6] = ["A", "B", "C", "D", "E", "F"];

/// The A..F lecture example's expected trace (A asks, B tries C (dead end)
/// then E; E asks F, F asks B (loop), then E asks D, which has the data),
/// from the golden file, without its `outcome:` line.
fn golden_trace() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/seed-a-f.trace");
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 13, "{text}");
    assert_eq!(lines[12], "outcome: found");
    lines[..12].to_vec()
}

/// `FROM -> TO Kind [htl=N]` as (from, to, kind, htl).
fn parse_trace_line(line: &str) -> (&'static str, &'static str, String, Option<u32>) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let name = |s: &str| NAMES.into_iter().find(|n| *n == s).unwrap();
    let htl = parts
        .get(4)
        .map(|h| h.trim_start_matches("htl=").parse().unwrap());
    (name(parts[0]), name(parts[2]), parts[3].to_string(), htl)
}

/// Logs of the golden A..F run, A's first request sent with `first_htl`,
/// each node's clock offset by `skew` (ms).
fn a_to_f_skewed(first_htl: u32, skew: &[(&'static str, i64)]) -> Net {
    let mut n = Net::new(&NAMES);
    n.skew.extend(skew.iter().copied());
    n.start("A", UID, "get");
    for (i, line) in golden_trace().iter().enumerate() {
        let (from, to, kind, htl) = parse_trace_line(line);
        let htl = if i == 0 { Some(first_htl) } else { htl };
        n.msg(from, to, &kind, UID, htl);
    }
    n.end("A", UID, "found");
    n
}

fn a_to_f(first_htl: u32) -> Net {
    a_to_f_skewed(first_htl, &[])
}

fn classifier<'a>(r: &'a AuditReport, name: &str) -> &'a veil::audit::Classifier {
    r.anonymity
        .classifiers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no classifier {name}"))
}

fn approx(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn a_correct_run_has_no_violations_and_the_expected_traffic() {
    let net = a_to_f(18);
    let dir = net.write(true);
    let r = audit_dir(dir).unwrap();
    assert_eq!(r.violation_count(), 0, "{}", r.render_text());
    assert!(r.violations.leak.checked);
    assert_eq!(r.violations.leak.files_scanned, 18);
    assert_eq!(r.nodes, 6);
    assert_eq!(
        (r.requests.total, r.requests.get, r.requests.put),
        (1, 1, 0)
    );
    assert_eq!(r.succeeded.total, 1);
    assert_eq!(r.hops.count, 1);
    assert!(approx(r.hops.median, 3.0) && approx(r.hops.p95, 3.0) && approx(r.hops.max, 3.0));
    assert!(approx(r.messages_per_request.mean, 12.0));
    assert!(approx(r.messages_per_request.max, 12.0));
    assert_eq!(r.loops_rejected, 1);
    assert_eq!(r.backtracks, 3);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // The holder: A got the block from B; D held it.
    let h = &r.anonymity.holder;
    assert_eq!((h.searches, h.from_holder, h.p), (1, 0, Some(0.0)));
    // No tunnel ran.
    assert!(r.tunnels.is_none());
}

#[test]
fn htl_at_the_maximum_names_the_originator() {
    let net = a_to_f(18);
    let r = audit_dir(net.write(true)).unwrap();
    let a = &r.anonymity;
    assert_eq!(a.observations, 6);
    assert_eq!(a.positives, 1);
    assert_eq!(a.max_htl, Some(18));
    let max = classifier(&r, "htl_is_max");
    assert_eq!((max.tp, max.fp, max.fn_, max.tn), (1, 0, 0, 5));
    assert_eq!(max.precision, Some(1.0));
    assert_eq!(max.recall, Some(1.0));
    // Every observation here is a first sighting except F -> B (B had seen it).
    let first = classifier(&r, "first_seen");
    assert_eq!((first.tp, first.fp, first.fn_, first.tn), (1, 4, 0, 1));
    // No inserts at all: the put signal never fires, precision undefined.
    assert_eq!(classifier(&r, "op_is_put").precision, None);
    // One request and one key: too little for the learned adversary (it
    // cannot train on one file and score another), so its posterior stays
    // open, and no bin has the support the verdict needs.
    assert_eq!(a.entropy.requests_observed, 1);
    assert!(a.passed(), "{:?}", a.failures);
    let text = r.render_text();
    assert!(
        text.contains(
            "LEAK: a request arriving with htl = max came from its originator in 100.000% of cases"
        ),
        "{text}"
    );
    assert!(text.contains("ANONYMITY: PASS"), "{text}");
    for section in ["Traffic", "Invariants", "Anonymity"] {
        assert!(text.contains(section), "{text}");
    }
}

#[test]
fn json_has_the_documented_top_level_keys() {
    let net = a_to_f(18);
    let r = audit_dir(net.write(true)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for key in ["requests", "succeeded", "hops", "violations", "anonymity"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["violations"]["total"], 0);
    assert_eq!(v["anonymity"]["classifiers"][0]["name"], "htl_is_max");
    assert_eq!(v["anonymity"]["classifiers"][0]["fn"], 0);
}

#[test]
fn trace_reproduces_the_example() {
    let net = a_to_f(18);
    let dir = net.write(true);
    assert_eq!(trace_uid(dir, UID).unwrap(), golden_trace());
}

#[test]
fn trace_is_causal_even_with_skewed_clocks() {
    // B's clock runs a second behind everyone, E's a second ahead.
    let net = a_to_f_skewed(18, &[("B", -1000), ("E", 1000)]);
    let dir = net.write(false);
    assert_eq!(trace_uid(dir, UID).unwrap(), golden_trace());
    assert_eq!(audit_dir(dir).unwrap().violation_count(), 0);
}

#[test]
fn trace_of_an_unknown_uid_is_an_error() {
    let net = a_to_f(18);
    let dir = net.write(true);
    assert!(matches!(
        trace_uid(dir, "0123456789abcdef"),
        Err(AuditError::UnknownUid { .. })
    ));
    assert!(matches!(
        trace_uid(dir, "not-a-uid"),
        Err(AuditError::BadUid { .. })
    ));
}

#[test]
fn a_misrouted_reply_is_reported() {
    let mut net = a_to_f(18);
    // C answers D, which never asked C for anything.
    let line = json!({"ts_us": 1_764_072_000_500_000u64, "node": id_of("C"), "event": "send",
                      "flow": UID, "kind": "DataFound", "peer": id_of("D")});
    net.raw_audit("C", line.to_string());
    let r = audit_dir(net.write(true)).unwrap();
    assert_eq!(r.violations.misrouted_reply.count, 1);
    assert_eq!(r.violation_count(), 1);
    let ex = &r.violations.misrouted_reply.examples[0];
    assert!(
        ex.starts_with("C: sent DataFound") && ex.contains(UID) && ex.contains("to D"),
        "{ex}"
    );
}

#[test]
fn a_remembered_uid_is_reported() {
    let mut net = a_to_f(18);
    // After B has answered A (and must have forgotten the uid), F asks again
    // and B still rejects it as a loop.
    net.msg("F", "B", "DataRequest", UID, Some(5));
    net.msg("B", "F", "RejectedLoop", UID, None);
    let r = audit_dir(net.write(true)).unwrap();
    assert_eq!(r.violations.remembered_uid.count, 1, "{}", r.render_text());
    assert_eq!(r.violations.misrouted_reply.count, 0);
    assert_eq!(r.violation_count(), 1);
    assert!(r.violations.remembered_uid.examples[0].starts_with("B: sent RejectedLoop"));
}

#[test]
fn an_overspent_htl_is_reported() {
    // The originator started with htl 4, yet six requests were sent.
    let net = a_to_f(4);
    let r = audit_dir(net.write(true)).unwrap();
    assert_eq!(r.violations.htl_overspent.count, 1);
    assert_eq!(r.violation_count(), 1);
    let ex = &r.violations.htl_overspent.examples[0];
    assert!(
        ex.contains("htl 4") && ex.contains("6 get requests"),
        "{ex}"
    );
}

#[test]
fn a_leaked_plaintext_window_is_reported() {
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    let mid = (net.plaintext.len() - 32) / 2;
    let window: String = net.plaintext[mid..mid + 32]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    net.append("E", "node.log", &format!("DEBUG block payload {window}\n"));
    let r = audit_dir(&dir).unwrap();
    assert!(r.violations.leak.count >= 1);
    assert_eq!(r.violation_count(), r.violations.leak.count);
    let ex = &r.violations.leak.examples[0];
    assert!(
        ex.starts_with("E: E/node.log contains plaintext of workload/f0.bin (middle window, hex)"),
        "{ex}"
    );
}

#[test]
fn plaintext_logged_as_base64_at_any_alignment_is_reported() {
    for skip in 0..3 {
        let net = a_to_f(18);
        let dir = net.write(true).to_path_buf();
        let encoded = STANDARD_NO_PAD.encode(&net.plaintext[skip..]);
        net.append("D", "debug.jsonl", &format!("{{\"data\":\"{encoded}\"}}\n"));
        let r = audit_dir(&dir).unwrap();
        assert!(
            r.violations
                .leak
                .examples
                .iter()
                .any(|e| e.contains("D/debug.jsonl") && e.contains("base64")),
            "skip {skip}: {:?}",
            r.violations.leak.examples
        );
    }
}

#[test]
fn a_leaked_decryption_key_is_reported() {
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    let (_, key) = net.uri.rsplit_once(',').unwrap();
    net.append(
        "B",
        "node.log",
        &format!("DEBUG opening block with {key}\n"),
    );
    let r = audit_dir(&dir).unwrap();
    assert_eq!(
        r.violations.leak.count, 1,
        "{:?}",
        r.violations.leak.examples
    );
    assert_eq!(
        r.violations.leak.examples[0],
        "B: B/node.log contains the decryption key of workload/f0.bin"
    );
    // The whole URI holds the key too: both show up.
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    net.append("C", "node.log", &format!("client asked for {}\n", net.uri));
    let r = audit_dir(&dir).unwrap();
    assert_eq!(
        r.violations.leak.count, 2,
        "{:?}",
        r.violations.leak.examples
    );
    assert!(r
        .violations
        .leak
        .examples
        .iter()
        .any(|e| e.contains("the URI of workload/f0.bin")));
}

#[test]
fn without_a_workload_leaks_are_not_checked() {
    let net = a_to_f(18);
    let dir = net.write(false);
    let r = audit_dir(dir).unwrap();
    assert!(!r.violations.leak.checked);
    assert!(r.render_text().contains("leak: not checked"));
    // max_htl falls back to the largest HTL observed, 18 here.
    assert_eq!(r.anonymity.max_htl, Some(18));
    assert_eq!(r.anonymity.max_htl_source, "largest htl observed");
}

#[test]
fn a_malformed_line_names_file_and_line() {
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    // D's audit log has two lines (request received, DataFound sent); the third is broken.
    net.append(
        "D",
        "audit.jsonl",
        "{\"ts_us\": 1, \"event\": \"send\", \"flow\n",
    );
    let err = audit_dir(&dir).unwrap_err();
    match &err {
        AuditError::Malformed { path, line, .. } => {
            assert_eq!(path, &dir.join("D").join("audit.jsonl"));
            assert_eq!(*line, 3);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("D/audit.jsonl:3:"), "{err}");
    assert!(trace_uid(&dir, UID).is_err());
}

#[test]
fn a_line_missing_a_field_names_file_and_line() {
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    net.append(
        "C",
        "audit.jsonl",
        &format!(
            "{}\n",
            json!({"ts_us": 1, "node": id_of("C"), "event": "send", "flow": UID,
                   "key": net.key, "htl": 3, "kind": "DataRequest"})
        ),
    );
    let err = audit_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("C/audit.jsonl:3:") && err.contains("`peer`"),
        "{err}"
    );
}

#[test]
fn a_message_line_with_an_unknown_kind_is_malformed() {
    let net = a_to_f(18);
    let dir = net.write(true).to_path_buf();
    let line = json!({"ts_us": 1, "node": id_of("D"), "event": "send", "flow": UID,
                      "kind": "DataRequestt", "peer": id_of("E")});
    net.append("D", "audit.jsonl", &format!("{line}\n"));
    let err = audit_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("D/audit.jsonl:3:") && err.contains("DataRequestt"),
        "{err}"
    );
}

/// A line of four: A - B - C - D. B forwards u1 at the maximum HTL (as a
/// randomised-decrement policy would), so "htl = max" is no longer proof.
fn noisy_line() -> Net {
    let mut n = Net::new(&["A", "B", "C", "D"]);
    let (u1, u2) = ("0000000000000001", "00000000000000ab");
    n.start("A", u1, "get");
    n.msg("A", "B", "DataRequest", u1, Some(18));
    n.msg("B", "C", "DataRequest", u1, Some(18));
    n.msg("C", "D", "DataRequest", u1, Some(17));
    n.msg("D", "C", "DataFound", u1, None);
    n.msg("C", "B", "DataFound", u1, None);
    n.msg("B", "A", "DataFound", u1, None);
    n.end("A", u1, "found");
    n.start("C", u2, "get");
    n.msg("C", "B", "DataRequest", u2, Some(18));
    n.msg("B", "A", "DataRequest", u2, Some(17));
    n.msg("A", "B", "RouteNotFound", u2, Some(16));
    n.msg("B", "C", "RouteNotFound", u2, Some(16));
    n.end("C", u2, "failed: route not found");
    n
}

#[test]
fn a_relay_forwarding_at_max_htl_lowers_precision() {
    let net = noisy_line();
    let r = audit_dir(net.write(true)).unwrap();
    assert_eq!(r.violation_count(), 0, "{}", r.render_text());
    assert_eq!((r.requests.total, r.succeeded.total), (2, 1));
    let a = &r.anonymity;
    assert_eq!((a.observations, a.positives), (5, 2));
    assert!(approx(a.base_rate, 0.4));
    let max = classifier(&r, "htl_is_max");
    assert_eq!((max.tp, max.fp, max.fn_, max.tn), (2, 1, 0, 2));
    assert!(approx(max.precision, 2.0 / 3.0));
    assert_eq!(max.recall, Some(1.0));
    let ge17 = classifier(&r, "htl_ge_17");
    assert_eq!((ge17.tp, ge17.fp), (2, 3));
    assert!(approx(ge17.precision, 0.4));
    let e = &a.entropy;
    assert_eq!((e.requests_observed, e.requests_exposed), (2, 0));
    assert!(e.min_degree.is_some_and(|d| d > 0.0 && d <= 1.0), "{e:?}");
    let text = r.render_text();
    assert!(
        !text.contains("LEAK: a request arriving with htl = max"),
        "{text}"
    );
    assert!(text.contains("0.667"), "{text}");
}

#[test]
fn missing_testnet_json_is_an_io_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let err = audit_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Io { ref path, .. } if path.ends_with("testnet.json")));
}

#[test]
fn the_expected_trace_is_what_the_routing_core_does() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testnet/seed-a-f.toml");
    let topology = veil::sim::topology::Topology::load(&path).unwrap();
    let run = veil::sim::harness::run_scenario(&topology, 1).unwrap();
    assert_eq!(run.lines, golden_trace());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever a log line holds, auditing and tracing return (an error
    /// naming the line, or a report) instead of panicking.
    #[test]
    fn garbage_lines_never_panic(line in "[ -~]{0,80}", field in 0usize..6) {
        let net = a_to_f(18);
        let dir = net.write(true).to_path_buf();
        // Either raw garbage, or a well-formed object with one odd field.
        let text = match field {
            0 => line.clone(),
            1 => json!({"ts_us": 1, "node": id_of("C"), "event": "send", "flow": line, "kind": "DataFound", "peer": "x"}).to_string(),
            2 => json!({"ts_us": 1, "node": id_of("C"), "event": "recv", "flow": UID, "htl": 1, "peer": line, "kind": "DataRequest"}).to_string(),
            3 => json!({"ts_us": 1, "node": id_of("C"), "event": "send", "flow": UID, "kind": line, "peer": id_of("A")}).to_string(),
            4 => json!({"ts_us": 1, "node": id_of("C"), "event": line, "flow": UID}).to_string(),
            _ => json!({"ts_us": 1, "flow": UID, "event": "request_finished", "outcome": line}).to_string(),
        };
        let file = if field == 5 { "origin.jsonl" } else { "audit.jsonl" };
        net.append("C", file, &format!("{text}\n"));
        match audit_dir(&dir) {
            Ok(r) => { let _ = r.render_text(); }
            Err(AuditError::Malformed { path, .. }) => proptest::prop_assert!(path.ends_with(file)),
            Err(e) => proptest::prop_assert!(false, "unexpected error {e}"),
        }
        let _ = trace_uid(&dir, UID);
    }
}
