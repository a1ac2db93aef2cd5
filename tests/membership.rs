//! Runtime membership over real processes: `veil add-peer` and `veil
//! remove-peer` change a running node's friends (and its node.toml), and a
//! node leaving on SIGTERM closes its links so that its neighbours log it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use veil::client::{Client, ClientError};
use veil::config::NodeConfig;
use veil::keys::Chk;
use veil::routing::Failure;

fn knows(node: &TestNode, other: &TestNode) -> bool {
    let config = NodeConfig::load(&node.dir).unwrap();
    config
        .peers
        .iter()
        .any(|p| p.public_key.to_string() == other.key && p.address == other.listen)
}

/// Wait (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 30 s");
}

#[test]
fn a_running_node_gains_a_peer_routes_through_it_and_loses_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut a = TestNode::init(tmp.path(), "a", 0.1);
    let mut b = TestNode::init(tmp.path(), "b", 0.5);
    let mut c = TestNode::init(tmp.path(), "c", 0.9);
    a.befriend(&b);
    for n in [&a, &b, &c] {
        n.set("anonymity = \"none\"");
    }
    a.start(&[]);
    b.start(&[]);
    c.start(&[]);
    a.wait_peers(&rt, 1);
    b.wait_peers(&rt, 1);
    c.wait_peers(&rt, 0);

    // A block inserted at a lives at a or b: c, with no friend, cannot get it.
    let (chk, block) = Chk::encode(b"membership at runtime").unwrap();
    rt.block_on(async {
        let mut client = Client::connect(&a.client, Duration::from_secs(30))
            .await
            .unwrap();
        client.insert(block.clone()).await.unwrap();
        let mut client = Client::connect(&c.client, Duration::from_secs(30))
            .await
            .unwrap();
        let alone = client.get(chk.routing).await;
        assert!(
            matches!(alone, Err(ClientError::Network(Failure::NoPeers))),
            "{alone:?}"
        );
    });

    // c befriends b through its directory (the node is running, so the
    // client API does it), b befriends c through --client.
    let (c_dir, b_listen) = (c.dir.to_str().unwrap(), b.listen.to_string());
    veil_ok(&["add-peer", "--", c_dir, &b_listen, &b.key]);
    let (b_client, c_listen) = (b.client.to_string(), c.listen.to_string());
    veil_ok(&[
        "add-peer", "--client", &b_client, "--name", "c", "--", &c_listen, &c.key,
    ]);
    c.wait_peers(&rt, 1);
    b.wait_peers(&rt, 2);
    assert!(knows(&c, &b), "c's node.toml lacks b");
    assert!(knows(&b, &c), "b's node.toml lacks c");
    // Its one link is the new one: the block comes through b.
    let got = rt.block_on(async {
        let mut client = Client::connect(&c.client, Duration::from_secs(30))
            .await
            .unwrap();
        client.get(chk.routing).await
    });
    assert_eq!(got.unwrap(), block);
    // Adding the same friend twice is refused.
    let again = veil(&["add-peer", "--", c_dir, &b_listen, &b.key]);
    assert!(!again.status.success());

    // c drops b: the link closes at once, and c's node.toml forgets b.
    veil_ok(&["remove-peer", "--", c_dir, &b.key]);
    c.wait_peers(&rt, 0);
    eventually("b sees c leave", || b.peers_up(&rt) == Some(1));
    assert!(!knows(&c, &b), "c's node.toml still has b");
    // b keeps dialling or waiting for c, but c refuses it now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.peers_up(&rt), Some(0));

    // SIGTERM: a finishes, closes its link, and b logs the link going down.
    let downs_before = b.log().matches("link down").count();
    a.stop();
    let log = a.log();
    assert!(log.contains("leaving: closing every link"), "{log}");
    assert!(log.contains("node stopped"), "{log}");
    eventually("b logs a's link going down", || {
        b.log().matches("link down").count() > downs_before
    });
    b.wait_peers(&rt, 0);
    // Offline, remove-peer edits node.toml alone.
    veil_ok(&["remove-peer", "--", a.dir.to_str().unwrap(), &b.key]);
    assert!(!knows(&a, &b));
}
