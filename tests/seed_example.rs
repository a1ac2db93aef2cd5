//! The lecture's A..F example (`testnet/seed-a-f.toml`), end to end: the
//! exact trace from the binary and from the library, who caches what, and
//! that nothing the requester receives identifies the holder.

use std::path::PathBuf;
use std::process::Command;

use ciborium::value::Value;
use veil::message::Message;
use veil::routing::ClientOutcome;
use veil::sim::harness::{run_scenario, ScenarioRun};
use veil::sim::topology::Topology;

const EXPECTED: [&str; 13] = [
    "A -> B DataRequest htl=18",
    "B -> C DataRequest htl=17",
    "C -> B RouteNotFound htl=16",
    "B -> E DataRequest htl=16",
    "E -> F DataRequest htl=15",
    "F -> B DataRequest htl=14",
    "B -> F RejectedLoop",
    "F -> E RouteNotFound htl=13",
    "E -> D DataRequest htl=13",
    "D -> E DataFound",
    "E -> B DataFound",
    "B -> A DataFound",
    "outcome: found",
];

/// The seed `veil trace` uses by default.
const SEED: u64 = 1;

fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testnet/seed-a-f.toml")
}

fn seed_text() -> String {
    std::fs::read_to_string(seed_path()).expect("read testnet/seed-a-f.toml")
}

/// The seed file with its `holder = "D"` line replaced.
fn with_holder(holder_line: &str) -> Topology {
    let text = seed_text();
    assert!(text.contains("holder = \"D\""), "seed file changed shape");
    Topology::parse(&text.replace("holder = \"D\"", holder_line)).expect("modified topology")
}

fn run(topology: &Topology) -> ScenarioRun {
    run_scenario(topology, SEED).expect("topology has a scenario")
}

fn idx(run: &ScenarioRun, name: &str) -> usize {
    run.harness
        .names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// Everything node `name` received, in order: (sender index, message).
fn received_by(run: &ScenarioRun, name: &str) -> Vec<(usize, Message)> {
    let me = idx(run, name);
    run.harness
        .sent
        .iter()
        .filter(|s| s.to == me)
        .map(|s| (s.from, s.msg.clone()))
        .collect()
}

fn all_lines(run: &ScenarioRun) -> Vec<String> {
    let mut lines = run.lines.clone();
    lines.push(format!(
        "outcome: {}",
        if run.found { "found" } else { "not found" }
    ));
    lines
}

#[test]
fn binary_prints_the_lecture_trace() {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .arg("trace")
        .arg(seed_path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run veil");
    assert!(
        out.status.success(),
        "veil trace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, EXPECTED.to_vec());
    // Exactly 13 lines, each ended by a newline, nothing else.
    assert_eq!(stdout, EXPECTED.join("\n") + "\n");
}

#[test]
fn binary_with_relative_path_matches_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["trace", "testnet/seed-a-f.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run veil");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        EXPECTED.join("\n") + "\n"
    );
}

#[test]
fn library_gives_the_same_trace_and_caches_on_the_reverse_path() {
    let topology = Topology::load(&seed_path()).unwrap();
    let run = run(&topology);
    assert_eq!(all_lines(&run), EXPECTED.to_vec());
    assert!(run.found);
    assert!(matches!(
        run.harness.outcome(run.token),
        Some(ClientOutcome::Found(b)) if b.verify(&run.chk.routing).is_ok()
    ));
    assert_eq!(run.harness.clients[&run.token].outcomes.len(), 1);

    let key = run.chk.routing;
    let stores = &run.harness.stores;
    // The reverse path D -> E -> B -> A: E and B verified and cached it.
    for name in ["B", "E"] {
        let cached = stores[idx(&run, name)].cache.get(&key);
        assert!(cached.is_some(), "{name} should cache the block");
        assert_eq!(cached.unwrap().routing_key(), key);
    }
    // C and F were on dead ends; the data never passed through them.
    for name in ["C", "F"] {
        let s = &stores[idx(&run, name)];
        assert!(!s.cache.contains_key(&key), "{name} must not cache");
        assert!(!s.store.contains_key(&key), "{name} must not store");
    }
    // D still has it in its store, and only there.
    let d = &stores[idx(&run, "D")];
    assert!(d.store.contains_key(&key));
    assert!(!d.cache.contains_key(&key));
    // A got it as a client answer; the originator neither stores nor caches.
    let a = &stores[idx(&run, "A")];
    assert!(a.store.is_empty() && a.cache.is_empty());
    // Every router forgot the uid once it replied.
    for n in 0..run.harness.len() {
        assert_eq!(run.harness.router(n).pending_count(), 0, "node {n}");
    }
}

#[test]
fn requester_receives_one_datafound_from_b_whoever_holds_the_block() {
    let original = run(&Topology::load(&seed_path()).unwrap());
    let got = received_by(&original, "A");
    assert_eq!(got.len(), 1, "A receives exactly one message: {got:?}");
    let (from, msg) = &got[0];
    assert_eq!(*from, idx(&original, "B"));
    assert!(matches!(msg, Message::DataFound { .. }), "{msg:?}");
    let reference = msg.encode();

    for holder in ["E", "F", "C"] {
        let changed = run(&with_holder(&format!("holder = \"{holder}\"")));
        assert!(changed.found, "holder {holder}");
        // The change is real: the path differs from the original.
        assert_ne!(changed.lines, original.lines, "holder {holder}");
        let got = received_by(&changed, "A");
        assert_eq!(got.len(), 1, "holder {holder}: {got:?}");
        assert_eq!(got[0].0, idx(&changed, "B"), "holder {holder}");
        assert_eq!(
            got[0].1.encode(),
            reference,
            "A's view differs when {holder} holds the block"
        );
    }
}

/// The field names each kind may carry; none of them names a node.
fn allowed_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "DataRequest" => &["uid", "key", "htl"],
        "DataFound" => &["uid", "block"],
        "DataNotFound" | "RejectedLoop" | "RejectedOverload" | "InsertSucceeded"
        | "InsertFailed" => &["uid"],
        "RouteNotFound" => &["uid", "htl"],
        "InsertRequest" => &["uid", "key", "htl", "block"],
        _ => return None,
    })
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        other => panic!("map key is not text: {other:?}"),
    }
}

/// Decode generically and check the shape `{Kind: {field: int|bytes}}`.
fn assert_names_no_node(bytes: &[u8]) {
    let value: Value = ciborium::de::from_reader(bytes).expect("valid CBOR");
    let Value::Map(outer) = value else {
        panic!("message is not a map")
    };
    assert_eq!(outer.len(), 1, "one kind per message");
    let (kind, body) = &outer[0];
    let kind = text(kind);
    let allowed = allowed_fields(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
    let Value::Map(fields) = body else {
        panic!("{kind} body is not a map")
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in fields {
        let name = text(name);
        assert!(allowed.contains(&name), "{kind} has field {name}");
        match (name, value) {
            ("uid" | "htl", Value::Integer(_)) => {}
            ("key", Value::Bytes(b)) => assert_eq!(b.len(), 32),
            ("block", Value::Bytes(b)) => assert_eq!(b.len(), veil::keys::BLOCK_LEN),
            (n, v) => panic!("{kind}.{n} has unexpected value {v:?}"),
        }
        seen.push(name);
    }
    seen.sort_unstable();
    let mut want = allowed.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want, "{kind} fields");
    // Values are only integers and opaque byte strings (checked above), so
    // no text, and in particular no node name, rides in any field.
    // The typed decoder agrees.
    assert_eq!(Message::decode(bytes).unwrap().kind(), kind);
}

#[test]
fn no_message_names_a_node() {
    let topology = Topology::load(&seed_path()).unwrap();
    let run = run(&topology);
    assert_eq!(run.harness.sent.len(), 12);
    let mut kinds = std::collections::BTreeSet::new();
    for s in &run.harness.sent {
        let bytes = s.msg.encode();
        assert_names_no_node(&bytes);
        kinds.insert(s.msg.kind());
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["DataFound", "DataRequest", "RejectedLoop", "RouteNotFound"]
    );
    // A forwarded request is encoded like an originated one: B's request to C
    // and A's request to B differ only in the htl byte.
    let a_to_b = run.harness.sent[0].msg.encode();
    let b_to_c = run.harness.sent[1].msg.encode();
    assert_eq!(a_to_b.len(), b_to_c.len());
    let diffs = a_to_b.iter().zip(&b_to_c).filter(|(x, y)| x != y).count();
    assert_eq!(diffs, 1);
}

#[test]
fn nobody_holds_the_block() {
    let run = run(&with_holder("holder = []"));
    assert!(!run.found);
    let a = idx(&run, "A");
    let outcomes = &run.harness.clients[&run.token].outcomes;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(matches!(outcomes[0], ClientOutcome::Failed(_)));
    // The last line of the trace is the single answer to A.
    let to_a: Vec<_> = run.harness.sent.iter().filter(|s| s.to == a).collect();
    assert_eq!(to_a.len(), 1, "{to_a:?}");
    assert!(!matches!(to_a[0].msg, Message::DataFound { .. }));
    assert!(run.lines.iter().all(|l| !l.contains("DataFound")));
    for s in &run.harness.stores {
        assert!(s.cache.is_empty() && s.store.is_empty());
    }
}

#[test]
fn requester_holds_the_block_itself() {
    let run = run(&with_holder("holder = \"A\""));
    assert!(run.found);
    assert!(run.harness.sent.is_empty(), "{:?}", run.harness.sent);
    assert!(run.lines.is_empty());
    assert_eq!(run.harness.clients[&run.token].outcomes.len(), 1);
    assert_eq!(run.uid, None, "no request was originated");
}
