//! How a real `veil node` process treats neighbours that break the rules:
//! wrong or unknown static keys, undecodable frames, requests with zero
//! hops-to-live, connections that never start a handshake, and a peer that
//! floods requests (it gets overload replies while others are served).
//!
//! The neighbours are played by the test itself over real Noise links
//! (`veil::link`), so they can send exactly what a broken or hostile peer
//! would; a well-behaved second neighbour checks that the node keeps serving
//! everyone else.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil::client::{Client, Endpoint, NodeStatus};
use veil::identity::{Identity, PeerKey};
use veil::keys::{Block, Chk, Location, RoutingKey, SskPrivate};
use veil::link::{self, Link, LinkConfig};
use veil::message::{Message, PeerFrame, Uid};

/// The node's per-peer in-flight limit in the overload test.
const LIMIT: usize = 4;
/// Requests F sends in its flood.
const FLOOD: usize = 40;
/// The HTL of every well-formed request the test sends.
const HTL: u8 = 10;
/// Upper bound on any single wait for the node.
const STEP: Duration = Duration::from_secs(5);
/// Upper bound on a whole test.
const WHOLE_TEST: Duration = Duration::from_secs(20);
/// The handshake timeout the silent-connection test gives its node
/// (`link.handshake_timeout_ms`), shorter than the 10 s default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long G's link must stay quiet to show that no request beyond the
/// limit was forwarded. Every forward was queued before F's last overload
/// reply arrived, so a stray one shows up at once; a slow machine could
/// only make this check pass wrongly, never fail wrongly.
const QUIET: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Fake peers (the same helpers as tests/overload.rs).

/// Which side opens the link: of each pair the node with the smaller public
/// key dials (see `node::start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialler {
    /// The node's key is smaller: it dials the fake peer's listen address.
    Node,
    /// The fake peer's key is smaller: it dials the node.
    Peer,
}

/// A neighbour of the node that the test plays itself.
struct FakePeer {
    name: &'static str,
    identity: Identity,
    /// Bound before the node starts, so a node that dials finds it at once.
    listener: TcpListener,
}

impl FakePeer {
    /// A fake peer whose key makes `dialler` open the link.
    async fn new(name: &'static str, node_key: &PeerKey, dialler: Dialler) -> FakePeer {
        let identity = identity_where(|k| (*node_key < *k) == (dialler == Dialler::Node));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakePeer {
            name,
            identity,
            listener,
        }
    }

    fn key(&self) -> PeerKey {
        self.identity.public()
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    fn node_dials(&self, node_key: &PeerKey) -> bool {
        *node_key < self.key()
    }

    /// Bring the link to the node up whichever side dials, and exchange
    /// hellos.
    async fn link_up(&self, node_key: &PeerKey, node_listen: SocketAddr) -> Link<TcpStream> {
        let cfg = LinkConfig::default();
        let mut link = if self.node_dials(node_key) {
            let stream = self.accept_tcp().await;
            let expected = *node_key;
            let allowed = move |k: &PeerKey| *k == expected;
            link::accept(stream, &self.identity, &allowed, &cfg)
                .await
                .unwrap_or_else(|e| panic!("{}: accepting the node's link: {e}", self.name))
        } else {
            let stream = connect_retrying(node_listen).await;
            link::connect(stream, &self.identity, node_key, &cfg)
                .await
                .unwrap_or_else(|e| panic!("{}: dialling the node: {e}", self.name))
        };
        link.send(
            &PeerFrame::Hello {
                location: Location::from_f64(0.25),
            }
            .encode(),
        )
        .await
        .unwrap();
        match next_frame(&mut link, STEP).await {
            Got::Frame(PeerFrame::Hello { .. }) => link,
            other => panic!("{}: expected the node's hello, got {other:?}", self.name),
        }
    }

    /// The node's next TCP connection to this peer's listen address.
    async fn accept_tcp(&self) -> TcpStream {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), self.listener.accept())
            .await
            .unwrap_or_else(|_| panic!("{}: the node never dialled", self.name))
            .unwrap();
        stream
    }
}

fn identity_where(pred: impl Fn(&PeerKey) -> bool) -> Identity {
    loop {
        let id = Identity::generate(&mut rand::rngs::OsRng);
        if pred(&id.public()) {
            return id;
        }
    }
}

/// TCP-connect to `addr`, retrying while the node is still starting.
async fn connect_retrying(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true).unwrap();
                return s;
            }
            Err(e) if Instant::now() >= deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What a read from a link gave.
#[derive(Debug)]
enum Got {
    Frame(PeerFrame),
    /// Clean end of stream or a link error (shown in failure messages).
    Closed(#[allow(dead_code)] String),
    /// Nothing within the wait.
    Quiet,
}

/// The next non-keepalive frame, waiting at most `wait` in all.
async fn next_frame(link: &mut Link<TcpStream>, wait: Duration) -> Got {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, link.recv()).await {
            Err(_) => return Got::Quiet,
            Ok(Ok(Some(p))) if p.is_empty() => continue,
            Ok(Ok(Some(p))) => {
                return Got::Frame(PeerFrame::decode(&p).expect("node sent an undecodable frame"))
            }
            Ok(Ok(None)) => return Got::Closed("end of stream".into()),
            Ok(Err(e)) => return Got::Closed(e.to_string()),
        }
    }
}

/// The node must close `link` soon, sending nothing else first.
async fn expect_closed(link: &mut Link<TcpStream>, who: &str) {
    match next_frame(link, STEP).await {
        Got::Closed(_) => {}
        other => panic!("{who}: expected the node to close the link, got {other:?}"),
    }
}

async fn send(link: &mut Link<TcpStream>, msg: Message) {
    link.send(&PeerFrame::Routing(msg).encode()).await.unwrap();
}

async fn status(client: &Endpoint) -> NodeStatus {
    Client::connect(client, STEP)
        .await
        .unwrap()
        .status()
        .await
        .unwrap()
}

fn connected(s: &NodeStatus) -> BTreeSet<String> {
    s.peers
        .iter()
        .filter(|p| p.connected)
        .map(|p| p.public_key.clone())
        .collect()
}

/// Wait until the node reports `key` connected (`up`) or not (`!up`).
async fn wait_link(client: &Endpoint, key: &PeerKey, up: bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let s = status(client).await;
        if connected(&s).contains(&key.to_string()) == up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "link to {key} never went {}: {s:?}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the node's log has at least `n` lines containing every one
/// of `needles`.
async fn wait_log(node: &TestNode, needles: &[&str], n: usize) {
    let deadline = Instant::now() + STEP;
    loop {
        let log = node.log();
        let hits = log
            .lines()
            .filter(|l| needles.iter().all(|w| l.contains(w)))
            .count();
        if hits >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node's log has {hits} lines with {needles:?}, expected {n}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run `body`, failing with the node's log if it takes longer than `limit`.
async fn bounded(node: &TestNode, limit: Duration, body: impl Future<Output = ()>) {
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!(
            "test did not finish within {limit:?}; node log:\n{}",
            node.log()
        );
    }
}

fn add_peer(node: &TestNode, addr: SocketAddr, key: &PeerKey, name: &str) {
    veil_ok(&[
        "add-peer",
        "--name",
        name,
        // A base64url key may start with '-': keep clap from reading it
        // as an option.
        "--",
        node.dir.to_str().unwrap(),
        &addr.to_string(),
        &key.to_string(),
    ]);
}

/// A fresh `veil init` node's key; the node is not started.
fn init_node(root: &std::path::Path) -> (TestNode, PeerKey) {
    let node = TestNode::init(root, "node", 0.5);
    let key = node.key.parse().unwrap();
    (node, key)
}

/// Place a block at the node and have `peer` fetch it with a DataRequest.
async fn served(client: &Endpoint, link: &mut Link<TcpStream>, text: &[u8]) {
    let (chk, block) = Chk::encode(text).unwrap();
    Client::connect(client, STEP)
        .await
        .unwrap()
        .place(block)
        .await
        .unwrap();
    let wanted: Uid = rand::random();
    send(
        link,
        Message::DataRequest {
            uid: wanted,
            key: chk.routing,
            htl: HTL,
        },
    )
    .await;
    match next_frame(link, STEP).await {
        Got::Frame(PeerFrame::Routing(Message::DataFound { uid, block })) => {
            assert_eq!(uid, wanted);
            block
                .verify(&chk.routing)
                .expect("served block does not match its key");
            assert_eq!(chk.decode(&block).unwrap(), text);
        }
        other => panic!("request for a placed block got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Tests.

/// The node dials F's configured address, but whoever answers there holds
/// another key: it cannot open the node's first message (sealed to F's
/// key), so no link comes up; the node logs the failed dial and keeps F
/// down until the real F answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_presenting_the_wrong_key_for_its_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let f = FakePeer::new("F", &node_key, Dialler::Node).await;
    add_peer(&node, f.addr(), &f.key(), f.name);
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        // An impostor holds F's address: it answers the node's dial with its
        // own key and would let the node in.
        let impostor = identity_where(|k| *k != f.key());
        for attempt in 1..=2 {
            let stream = f.accept_tcp().await;
            let allow_node = |k: &PeerKey| *k == node_key;
            let result = link::accept(stream, &impostor, &allow_node, &LinkConfig::default()).await;
            assert!(
                result.is_err(),
                "attempt {attempt}: the node accepted an impostor at F's address"
            );
            assert!(
                matches!(result, Err(link::LinkError::Handshake(_))),
                "attempt {attempt}: {result:?}"
            );
            wait_log(
                &node,
                &[
                    "dial failed",
                    "peer closed the connection during the handshake",
                ],
                attempt,
            )
            .await;
            let s = status(client).await;
            assert!(connected(&s).is_empty(), "{s:?}");
        }

        // The refusal was about the key: the real F at the same address gets
        // its link on the node's next redial.
        let mut fl = f.link_up(&node_key, listen).await;
        wait_link(client, &f.key(), true).await;
        served(client, &mut fl, b"for the real F").await;
    })
    .await;
    node.stop();
}

/// Only keys named by a `[[peers]]` entry may link in: a stranger's
/// handshake is refused, while a named peer dialling the same way is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_link_from_an_unnamed_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    add_peer(&node, g.addr(), &g.key(), g.name);
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        // Strangers with keys on both sides of the node's.
        let strangers = [
            identity_where(|k| k < &node_key),
            identity_where(|k| k > &node_key),
        ];
        for (i, stranger) in strangers.iter().enumerate() {
            let stream = connect_retrying(listen).await;
            let result = link::connect(stream, stranger, &node_key, &LinkConfig::default()).await;
            match result {
                Err(link::LinkError::HandshakeClosed) => {}
                other => panic!("stranger {i}: expected the node to hang up, got {other:?}"),
            }
            wait_log(
                &node,
                &[
                    "inbound handshake refused",
                    &format!("peer key {} is not allowed", stranger.public()),
                ],
                1,
            )
            .await;
        }
        let s = status(client).await;
        assert!(connected(&s).is_empty(), "{s:?}");
        assert_eq!(s.peers.len(), 1, "{s:?}");

        // The named peer is let in and served.
        let mut gl = g.link_up(&node_key, listen).await;
        wait_link(client, &g.key(), true).await;
        served(client, &mut gl, b"for G").await;
    })
    .await;
    node.stop();
}

/// A prober that does not know the node's key gets not one byte back,
/// whatever it sends: a well-sized first message of noise, an `XX`-style
/// first message, a web request, or a real handshake sealed to another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_without_the_key_gets_no_byte_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    node.start(&["--testnet"]);
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        let mut noise = vec![0u8, 104];
        noise.extend((0..104u8).map(|i| i.wrapping_mul(37)));
        let mut xx = vec![0u8, 32];
        xx.extend([9u8; 32]);
        let probes: [&[u8]; 3] = [&noise, &xx, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"];
        for (i, probe) in probes.iter().enumerate() {
            let mut s = connect_retrying(listen).await;
            s.write_all(probe).await.unwrap();
            let mut back = Vec::new();
            let read = tokio::time::timeout(STEP, s.read_to_end(&mut back)).await;
            assert!(read.is_ok(), "probe {i}: the node kept the connection open");
            assert!(
                back.is_empty(),
                "probe {i}: the node sent {} bytes",
                back.len()
            );
        }
        // A real initiator that seals to a key the node does not hold.
        let prober = identity_where(|k| *k != node_key);
        let stream = connect_retrying(listen).await;
        let wrong = identity_where(|k| *k != node_key && *k != prober.public()).public();
        let result = link::connect(stream, &prober, &wrong, &LinkConfig::default()).await;
        assert!(
            matches!(result, Err(link::LinkError::HandshakeClosed)),
            "{result:?}"
        );
        wait_log(&node, &["inbound handshake refused"], 4).await;
    })
    .await;
    node.stop();
}

/// Frames that pass the AEAD but do not decode as a `PeerFrame` (an unknown
/// tag, a second hello, a routing frame of CBOR garbage) each get the link
/// closed and a "misbehaved" log line, and the node keeps serving G
/// throughout. F is the peer the node dials, so every closed link is
/// redialled and the next kind of garbage tried on a fresh link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_undecodable_frames_is_disconnected_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let f = FakePeer::new("F", &node_key, Dialler::Node).await;
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    add_peer(&node, f.addr(), &f.key(), f.name);
    add_peer(&node, g.addr(), &g.key(), g.name);
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        let mut gl = g.link_up(&node_key, listen).await;
        wait_link(client, &g.key(), true).await;

        let hello = PeerFrame::Hello {
            location: Location::from_f64(0.75),
        }
        .encode();
        let garbage: [(&str, Vec<u8>, &str); 3] = [
            (
                "tag 9",
                vec![9, 0xde, 0xad, 0xbe, 0xef],
                "undecodable frame",
            ),
            ("second hello", hello, "second hello"),
            (
                "CBOR garbage",
                vec![2, 0xff, 0x00, 0x13],
                "undecodable frame",
            ),
        ];
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        for (i, (what, payload, logged)) in garbage.iter().enumerate() {
            let mut fl = f.link_up(&node_key, listen).await;
            wait_link(client, &f.key(), true).await;
            // F is a working neighbour until it misbehaves.
            if i == 0 {
                served(client, &mut fl, b"F before the garbage").await;
            }
            fl.send(payload).await.unwrap();
            expect_closed(&mut fl, &format!("F after {what}")).await;
            wait_link(client, &f.key(), false).await;
            let n = seen.entry(logged).or_default();
            *n += 1;
            wait_log(
                &node,
                &[
                    &format!("peer misbehaved: {logged}; closing link"),
                    &f.key().to_string(),
                ],
                *n,
            )
            .await;
            // G is still served, on the same link as before.
            served(
                client,
                &mut gl,
                format!("for G after F's {what}").as_bytes(),
            )
            .await;
        }
        let s = status(client).await;
        assert!(connected(&s).contains(&g.key().to_string()), "{s:?}");
        assert_eq!(s.stats.answered_from_store, 4, "{s:?}");
    })
    .await;
    node.stop();
    assert!(
        !node
            .log()
            .lines()
            .any(|l| l.contains("misbehaved") && l.contains(&g.key().to_string())),
        "G was blamed:\n{}",
        node.log()
    );
}

/// A request with hops-to-live zero breaks the protocol (the routing core
/// reports `Misbehaviour::ZeroHtl`): the node closes the link and does not
/// count the request, and keeps serving F. Here the offender is the peer
/// that dialled in; it may link in again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_a_zero_htl_request_is_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let f = FakePeer::new("F", &node_key, Dialler::Node).await;
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    add_peer(&node, f.addr(), &f.key(), f.name);
    add_peer(&node, g.addr(), &g.key(), g.name);
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        let (mut fl, mut gl) =
            tokio::join!(f.link_up(&node_key, listen), g.link_up(&node_key, listen));
        wait_link(client, &f.key(), true).await;
        wait_link(client, &g.key(), true).await;

        // Placed first, so a request that were wrongly served would get
        // DataFound instead of a closed link.
        let (chk, block) = Chk::encode(b"not for htl zero").unwrap();
        Client::connect(client, STEP)
            .await
            .unwrap()
            .place(block)
            .await
            .unwrap();
        for (key, what) in [
            (chk.routing, "a held key"),
            (RoutingKey(rand::random()), "an unknown key"),
        ] {
            send(
                &mut gl,
                Message::DataRequest {
                    uid: rand::random(),
                    key,
                    htl: 0,
                },
            )
            .await;
            expect_closed(&mut gl, &format!("G after an htl-0 request for {what}")).await;
            wait_link(client, &g.key(), false).await;
            // F is still linked and served.
            served(
                client,
                &mut fl,
                format!("for F after G's request for {what}").as_bytes(),
            )
            .await;
            // G may come back.
            gl = g.link_up(&node_key, listen).await;
            wait_link(client, &g.key(), true).await;
        }
        wait_log(
            &node,
            &[
                "peer misbehaved; closing link",
                "ZeroHtl",
                &g.key().to_string(),
            ],
            2,
        )
        .await;

        let s = status(client).await;
        // Only F's two requests counted; neither htl-0 request did.
        assert_eq!(s.stats.requests_received, 2, "{s:?}");
        assert_eq!(s.pending, 0, "{s:?}");
        assert_eq!(connected(&s).len(), 2, "{s:?}");
        served(client, &mut gl, b"G is welcome back").await;
    })
    .await;
    node.stop();
}

/// A connection that never starts its handshake is closed by the node at
/// the handshake timeout (`link.handshake_timeout_ms`, 3 s here), not before, and does not keep a named peer
/// from linking meanwhile. The one slow test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_at_the_handshake_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    add_peer(&node, g.addr(), &g.key(), g.name);
    node.set(&format!(
        "link.handshake_timeout_ms = {}",
        HANDSHAKE_TIMEOUT.as_millis()
    ));
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        let mut silent = connect_retrying(listen).await;
        let opened = Instant::now();

        // Meanwhile a named peer links and is served.
        let mut gl = g.link_up(&node_key, listen).await;
        wait_link(client, &g.key(), true).await;
        served(client, &mut gl, b"served during a silent connection").await;

        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(
            HANDSHAKE_TIMEOUT + Duration::from_secs(10),
            silent.read(&mut buf),
        )
        .await;
        let waited = opened.elapsed();
        match read {
            Err(_) => panic!("the node kept a silent connection open for {waited:?}"),
            // End of stream or a reset: either way the node hung up, and it
            // sent nothing first.
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("the node sent {n} bytes to a silent connection"),
        }
        assert!(
            waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(500),
            "the silent connection was dropped after only {waited:?}"
        );
        wait_log(
            &node,
            &[
                "inbound handshake refused",
                &format!("handshake did not finish within {HANDSHAKE_TIMEOUT:?}"),
            ],
            1,
        )
        .await;

        // G's link was not disturbed.
        served(client, &mut gl, b"still served afterwards").await;
    })
    .await;
    node.stop();
}

/// Wait until the node reports every key in `keys` connected.
async fn wait_connected(client: &Endpoint, keys: &[PeerKey]) {
    let want: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    let deadline = Instant::now() + STEP;
    loop {
        let s = status(client).await;
        let up: BTreeSet<String> = s
            .peers
            .iter()
            .filter(|p| p.connected)
            .map(|p| p.public_key.clone())
            .collect();
        if want.is_subset(&up) {
            return;
        }
        assert!(Instant::now() < deadline, "peers never came up: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn random_key() -> RoutingKey {
    RoutingKey(rand::random())
}

/// A flood of requests from one peer gets overload replies while a second
/// peer's request is still served: F floods the node (`max_inflight_per_peer
/// = 4`) with requests for keys nobody holds; the node forwards the first four
/// to G, which never answers, and answers the rest `RejectedOverload`; G's
/// own request for a placed block is answered `DataFound` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_gets_overload_replies_while_another_peer_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(tmp.path(), "node", 0.5);
    let node_key: PeerKey = node.key.parse().unwrap();
    // Both link directions are exercised: the node dials F, G dials the node.
    let f = FakePeer::new("F", &node_key, Dialler::Node).await;
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    for p in [&f, &g] {
        veil_ok(&[
            "add-peer",
            "--name",
            p.name,
            // A base64url key may start with '-': keep clap from reading
            // it as an option.
            "--",
            node.dir.to_str().unwrap(),
            &p.addr().to_string(),
            &p.key().to_string(),
        ]);
    }
    node.set(&format!("router.max_inflight_per_peer = {LIMIT}"));
    node.start(&["--testnet"]);
    let client = &node.client;
    let listen = node.listen;

    bounded(&node, WHOLE_TEST, async {
        let (mut fl, mut gl) =
            tokio::join!(f.link_up(&node_key, listen), g.link_up(&node_key, listen));
        // Only once the router has registered both links may messages flow.
        wait_connected(client, &[f.key(), g.key()]).await;

        // 1. F floods the node with requests for keys nobody holds.
        let flood: Vec<(Uid, RoutingKey)> =
            (0..FLOOD).map(|_| (rand::random(), random_key())).collect();
        for &(uid, key) in &flood {
            send(&mut fl, Message::DataRequest { uid, key, htl: HTL }).await;
        }

        // F gets RejectedOverload for every request past the limit, and
        // nothing else (the first LIMIT are still waiting on G).
        let mut overloaded = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + STEP;
        while overloaded.len() < FLOOD - LIMIT {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            match next_frame(&mut fl, wait).await {
                Got::Frame(PeerFrame::Routing(Message::RejectedOverload { uid })) => {
                    assert!(
                        overloaded.insert(uid),
                        "two overload replies for uid {uid:016x}"
                    );
                }
                Got::Quiet => break,
                other => panic!("F got {other:?} during its flood"),
            }
        }
        assert!(
            overloaded.len() >= 30,
            "F got only {} RejectedOverload replies to {FLOOD} requests",
            overloaded.len()
        );
        // The router handles one link's frames in order: exactly the
        // requests past the first LIMIT are refused.
        let refused: BTreeSet<Uid> = flood[LIMIT..].iter().map(|&(uid, _)| uid).collect();
        assert_eq!(overloaded, refused, "the wrong requests were refused");

        // G received exactly the first LIMIT requests, forwarded with one
        // hop spent; it never answers them.
        let mut forwarded = Vec::new();
        loop {
            let wait = if forwarded.len() < LIMIT { STEP } else { QUIET };
            match next_frame(&mut gl, wait).await {
                Got::Frame(PeerFrame::Routing(Message::DataRequest { uid, key, htl })) => {
                    forwarded.push((uid, key, htl))
                }
                Got::Quiet => break,
                other => panic!("G got {other:?} during F's flood"),
            }
        }
        assert!(
            forwarded.len() <= LIMIT,
            "G got {} forwarded requests; the limit is {LIMIT}",
            forwarded.len()
        );
        let expected: Vec<(Uid, RoutingKey, u8)> = flood[..LIMIT]
            .iter()
            .map(|&(uid, key)| (uid, key, HTL - 1))
            .collect();
        assert_eq!(
            forwarded, expected,
            "G did not get F's first {LIMIT} requests"
        );

        let s = status(client).await;
        assert_eq!(s.pending, LIMIT as u64, "{s:?}");
        assert_eq!(s.stats.requests_received, FLOOD as u64, "{s:?}");
        assert_eq!(s.stats.overloads_sent, (FLOOD - LIMIT) as u64, "{s:?}");

        // F is still at its limit: one more request is refused too.
        let extra: Uid = rand::random();
        send(
            &mut fl,
            Message::DataRequest {
                uid: extra,
                key: random_key(),
                htl: HTL,
            },
        )
        .await;
        match next_frame(&mut fl, STEP).await {
            Got::Frame(PeerFrame::Routing(Message::RejectedOverload { uid })) if uid == extra => {}
            other => panic!("F's extra request got {other:?}"),
        }

        // 2. G's request for a block placed at the node is answered from
        // the store while F's flood is pending.
        let (chk, block) = Chk::encode(b"served despite the flood").unwrap();
        Client::connect(client, STEP)
            .await
            .unwrap()
            .place(block.clone())
            .await
            .unwrap();
        let wanted: Uid = rand::random();
        send(
            &mut gl,
            Message::DataRequest {
                uid: wanted,
                key: chk.routing,
                htl: HTL,
            },
        )
        .await;
        match next_frame(&mut gl, STEP).await {
            Got::Frame(PeerFrame::Routing(Message::DataFound { uid, block: got })) => {
                assert_eq!(uid, wanted);
                got.verify(&chk.routing)
                    .expect("the block G got does not match its key");
                assert!(got == block);
                assert_eq!(chk.decode(&got).unwrap(), b"served despite the flood");
            }
            other => panic!("G's request got {other:?}"),
        }

        // The limit is per peer: G's own request for an unknown key is
        // accepted and forwarded to F (the only candidate) although F's
        // requests fill F's quota.
        let g_uid: Uid = rand::random();
        let g_key = random_key();
        send(
            &mut gl,
            Message::DataRequest {
                uid: g_uid,
                key: g_key,
                htl: HTL,
            },
        )
        .await;
        match next_frame(&mut fl, STEP).await {
            Got::Frame(PeerFrame::Routing(Message::DataRequest { uid, key, htl })) => {
                assert_eq!((uid, key, htl), (g_uid, g_key, HTL - 1));
            }
            other => panic!("F should have got G's request, got {other:?}"),
        }

        let s = status(client).await;
        assert_eq!(
            s.pending,
            LIMIT as u64 + 1,
            "F's flood is no longer pending: {s:?}"
        );
        assert_eq!(s.stats.answered_from_store, 1, "{s:?}");

        // 3. `veil status --json` reports the overload replies.
        let client_arg = client.to_string();
        let text = tokio::task::spawn_blocking(move || {
            veil_ok(&["status", "--node", &client_arg, "--json"])
        })
        .await
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let overloads = json["overloads_sent"].as_u64().unwrap();
        assert!(overloads >= 30, "{json}");
        assert_eq!(overloads, (FLOOD - LIMIT + 1) as u64, "{json}");
        assert_eq!(json["pending"], LIMIT as u64 + 1, "{json}");

        // Both links are still up: overload is not misbehaviour.
        wait_connected(client, &[f.key(), g.key()]).await;
        let log = node.log();
        assert!(
            !log.contains("misbehaved"),
            "a peer was blamed during the flood:\n{log}"
        );
        drop((fl, gl));
    })
    .await;
    node.stop();
}

/// A block signed by a foreign key pair with the owner's public key
/// spliced in: it claims the owner's routing key and does not verify.
fn forged_signed_block() -> (RoutingKey, Block) {
    let owner = SskPrivate::from_seed([7; 32], [8; 32]);
    let (key, good) = owner.sign("site-0", b"CHK@owner").unwrap();
    let foreign = SskPrivate::from_seed([42; 32], [8; 32]);
    let (_, theirs) = foreign.sign("site-0", b"CHK@forger").unwrap();
    let mut spliced = theirs.as_bytes().to_vec();
    spliced[..64].copy_from_slice(&good.as_bytes()[..64]);
    let forged = Block::from_bytes(spliced).unwrap();
    assert_eq!(forged.routing_key(), key);
    assert!(forged.verify(&key).is_err());
    (key, forged)
}

/// A forged signed block over a real link, as the answer to the node's own
/// request and as an insert: each time the node refuses it, closes the
/// link and counts the misbehaviour; its client never gets the block, and
/// a later request for the key from another peer is not served it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signed_block_from_a_peer_is_refused_and_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, node_key) = init_node(tmp.path());
    let f = FakePeer::new("F", &node_key, Dialler::Peer).await;
    let g = FakePeer::new("G", &node_key, Dialler::Peer).await;
    add_peer(&node, f.addr(), &f.key(), f.name);
    add_peer(&node, g.addr(), &g.key(), g.name);
    // The client's get goes straight to a neighbour (no tunnel).
    node.set("anonymity = \"none\"");
    node.start(&["--testnet"]);
    let (client, listen) = (node.client.clone(), node.listen);
    let (key, forged) = forged_signed_block();

    bounded(&node, WHOLE_TEST, async {
        // The node's client asks; F, its only link, answers with the forgery.
        let mut fl = f.link_up(&node_key, listen).await;
        wait_link(&client, &f.key(), true).await;
        let c = client.clone();
        let asked = tokio::spawn(async move { Client::connect(&c, STEP).await?.get(key).await });
        let uid = match next_frame(&mut fl, STEP).await {
            Got::Frame(PeerFrame::Routing(Message::DataRequest { uid, key: k, .. }))
                if k == key =>
            {
                uid
            }
            other => panic!("expected the node's request for the key, got {other:?}"),
        };
        send(
            &mut fl,
            Message::DataFound {
                uid,
                block: forged.clone(),
            },
        )
        .await;
        expect_closed(&mut fl, "F after a forged DataFound").await;
        let got = asked.await.unwrap();
        assert!(got.is_err(), "the client got the forged block: {got:?}");
        wait_link(&client, &f.key(), false).await;

        // F comes back and inserts the forgery.
        let mut fl = f.link_up(&node_key, listen).await;
        wait_link(&client, &f.key(), true).await;
        send(
            &mut fl,
            Message::InsertRequest {
                uid: rand::random(),
                key,
                htl: HTL,
                block: forged,
            },
        )
        .await;
        expect_closed(&mut fl, "F after a forged insert").await;
        wait_log(
            &node,
            &[
                "peer misbehaved; closing link",
                "BadBlock",
                &f.key().to_string(),
            ],
            2,
        )
        .await;

        // Nothing was kept: G's request for the key is not answered with it.
        let mut gl = g.link_up(&node_key, listen).await;
        wait_link(&client, &g.key(), true).await;
        let wanted: Uid = rand::random();
        send(
            &mut gl,
            Message::DataRequest {
                uid: wanted,
                key,
                htl: HTL,
            },
        )
        .await;
        match next_frame(&mut gl, STEP).await {
            Got::Frame(PeerFrame::Routing(
                Message::DataNotFound { uid } | Message::RouteNotFound { uid, .. },
            )) => assert_eq!(uid, wanted),
            other => panic!("a request for the forged key got {other:?}"),
        }
        let s = status(&client).await;
        assert!(s.stats.misbehaviours >= 2, "{s:?}");
    })
    .await;
    node.stop();
}
