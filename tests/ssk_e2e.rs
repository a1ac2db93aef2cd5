//! Signed and updatable keys over a real four-node testnet (loopback
//! processes): `veil keygen`, edition 0 inserted through one node, edition
//! 1 through another (`veil update`), `USK@…/site/-1` fetched from a third
//! gives edition 1's bytes; inserting over an existing edition is a
//! collision; a block forged with a foreign key pair is refused.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use veil::client::{Client, ClientError};
use veil::keys::{Block, SskInsertUri, SskPrivate};
use veil::routing::Failure;

/// `veil CMD --node NODE --usk-cache CACHE ARGS…`.
fn run(cmd: &str, node: &TestNode, cache: &Path, args: &[&str]) -> Output {
    let client = node.client.to_string();
    let mut all = vec![
        cmd,
        "--node",
        &client,
        "--usk-cache",
        cache.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    veil(&all)
}

/// Stdout of a command that must succeed.
fn ok(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what}: {err}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `veil get` of `uri` into `out`: its stderr, after insisting on success.
fn get(node: &TestNode, cache: &Path, uri: &str, out: &Path) -> String {
    let r = run("get", node, cache, &[uri, "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(r.status.success(), "get {uri}: {err}");
    err
}

#[test]
fn editions_update_and_the_latest_is_found_from_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    // A ring of four: n0 - n1 - n2 - n3 - n0.
    let mut nodes: Vec<TestNode> = (0..4)
        .map(|i| TestNode::init(tmp.path(), &format!("n{i}"), (i as f64 + 0.5) / 4.0))
        .collect();
    for i in 0..4 {
        nodes[i].befriend(&nodes[(i + 1) % 4]);
    }
    for n in &mut nodes {
        n.set("anonymity = \"none\"");
        n.start(&[]);
    }
    for n in &nodes {
        n.wait_peers(&rt, 2);
    }
    let cache = |name: &str| tmp.path().join(format!("cache-{name}.json"));

    // keygen: the insert URI, then the request URI.
    let keys = veil_ok(&["keygen"]);
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 2, "{keys}");
    let (insert, request) = (lines[0], lines[1]);
    assert!(
        insert.starts_with("SSK@") && insert.ends_with('/'),
        "{insert}"
    );
    assert!(
        request.starts_with("SSK@") && request.ends_with('/'),
        "{request}"
    );
    assert_ne!(insert, request);
    let site = format!("{insert}site");

    let v0 = bytes(40_000, 1);
    let v1 = bytes(5_000, 2);
    let f0 = tmp.path().join("v0.bin");
    let f1 = tmp.path().join("v1.bin");
    std::fs::write(&f0, &v0).unwrap();
    std::fs::write(&f1, &v1).unwrap();

    // Edition 0 through n0.
    let args = ["--usk", &site, f0.to_str().unwrap()];
    let usk0 = ok(run("put", &nodes[0], &cache("a"), &args), "put edition 0");
    assert!(
        usk0.starts_with("USK@") && usk0.ends_with("/site/0"),
        "{usk0}"
    );
    // The public USK carries the request URI's keys, never the private one.
    let request_keys = request.trim_start_matches("SSK@").trim_end_matches('/');
    assert!(usk0.contains(request_keys), "{usk0} vs {request}");
    let private = insert.trim_start_matches("SSK@").split(',').next().unwrap();
    assert!(!usk0.contains(private));

    // Edition 1 through n1 with `veil update`: n1 knows no edition yet, so
    // it probes, finds 0, and inserts 1.
    let c1 = cache("b");
    let args = [site.as_str(), f1.to_str().unwrap()];
    let usk1 = ok(run("update", &nodes[1], &c1, &args), "update");
    assert_eq!(usk1, usk0.replace("/site/0", "/site/1"));

    // The latest from n2, which has never seen the site: edition 1's bytes,
    // remembered for that node.
    let latest = usk0.replace("/site/0", "/site/-1");
    let c2 = cache("c");
    let got = tmp.path().join("got.bin");
    let err = get(&nodes[2], &c2, &latest, &got);
    assert!(err.contains("edition 1"), "{err}");
    assert!(std::fs::read(&got).unwrap() == v1, "-1 is not edition 1");
    assert!(std::fs::metadata(&c2).is_ok());
    // A numbered edition is that edition.
    let got0 = tmp.path().join("got0.bin");
    get(&nodes[3], &c2, &usk0, &got0);
    assert!(std::fs::read(&got0).unwrap() == v0);

    // Edition 0 again with other content: a collision, the original kept.
    let args = ["--usk", &site, "--edition", "0", f1.to_str().unwrap()];
    let out = run("put", &nodes[3], &cache("d"), &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collision"), "{err}");
    get(&nodes[1], &c1, &usk0, &got0);
    assert!(
        std::fs::read(&got0).unwrap() == v0,
        "the original was replaced"
    );

    // A foreign key pair cannot publish under the site: its own block is
    // another key, and splicing the owner's public key in fails to verify,
    // so the first node refuses it.
    let owner: SskInsertUri = format!("{insert}site-2").parse().unwrap();
    let (key, good) = owner.key.sign("site-2", b"CHK@x").unwrap();
    let foreign = SskPrivate::from_seed([42; 32], [0; 32]);
    let (_, theirs) = foreign.sign("site-2", b"CHK@y").unwrap();
    let mut spliced = theirs.as_bytes().to_vec();
    spliced[..64].copy_from_slice(&good.as_bytes()[..64]);
    let forged = Block::from_bytes(spliced).unwrap();
    assert_eq!(forged.routing_key(), key);
    let refused = rt.block_on(async {
        let mut c = Client::connect(&nodes[2].client, Duration::from_secs(30))
            .await
            .unwrap();
        c.insert(forged).await
    });
    assert!(
        matches!(refused, Err(ClientError::Network(Failure::BadBlock))),
        "{refused:?}"
    );
    // Nothing was published as edition 2: the latest is still 1.
    get(&nodes[0], &cache("a"), &latest, &got);
    assert!(std::fs::read(&got).unwrap() == v1);
}
