//! Canaries for `veil audit`'s adversary: synthetic testnet logs, written
//! with the audit record types, with one leak planted at a time (HTL, file
//! share, timing, answer, cache, size, known content; and, over tunnels, an exit that is
//! the originator's first hop). Each must fail the verdict naming its signal; a
//! clean run, whose labels are independent of every feature, must pass.
//!
//! The synthetic network: 40 nodes on a ring with chords (degree 4), 20
//! files of 32 keys, each downloaded by 3 nodes. Each key's request walks
//! 3 to 5 hops from its originator; every hop is one `send` line at the
//! sender and one `recv` line at the receiver, answered by `DataFound` the
//! same way back.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

use veil::audit::{audit_dir_with, AuditOptions, AuditReport};
use veil::formats::audit_log::{AuditEvent, AuditLine, MessageRecord, OriginEvent, OriginLine};
use veil::formats::testnet::{NodeInfo, TestnetInfo, WorkloadFile, WorkloadInfo};
use veil::identity::PeerKey;
use veil::keys::{Chk, RoutingKey};
use veil::message::{Htl, MessageKind};
use veil::routing::Op;

const NODES: usize = 40;
const FILES: usize = 20;
const KEYS: usize = 32;
const FETCHES: usize = 3;
const MAX_HTL: Htl = 18;
/// Time between a download's consecutive keys, µs.
const SLOT_US: u64 = 50_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leak {
    None,
    Htl,
    Share,
    Timing,
    Cache,
    /// The workload names who fetched each file: the known-content
    /// adversary plays, and a first hop sees every key of a download.
    KnownContent,
    /// An originator's requests are larger than the same requests
    /// forwarded (Hyphanet's build 1502 fixed such a leak in inserts).
    Size,
    /// The first hop's answer comes later than any relay's: its round
    /// trip beyond it is the longest (as a first hop's is to a tunnel's
    /// exit), by more than the other hops' jitter.
    Answer,
}

fn name(i: usize) -> String {
    format!("n{i:02}")
}

fn id(i: usize) -> PeerKey {
    let mut raw = [0u8; 32];
    raw[0] = i as u8 + 1;
    raw[31] = 0xa5;
    PeerKey(raw)
}

fn neighbours(i: usize) -> [usize; 4] {
    [
        (i + 1) % NODES,
        (i + NODES - 1) % NODES,
        (i + 4) % NODES,
        (i + NODES - 4) % NODES,
    ]
}

/// Per-node log lines, sorted by time when written.
#[derive(Default)]
struct Logs {
    audit: BTreeMap<usize, Vec<AuditLine>>,
    origin: BTreeMap<usize, Vec<OriginLine>>,
}

impl Logs {
    fn audit(&mut self, node: usize, ts_us: u64, event: AuditEvent) {
        self.audit.entry(node).or_default().push(AuditLine {
            ts_us,
            node: id(node),
            event,
        });
    }

    fn origin(&mut self, node: usize, ts_us: u64, flow: u64, event: OriginEvent) {
        self.origin
            .entry(node)
            .or_default()
            .push(OriginLine { ts_us, flow, event });
    }

    /// Every node's links, up at the start.
    fn links(&mut self) {
        for i in 0..NODES {
            for n in neighbours(i) {
                let location = Some(n as f64 / NODES as f64);
                let peer = id(n);
                self.audit(i, 1, AuditEvent::LinkUp { peer, location });
            }
        }
    }

    /// One message from `from` to `to`, sent at `ts` and received 20 µs later.
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        from: usize,
        to: usize,
        ts: u64,
        kind: MessageKind,
        flow: u64,
        htl: Option<Htl>,
        key: Option<RoutingKey>,
    ) {
        self.message_sized(from, to, ts, kind, flow, htl, key, 0);
    }

    /// [`Logs::message`], carrying `bytes` of cells and blocks.
    #[allow(clippy::too_many_arguments)]
    fn message_sized(
        &mut self,
        from: usize,
        to: usize,
        ts: u64,
        kind: MessageKind,
        flow: u64,
        htl: Option<Htl>,
        key: Option<RoutingKey>,
        bytes: u32,
    ) {
        let record = |peer| MessageRecord {
            bytes: Some(bytes),
            ..MessageRecord::new(kind, peer, flow, htl, key)
        };
        self.audit(from, ts, AuditEvent::Send(record(id(to))));
        self.audit(to, ts + 20, AuditEvent::Recv(record(id(from))));
    }
}

/// A random walk of `len` hops from `start`, never straight back.
fn walk(rng: &mut ChaCha8Rng, start: usize, len: usize) -> Vec<usize> {
    let mut path = vec![start];
    while path.len() <= len {
        let here = path[path.len() - 1];
        let back = (path.len() >= 2).then(|| path[path.len() - 2]);
        let options: Vec<usize> = neighbours(here)
            .into_iter()
            .filter(|n| Some(*n) != back && *n != start)
            .collect();
        path.push(*options.choose(rng).expect("degree 4"));
    }
    path
}

/// Write a synthetic testnet directory with `leak` planted.
fn synthetic(leak: Leak, seed: u64) -> TempDir {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut logs = Logs::default();
    logs.links();
    let mut workload = WorkloadInfo {
        version: Default::default(),
        max_htl: Some(MAX_HTL),
        files: Vec::new(),
    };
    let mut flow = 1u64;
    let mut download = 0u64;
    // Per (observer, sender): when the observer last replied to the sender.
    let mut last_reply: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for f in 0..FILES {
        let (file, keys) = workload_file(dir, &mut rng, f);
        workload.files.push(file);
        for _ in 0..FETCHES {
            let originator = rng.gen_range(0..NODES);
            if leak == Leak::KnownContent {
                if let Some(file) = workload.files.last_mut() {
                    file.fetched_by.push(name(originator));
                }
            }
            let t0 = 1_000_000 + download * 100_000_000;
            download += 1;
            // Without the share leak every key of a download takes one path
            // (as through a tunnel), so every sender sends all of them.
            let len = rng.gen_range(3..=5);
            let fixed = walk(&mut rng, originator, len);
            for (j, key) in keys.iter().enumerate() {
                let path = if leak == Leak::Share {
                    let len = rng.gen_range(3..=5);
                    walk(&mut rng, originator, len)
                } else {
                    fixed.clone()
                };
                let slot = t0 + j as u64 * SLOT_US;
                let uid = flow;
                flow += 1;
                logs.origin(
                    originator,
                    slot,
                    uid,
                    OriginEvent::RequestStarted {
                        key: *key,
                        op: Op::Get,
                    },
                );
                let hops = path.len() - 1;
                for i in 0..hops {
                    let (s, o) = (path[i], path[i + 1]);
                    let htl = match leak {
                        Leak::Htl => MAX_HTL - i as Htl,
                        _ => rng.gen_range(1..=MAX_HTL),
                    };
                    let mut ts = slot + rng.gen_range(0..40_000);
                    if leak == Leak::Timing && i == 0 {
                        if let Some(r) = last_reply.get(&(o, s)) {
                            ts = r + rng.gen_range(50..150);
                        }
                    }
                    if i == 0 {
                        let to = id(o);
                        logs.origin(s, ts, uid, OriginEvent::FlowStarted { to, op: Op::Get });
                    }
                    let htl = Some(htl);
                    let bytes = if leak == Leak::Size && i == 0 { 48 } else { 0 };
                    let kind = MessageKind::DataRequest;
                    logs.message_sized(s, o, ts, kind, uid, htl, Some(*key), bytes);
                    let reply = match leak {
                        Leak::Answer if i == 0 => ts + rng.gen_range(4_000..8_000),
                        _ => ts + 1_000,
                    };
                    logs.message(o, s, reply, MessageKind::DataFound, uid, None, None);
                    last_reply.insert((o, s), reply);
                    if leak == Leak::Cache && i > 0 {
                        logs.audit(s, reply + 30, AuditEvent::BlockCached { key: *key });
                    }
                }
                let outcome = "found".to_string();
                logs.origin(
                    originator,
                    slot + 45_000,
                    uid,
                    OriginEvent::RequestFinished { outcome },
                );
            }
        }
    }
    write_run(dir, logs, &workload);
    tmp
}

/// File `f` of a workload: random contents under `workload/`, and 32
/// random routing keys standing for its blocks.
fn workload_file(dir: &Path, rng: &mut ChaCha8Rng, f: usize) -> (WorkloadFile, Vec<RoutingKey>) {
    fs::create_dir_all(dir.join("workload")).unwrap();
    let mut plain = vec![0u8; 64];
    rng.fill_bytes(&mut plain);
    let path = format!("workload/f{f}.bin");
    fs::write(dir.join(&path), &plain).unwrap();
    let (chk, _) = Chk::encode(&plain).unwrap();
    let keys: Vec<RoutingKey> = (0..KEYS)
        .map(|_| {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            RoutingKey(k)
        })
        .collect();
    let file = WorkloadFile {
        path,
        uri: chk.to_uri(),
        keys: keys.clone(),
        inserted_by: None,
        fetched_by: Vec::new(),
    };
    (file, keys)
}

/// Write every node's logs, `testnet.json` and `workload.json` under `dir`.
fn write_run(dir: &Path, mut logs: Logs, workload: &WorkloadInfo) {
    let mut nodes = BTreeMap::new();
    for i in 0..NODES {
        let node_dir = dir.join(name(i));
        fs::create_dir_all(&node_dir).unwrap();
        let mut audit = logs.audit.remove(&i).unwrap_or_default();
        audit.sort_by_key(|l| l.ts_us);
        write_jsonl(&node_dir.join("audit.jsonl"), &audit);
        let mut origin = logs.origin.remove(&i).unwrap_or_default();
        origin.sort_by_key(|l| l.ts_us);
        write_jsonl(&node_dir.join("origin.jsonl"), &origin);
        nodes.insert(
            name(i),
            NodeInfo {
                id: id(i),
                listen: format!("127.0.0.1:{}", 7400 + i).parse().unwrap(),
                client: veil::client::Endpoint::Unix {
                    path: node_dir.join("client.sock"),
                },
                fcp: None,
                pid: 1000 + i as u32,
            },
        );
    }
    let info = TestnetInfo {
        version: Default::default(),
        ready: false,
        nodes,
    };
    fs::write(
        dir.join("testnet.json"),
        serde_json::to_string(&info).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("workload.json"),
        serde_json::to_string(workload).unwrap(),
    )
    .unwrap();
}

fn write_jsonl<T: serde::Serialize>(path: &Path, lines: &[T]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).unwrap());
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}

fn audit(leak: Leak, options: &AuditOptions) -> AuditReport {
    let dir = synthetic(leak, 7);
    let r = audit_dir_with(dir.path(), options).unwrap();
    // Random HTLs overspend; replies always go where requests came from.
    assert_eq!(r.violations.misrouted_reply.count, 0, "{}", r.render_text());
    r
}

fn assert_fails_on(leak: Leak, signals: &[&str]) {
    let r = audit(leak, &AuditOptions::default());
    let a = &r.anonymity;
    assert_eq!(a.verdict, "fail", "{leak:?}: {}", r.render_text());
    let failing = a.failing_signal().unwrap_or_default();
    assert!(
        signals.contains(&failing),
        "{leak:?} failed on {failing}, not {signals:?}: {:?}",
        a.failures
    );
    let worst = a.max_posterior.as_ref().unwrap();
    assert!(signals.contains(&worst.signal.as_str()), "{worst:?}");
    assert!(r.render_text().contains("ANONYMITY: FAIL"));
}

#[test]
fn a_clean_run_passes() {
    let r = audit(Leak::None, &AuditOptions::default());
    let a = &r.anonymity;
    assert!(a.passed(), "{}", r.render_text());
    assert!(a.observations > 5_000, "{}", a.observations);
    let auc = a.auc.unwrap();
    assert!((0.35..=0.65).contains(&auc), "AUC {auc}");
    let [lo, hi] = a.auc_ci.unwrap();
    assert!(lo <= auc && auc <= hi, "{lo} {auc} {hi}");
    assert!(a.max_posterior.as_ref().unwrap().upper <= 0.5);
    // With no signal a first hop still knows its sender originated what it
    // sent at the base rate, so d stays below 1; the floor is 0.7.
    assert!(a.d_median.unwrap() >= 0.7, "{:?}", a.entropy);
    assert!(r.render_text().contains("ANONYMITY: PASS"));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["anonymity"]["verdict"], "pass");
    assert!(json["anonymity"]["max_posterior"]["signal"].is_string());
    assert!(json["anonymity"]["auc_ci"][1].is_number());
}

#[test]
fn a_first_hop_that_sees_the_keys_fails_the_known_content_adversary() {
    // Every download's keys all go to the originator's first hop (as in
    // `none` mode): a node that knows the files names its neighbour.
    let r = audit(Leak::KnownContent, &AuditOptions::default());
    let a = &r.anonymity;
    let k = a
        .known_content
        .as_ref()
        .expect("the workload names fetchers");
    assert_eq!(k.verdict, "fail", "{k:?}");
    assert!(k.auc.unwrap() > 0.6, "{k:?}");
    assert!(
        k.recall.unwrap() > 0.1 && k.precision.unwrap() > 0.1,
        "{k:?}"
    );
    assert_eq!(a.verdict, "fail");
    assert!(
        a.failures.iter().any(|f| f.starts_with("known_content")),
        "{:?}",
        a.failures
    );
    assert!(
        r.render_text().contains("Known content:"),
        "{}",
        r.render_text()
    );
    // Without ground truth the adversary does not play.
    let clean = audit(Leak::None, &AuditOptions::default());
    assert!(clean.anonymity.known_content.is_none());
}

#[test]
fn an_htl_leak_fails_on_htl() {
    assert_fails_on(Leak::Htl, &["htl"]);
    let r = audit(Leak::Htl, &AuditOptions::default());
    assert!(r.anonymity.auc.unwrap() >= 0.95, "{:?}", r.anonymity.auc);
    assert!(
        r.anonymity.d_median.unwrap() < 0.2,
        "{:?}",
        r.anonymity.entropy
    );
}

#[test]
fn a_share_leak_fails_on_share() {
    assert_fails_on(Leak::Share, &["share"]);
}

#[test]
fn a_timing_leak_fails_on_a_gap() {
    assert_fails_on(Leak::Timing, &["gap", "min_gap"]);
}

#[test]
fn a_slow_answer_to_the_originator_fails_on_answer() {
    assert_fails_on(Leak::Answer, &["answer"]);
}

#[test]
fn a_size_leak_fails_on_size() {
    assert_fails_on(Leak::Size, &["size"]);
}

#[test]
fn a_cache_leak_fails_on_the_cache_probe() {
    assert_fails_on(Leak::Cache, &["cache_probe"]);
}

#[test]
fn colluders_pool_what_they_saw_and_are_seeded() {
    let options = AuditOptions {
        colluders: Some(10),
        ..AuditOptions::default()
    };
    let leaky = audit(Leak::Htl, &options);
    let all = audit(Leak::Htl, &AuditOptions::default());
    assert_eq!(leaky.anonymity.colluders.len(), 10);
    assert!(leaky.anonymity.observations < all.anonymity.observations);
    assert_eq!(leaky.anonymity.verdict, "fail");
    let again = audit(Leak::Htl, &options);
    assert_eq!(again.anonymity.colluders, leaky.anonymity.colluders);
    assert_eq!(again.anonymity.auc, leaky.anonymity.auc);
    // A quarter of the nodes see a quarter of the traffic: the clean run's
    // small bins have wide intervals, but nothing points at originators.
    let clean = audit(Leak::None, &options);
    let a = &clean.anonymity;
    assert!(a.auc.unwrap() <= 0.65, "{}", clean.render_text());
    assert!(a.max_posterior.as_ref().unwrap().p <= 0.5);
}

#[test]
fn the_limits_are_the_verdicts() {
    // The clean run fails a limit below its base rate; the leaky one passes
    // limits no adversary can exceed.
    let strict = AuditOptions {
        max_posterior: 0.1,
        ..AuditOptions::default()
    };
    assert!(!audit(Leak::None, &strict).anonymity.passed());
    let lax = AuditOptions {
        max_posterior: 1.0,
        max_auc: 1.0,
        max_known_content_auc: 1.0,
        ..AuditOptions::default()
    };
    assert!(audit(Leak::Htl, &lax).anonymity.passed());
}

/// Files in the tunnel run, each fetched once.
const TUNNEL_FILES: usize = 80;

/// Write a synthetic run of tunnels: every download goes through a tunnel
/// of its own, a walk of 3 to 5 hops from its originator (with
/// `exit_is_first_hop`, one hop: the leak), one cell per key forwarded hop
/// by hop 200 µs apart and opened at the last hop. The workload names who
/// fetched each file.
fn synthetic_tunnels(exit_is_first_hop: bool, seed: u64) -> TempDir {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = TempDir::new().unwrap();
    let mut logs = Logs::default();
    logs.links();
    let mut workload = WorkloadInfo {
        version: Default::default(),
        max_htl: Some(MAX_HTL),
        files: Vec::new(),
    };
    let mut flow = 1u64;
    for f in 0..TUNNEL_FILES {
        let (mut file, keys) = workload_file(tmp.path(), &mut rng, f);
        {
            let originator = rng.gen_range(0..NODES);
            file.fetched_by.push(name(originator));
            let len = if exit_is_first_hop {
                1
            } else {
                rng.gen_range(3..=5)
            };
            let path = walk(&mut rng, originator, len);
            let flows: Vec<u64> = (0..len as u64).map(|i| flow + i).collect();
            flow += len as u64;
            let t0 = 1_000_000 + f as u64 * 100_000_000;
            let to = id(path[1]);
            logs.origin(
                originator,
                t0,
                flows[0],
                OriginEvent::FlowStarted { to, op: Op::Get },
            );
            for (j, key) in keys.iter().enumerate() {
                let slot = t0 + j as u64 * SLOT_US + rng.gen_range(0..20_000);
                for i in 0..len {
                    let ts = slot + i as u64 * 200;
                    let kind = MessageKind::TunnelForward;
                    logs.message(path[i], path[i + 1], ts, kind, flows[i], None, None);
                }
                let exit = path[len];
                let event = AuditEvent::TunnelExit {
                    peer: id(path[len - 1]),
                    flow: flows[len - 1],
                    keys: vec![*key],
                };
                logs.audit(exit, slot + (len as u64 - 1) * 200 + 21, event);
            }
        }
        workload.files.push(file);
    }
    write_run(tmp.path(), logs, &workload);
    tmp
}

#[test]
fn a_first_hop_exit_pair_links_only_what_the_first_hop_saw() {
    // Tunnels of three hops or more: a pool of a quarter of the nodes is
    // right about as often as it holds the originator's first hop.
    let clean = synthetic_tunnels(false, 5);
    let r = audit_dir_with(clean.path(), &AuditOptions::default()).unwrap();
    let p = r
        .anonymity
        .first_hop_exit
        .as_ref()
        .expect("tunnels and fetchers: the pair plays");
    assert_eq!(p.colluders, NODES / 4);
    assert!(p.exited > 0 && p.linked > 0, "{p:?}");
    assert!(p.right > 0, "the pool holds some first hops: {p:?}");
    let share = p.first_hop_share.unwrap();
    assert!(p.interval.unwrap()[0] <= share + p.max_excess, "{p:?}");
    assert_eq!(p.verdict, "pass", "{}", r.render_text());
    assert!(
        r.render_text().contains("First hop + exit:"),
        "{}",
        r.render_text()
    );
    // An exit that is the originator's first hop: the pool names the
    // fetcher whenever it holds the exit.
    let leaky = synthetic_tunnels(true, 5);
    let r = audit_dir_with(leaky.path(), &AuditOptions::default()).unwrap();
    let p = r.anonymity.first_hop_exit.as_ref().unwrap();
    assert_eq!(p.right, p.exited, "{p:?}");
    assert_eq!(p.verdict, "fail", "{p:?}");
    assert_eq!(r.anonymity.verdict, "fail");
    assert!(
        r.anonymity
            .failures
            .iter()
            .any(|f| f.starts_with("first_hop_exit")),
        "{:?}",
        r.anonymity.failures
    );
}
