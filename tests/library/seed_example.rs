//! The lecture's A..F example (`testnet/seed-a-f.toml`), end to end: the
//! exact trace from the binary and from the library, who caches what, and
//! that nothing the requester receives identifies the holder.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ciborium::value::Value;
use veil::message::Message;
use veil::routing::ClientOutcome;
use veil::sim::harness::{run_scenario, ScenarioRun};
use veil::sim::topology::Topology;

/// The seed `veil trace` uses by default.
const SEED: u64 = 1;

fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testnet/seed-a-f.toml")
}

/// The expected `veil trace` output for the seed file, shared with the other
/// tests that need it.
fn expected() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/seed-a-f.trace");
    std::fs::read_to_string(path).expect("read tests/golden/seed-a-f.trace")
}

/// Long enough for a cold machine; `veil trace` takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

/// A child process that is killed if the test lets go of it early.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `veil trace <path>` from the crate root, with a deadline; returns
/// (success, stdout, stderr).
fn veil_trace(path: &str) -> (bool, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["trace", path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run veil");
    let mut child = KillOnDrop(child);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_string(&mut text).expect("utf-8 output");
            }
            text
        })
    };
    let out = drain(child.0.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.0.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for veil") {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "veil trace ran past {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    (status.success(), out, err)
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

#[test]
fn golden_trace_is_the_lecture_example() {
    // The golden file is the lecture's trace, not whatever the code printed:
    // it starts at A with the full budget and ends with the answer at A.
    let expected = expected();
    let lines: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[0], "A -> B DataRequest htl=18");
    assert_eq!(lines[11], "B -> A DataFound");
    assert_eq!(lines[12], "outcome: found");
}

#[test]
fn binary_prints_the_lecture_trace() {
    let (ok, stdout, stderr) = veil_trace(&seed_path().to_string_lossy());
    assert!(ok, "veil trace failed: {stderr}");
    // Exactly the golden lines, each ended by a newline, nothing else.
    assert_eq!(stdout, expected());
}

#[test]
fn binary_with_relative_path_matches_too() {
    let (ok, stdout, stderr) = veil_trace("testnet/seed-a-f.toml");
    assert!(ok, "veil trace failed: {stderr}");
    assert_eq!(stdout, expected());
}

#[test]
fn library_gives_the_same_trace_and_caches_on_the_reverse_path() {
    let topology = Topology::load(&seed_path()).unwrap();
    let run = run(&topology);
    assert_eq!(run.render_text(), expected());
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
