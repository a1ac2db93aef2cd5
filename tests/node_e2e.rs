//! End-to-end tests over real `veil node` processes on loopback.

mod common;

use std::time::Duration;

use common::*;
use veil::client::transfer::get_file;
use veil::client::{Client, ClientError, Endpoint};
use veil::error::{ErrorKind, HasKind};
use veil::keys::Chk;
use veil::routing::Failure;

/// `n` nodes in a chain, started, every link up.
fn started_chain(root: &std::path::Path, n: usize, rt: &tokio::runtime::Runtime) -> Vec<TestNode> {
    let mut nodes = chain(root, n);
    for node in &mut nodes {
        node.start(&[]);
    }
    for (i, node) in nodes.iter().enumerate() {
        node.wait_peers(rt, if i == 0 || i == n - 1 { 1 } else { 2 });
    }
    nodes
}

/// `n` nodes in a chain n0 - n1 - ... (friends with their neighbours).
fn chain(root: &std::path::Path, n: usize) -> Vec<TestNode> {
    let nodes: Vec<TestNode> = (0..n)
        .map(|i| TestNode::init(root, &format!("n{i}"), (i as f64 + 0.5) / n as f64))
        .collect();
    for w in nodes.windows(2) {
        w[0].befriend(&w[1]);
    }
    nodes
}

#[test]
fn a_multi_mib_file_crosses_a_five_node_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = chain(tmp.path(), 5);
    // n0's inserts stop at n1 (HTL 1), so every get from n4 must travel
    // n4 -> n3 -> n2 -> n1 and back instead of finding a copy at home.
    // Per-hop routing from the originator is what this test follows, so
    // the chain runs in `none` mode (tunnel_node.rs covers the default).
    for n in &nodes {
        n.set("anonymity = \"none\"");
    }
    nodes[0].set("router.max_htl = 1");
    for n in &mut nodes {
        n.start(&[]);
    }
    for (i, n) in nodes.iter().enumerate() {
        n.wait_peers(&rt, if i == 0 || i == 4 { 1 } else { 2 });
    }
    let first = nodes[0].client.to_string();
    let last = nodes[4].client.to_string();

    for (len, seed) in [
        (3 * 1024 * 1024 + 17, 1u64),
        (0, 2),
        (1, 3),
        (32768, 4),
        (32769, 5),
    ] {
        let data = bytes(len, seed);
        let input = tmp.path().join(format!("in-{len}.bin"));
        std::fs::write(&input, &data).unwrap();
        let uri = veil_ok(&["put", "--node", &first, input.to_str().unwrap()]);
        let uri = uri.trim();
        assert!(uri.starts_with("CHK@"), "{uri}");
        let out = tmp.path().join(format!("out-{len}.bin"));
        veil_ok(&["get", "--node", &last, uri, "-o", out.to_str().unwrap()]);
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), data.len(), "length of {len}-byte file");
        assert!(got == data, "{len}-byte file differs after the round trip");
    }

    // The gets really crossed the chain: n4 originated them, n2 relayed them,
    // and n4 holds nothing in its store.
    let far: serde_json::Value =
        serde_json::from_str(&veil_ok(&["status", "--node", &last, "--json"])).unwrap();
    assert!(far["requests_originated"].as_u64().unwrap() >= 98, "{far}");
    assert_eq!(far["store_blocks"], 0, "{far}");

    // status reports the peers and the counters.
    let status = veil_ok(&["status", "--node", &nodes[2].client.to_string(), "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["peers"].as_array().unwrap().len(), 2);
    assert!(status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["connected"] == true));
    assert!(status["requests_received"].as_u64().unwrap() > 0);

    // No log holds a decryption key.
    let uri = veil_ok(&[
        "put",
        "--node",
        &first,
        tmp.path().join("in-1.bin").to_str().unwrap(),
    ]);
    let decryption = uri.trim().rsplit(',').next().unwrap().to_string();
    for n in &mut nodes {
        n.stop();
        assert!(
            !n.log().contains(&decryption),
            "decryption key in {}",
            n.dir.display()
        );
    }
}

#[test]
fn bad_uris_missing_content_and_bad_configs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let nodes = started_chain(tmp.path(), 2, &rt);
    let client = nodes[0].client.to_string();
    let out = tmp.path().join("out.bin");

    let r = veil(&[
        "get",
        "--node",
        &client,
        "CHK@nonsense",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("invalid URI"), "{err}");

    // Data nobody inserted: the error says it was not found within the
    // search budget and what to do, on one line.
    let (chk, _) = Chk::encode(b"never inserted").unwrap();
    let r = veil(&[
        "get",
        "--node",
        &client,
        &chk.to_uri(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("data not found within the search budget (hops-to-live)"),
        "{err}"
    );
    assert!(err.contains("check the URI"), "{err}");
    assert!(err.contains("router.max_htl"), "{err}");
    assert!(!err.contains("route not found"), "{err}");
    assert!(!out.exists(), "a failed get left an output file");
    // The root was never found, so there is nothing to resume from.
    let mut part = out.clone().into_os_string();
    part.push(".veil-part");
    assert!(
        !std::path::Path::new(&part).exists(),
        "a failed root fetch left a part file"
    );
    // The library says the same without words: a two-node chain runs out
    // of routes before hops.
    let e = rt
        .block_on(get_file(&nodes[0].client, &chk, 1))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = rt.block_on(async {
        Client::connect(&nodes[0].client, Duration::from_secs(30))
            .await
            .unwrap()
            .get(chk.routing)
            .await
            .unwrap_err()
    });
    assert!(
        matches!(e, ClientError::Network(Failure::RouteNotFound)),
        "{e:?}"
    );

    // Address in use: a second node on the first one's listen address.
    let clash = TestNode::init(tmp.path(), "clash", 0.3);
    let text = std::fs::read_to_string(clash.dir.join("node.toml")).unwrap();
    let text = text.replace(&clash.listen.to_string(), &nodes[0].listen.to_string());
    std::fs::write(clash.dir.join("node.toml"), text).unwrap();
    let r = veil(&["node", clash.dir.to_str().unwrap()]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(&nodes[0].listen.to_string()), "{err}");

    // Missing config, malformed config, malformed key.
    let r = veil(&["node", tmp.path().join("nowhere").to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("node.toml"));
    std::fs::write(clash.dir.join("node.toml"), "listen = 12\n").unwrap();
    let r = veil(&["node", clash.dir.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("node.toml"));
    let broken = TestNode::init(tmp.path(), "broken", 0.6);
    std::fs::write(broken.dir.join("identity.key"), "garbage\n").unwrap();
    let r = veil(&["node", broken.dir.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("identity.key"));
}

#[test]
fn identity_key_is_private_and_id_prints_a_peer_entry() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::init(tmp.path(), "solo", 0.5);
    let mode = std::fs::metadata(node.dir.join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let id = veil_ok(&["id", node.dir.to_str().unwrap()]);
    assert!(
        id.contains(&format!("public_key = \"{}\"", node.key)),
        "{id}"
    );
    assert!(
        id.contains(&format!("address = \"{}\"", node.listen)),
        "{id}"
    );
}

#[test]
fn a_restarted_node_still_serves_from_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = started_chain(tmp.path(), 2, &rt);
    let data = bytes(100_000, 9);
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    let uri = veil_ok(&[
        "put",
        "--node",
        &nodes[0].client.to_string(),
        input.to_str().unwrap(),
    ]);

    // The insert ended at n1 (n0 originated it and keeps no copy). The
    // restarted n1 is a new process: its one link is a new one.
    nodes[1].restart(&rt, 1);
    nodes[0].wait_peers(&rt, 1);
    let out = tmp.path().join("out.bin");
    veil_ok(&[
        "get",
        "--node",
        &nodes[0].client.to_string(),
        uri.trim(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&out).unwrap() == data);
}

#[test]
fn a_node_killed_during_inserts_serves_what_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = started_chain(tmp.path(), 2, &rt);
    let origin = nodes[0].client.clone();

    // Insert blocks one after another in the background; n1 is SIGKILLed
    // while they are flowing.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let acked = acknowledged.clone();
    let to = origin.clone();
    let inserter = std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async move {
            for i in 0..400u32 {
                let (chk, block) = Chk::encode(format!("block number {i}").as_bytes()).unwrap();
                let Ok(mut c) = Client::connect(&to, Duration::from_secs(5)).await else {
                    break;
                };
                match c.insert(block).await {
                    Ok(()) => acked.lock().unwrap().push(chk),
                    Err(_) => break,
                }
            }
        })
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    nodes[1].kill9();
    inserter.join().unwrap();
    let acked: Vec<Chk> = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() >= 40,
        "only {} inserts acknowledged",
        acked.len()
    );

    // Wait for the restarted process's own link, not n0's stale one.
    nodes[1].start(&[]);
    nodes[1].wait_peers(&rt, 1);
    nodes[0].wait_peers(&rt, 1);
    rt.block_on(async {
        for chk in &acked {
            let mut c = Client::connect(&origin, Duration::from_secs(30))
                .await
                .unwrap();
            let block = c
                .get(chk.routing)
                .await
                .unwrap_or_else(|e| panic!("acknowledged block lost: {e}"));
            assert!(chk.decode(&block).is_ok());
        }
    });
}

#[test]
fn json_logs_are_json_lines_and_never_hold_the_secret_key() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = chain(tmp.path(), 2);
    for n in &mut nodes {
        n.start(&["--log-format", "json"]);
    }
    nodes[0].wait_peers(&rt, 1);
    nodes[1].wait_peers(&rt, 1);
    for n in &mut nodes {
        n.stop();
        let secret = std::fs::read_to_string(n.dir.join("identity.key")).unwrap();
        let log = n.log();
        assert!(log.lines().count() >= 2, "{log}");
        for line in log.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
        }
        assert!(log.contains("link up"), "{log}");
        assert!(!log.contains(secret.trim()), "secret key in the log");
    }
}

#[test]
fn a_corrupted_manifest_is_a_clear_error_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = chain(tmp.path(), 2);
    nodes[0].start(&[]);
    nodes[1].start(&["--testnet"]);
    nodes[0].wait_peers(&rt, 1);
    // A validly encrypted block of kind Manifest whose plaintext is junk,
    // placed at n1 (testnet placement), fetched through n0.
    let (chk, block) =
        Chk::encode_kind(veil::keys::BlockKind::Manifest, b"this is not a manifest").unwrap();
    rt.block_on(async {
        Client::connect(&nodes[1].client, Duration::from_secs(5))
            .await
            .unwrap()
            .place(block)
            .await
            .unwrap();
    });
    let out = tmp.path().join("out.bin");
    let r = veil(&[
        "get",
        "--node",
        &nodes[0].client.to_string(),
        &chk.to_uri(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("manifest"), "{err}");
    assert!(
        !err.contains(&chk.to_uri()[48..]),
        "the error shows the decryption key: {err}"
    );
    assert!(!out.exists());

    // Placement is refused by a node that is not in testnet mode.
    let (_, other) = Chk::encode(b"placed").unwrap();
    let refused = rt.block_on(async {
        Client::connect(&nodes[0].client, Duration::from_secs(5))
            .await
            .unwrap()
            .place(other)
            .await
    });
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("testnet"), "{e}");
}

#[test]
fn errors_say_whether_the_node_is_down_has_no_peers_or_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (chk, _) = Chk::encode(b"asked for").unwrap();

    // A node with no friends has nobody to ask.
    let mut lone = TestNode::init(tmp.path(), "lone", 0.5);
    lone.start(&[]);
    let e = rt.block_on(get_file(&lone.client, &chk, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeers, "{e}");
    let r = veil(&["get", "--node", &lone.client.to_string(), &chk.to_uri()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no connected peers"), "{err}");

    // A stopped node is down, and the CLI says it could not connect.
    lone.stop();
    let e = rt.block_on(get_file(&lone.client, &chk, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NodeDown, "{e}");
    let r = veil(&["get", "--node", &lone.client.to_string(), &chk.to_uri()]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("cannot connect to node at"), "{err}");
    assert!(!err.contains("not found"), "{err}");

    // Something that accepts but never answers is a timeout.
    let silent_dir = tempfile::tempdir().unwrap();
    let addr = Endpoint::Unix {
        path: silent_dir.path().join("silent.sock"),
    };
    let Endpoint::Unix { path } = &addr else {
        unreachable!()
    };
    let _silent = std::os::unix::net::UnixListener::bind(path).unwrap();
    let e = rt.block_on(async {
        let mut c = Client::connect(&addr, Duration::from_millis(300))
            .await
            .unwrap();
        c.get(chk.routing).await.unwrap_err()
    });
    assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[test]
fn set_puts_a_dotted_key_where_the_config_keeps_it() {
    // Into its table when the file has one, replacing the old value.
    let text = "listen = \"a\"\n[router]\nmax_htl = 18\nother = 2\n[[peers]]\nmax_htl = 9\n";
    let got = toml_set(text, "router.max_htl", "1");
    assert_eq!(
        got,
        "listen = \"a\"\n[router]\nmax_htl = 1\nother = 2\n[[peers]]\nmax_htl = 9\n"
    );
    // With no such table, at top level in dotted form.
    let got = toml_set("listen = 1\n", "router.max_htl", "1");
    assert_eq!(got, "router.max_htl = 1\nlisten = 1\n");
    // Otherwise at top level, dotted, once.
    let got = toml_set("router.max_htl = 3\nlisten = 1\n", "router.max_htl", "1");
    assert_eq!(got, "router.max_htl = 1\nlisten = 1\n");
    let got = toml_set("listen = 1\n[x]\nlisten = 2\n", "listen", "5");
    assert_eq!(got, "listen = 5\n[x]\nlisten = 2\n");
}

/// `runtime.worker_threads` sets the threads `veil node` runs its tasks
/// on, and `veil status` says how many; unset, one per core.
#[test]
fn a_node_runs_the_runtime_threads_its_config_names() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes = TestNode::at(tmp.path(), &[0.2, 0.7]);
    nodes[0].befriend(&nodes[1]);
    nodes[0].set("runtime.worker_threads = 1");
    for n in nodes.iter_mut() {
        n.start(&[]);
    }
    nodes[0].wait_peers(&rt, 1);
    // Unset, tokio takes TOKIO_WORKER_THREADS if the environment has it,
    // else one thread per core.
    let cores = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap().get() as u64);
    let one = nodes[0].status(&rt);
    assert_eq!(one.load.worker_threads, 1);
    assert!(one.render_text().contains("; runtime threads 1\n"));
    assert_eq!(nodes[1].status(&rt).load.worker_threads, cores);
    // A single-threaded node still relays: n1 holds nothing, n0 asks it.
    let (chk, block) = Chk::encode(b"one runtime thread").unwrap();
    rt.block_on(async {
        let mut c = Client::connect(&nodes[1].client, Duration::from_secs(10))
            .await
            .unwrap();
        c.insert(block.clone()).await.unwrap();
        let mut c = Client::connect(&nodes[0].client, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(c.get(chk.routing).await.unwrap(), block);
    });
}
