//! Integration tests for `veil::link`: encrypted, authenticated, fixed-size
//! framed links, over loopback TCP (and `tokio::io::duplex`).
//!
//! Some tests drive one end by hand with `snow` directly (a "raw peer"),
//! following the wire format in `docs/links.md`, so they can send exactly
//! the bytes a broken or hostile peer would.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use veil::identity::{Identity, PeerKey};
use veil::keys::Chk;
use veil::link::frame::{FrameOpener, FrameSealer, MAX_WIRE_FRAME};
use veil::link::handshake::{self, Initiator, Responder, HS_BUF_LEN};
use veil::link::{
    accept, connect, Link, LinkConfig, LinkError, ReplayGuard, BATCH_FRAMES, FRAME_SIZES,
    MAX_PAYLOAD, MAX_WRITE, NOISE_PARAMS, PROLOGUE, SMALL_PAYLOAD,
};
use veil::message::{Message, MAX_MESSAGE_LEN};

/// The handshake timeout of the tests that wait for it to fire.
const TIMEOUT: Duration = Duration::from_millis(300);
/// Upper bound on any single test step; nothing should come close.
const STEP: Duration = Duration::from_secs(5);

/// Every other test runs with the default (10 s) handshake timeout, beyond
/// `STEP`: a slow machine fails them by `within`, never by a handshake
/// timing out in their middle.
fn cfg() -> LinkConfig {
    LinkConfig::default()
}

fn short_cfg() -> LinkConfig {
    LinkConfig {
        handshake_timeout_ms: TIMEOUT.as_millis() as u64,
        ..LinkConfig::default()
    }
}

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// Both ends of one loopback TCP connection: (dialler, accepted).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let a = dialled.unwrap();
    let (b, _) = accepted.unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("test step took too long")
}

type Pair<S> = (Result<Link<S>, LinkError>, Result<Link<S>, LinkError>);

/// Run `connect` on `a` (identity `ia`, expecting `expect`) and `accept` on
/// `b` (identity `ib`, admitting what `allowed` admits) concurrently.
async fn handshake<S>(
    a: S,
    b: S,
    ia: &Identity,
    expect: PeerKey,
    ib: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
) -> Pair<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = cfg();
    within(async { tokio::join!(connect(a, ia, &expect, &c), accept(b, ib, allowed, &c)) }).await
}

/// Handshake `a` (initiator, identity `ia`) with `b` (responder, `ib`), each
/// allowing exactly the other.
async fn linked<S>(a: S, b: S, ia: &Identity, ib: &Identity) -> (Link<S>, Link<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let want_a = ia.public();
    let allowed = move |k: &PeerKey| *k == want_a;
    let (ca, cb) = handshake(a, b, ia, ib.public(), ib, &allowed).await;
    (ca.unwrap(), cb.unwrap())
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Payload sizes around every boundary.
fn sizes() -> Vec<usize> {
    vec![
        0,
        1,
        100,
        SMALL_PAYLOAD - 1,
        SMALL_PAYLOAD,
        SMALL_PAYLOAD + 1,
        4096,
        32 * 1024,
        MAX_MESSAGE_LEN,
        MAX_PAYLOAD,
    ]
}

/// Send every size from `a` to `b` and from `b` to `a` at the same time,
/// with the halves in separate tasks, and check what arrives.
async fn exchange_both_ways<S>(a: Link<S>, b: Link<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let send_a = tokio::spawn(async move {
        for (i, n) in sizes().into_iter().enumerate() {
            aw.send(&payload(n, i as u64)).await.unwrap();
        }
        aw.send_keepalive().await.unwrap();
        aw.close().await.unwrap();
    });
    let send_b = tokio::spawn(async move {
        for (i, n) in sizes().into_iter().enumerate() {
            bw.send(&payload(n, 1000 + i as u64)).await.unwrap();
        }
        bw.send_keepalive().await.unwrap();
        bw.close().await.unwrap();
    });
    let recv_b = tokio::spawn(async move {
        for (i, n) in sizes().into_iter().enumerate() {
            assert_eq!(br.recv().await.unwrap().unwrap(), payload(n, i as u64));
        }
        assert_eq!(br.recv().await.unwrap(), Some(vec![]), "keepalive");
        assert_eq!(br.recv().await.unwrap(), None, "clean end");
    });
    let recv_a = async move {
        for (i, n) in sizes().into_iter().enumerate() {
            assert_eq!(
                ar.recv().await.unwrap().unwrap(),
                payload(n, 1000 + i as u64)
            );
        }
        assert_eq!(ar.recv().await.unwrap(), Some(vec![]), "keepalive");
        assert_eq!(ar.recv().await.unwrap(), None, "clean end");
    };
    within(async {
        recv_a.await;
        recv_b.await.unwrap();
        send_a.await.unwrap();
        send_b.await.unwrap();
    })
    .await;
}

// 1. Round trips.

#[tokio::test]
async fn round_trip_over_tcp() {
    let (ia, ib) = (ident(1), ident(2));
    let (s1, s2) = tcp_pair().await;
    let (a, b) = linked(s1, s2, &ia, &ib).await;
    assert_eq!(a.peer(), ib.public());
    assert_eq!(b.peer(), ia.public());
    exchange_both_ways(a, b).await;
}

#[tokio::test]
async fn round_trip_over_duplex_with_tiny_buffer() {
    // A 777-byte pipe forces every frame to arrive in many pieces.
    let (ia, ib) = (ident(3), ident(4));
    let (s1, s2) = tokio::io::duplex(777);
    let (a, b) = linked(s1, s2, &ia, &ib).await;
    exchange_both_ways(a, b).await;
}

/// A stream that remembers the largest write it was handed.
struct Recording<S> {
    inner: S,
    largest: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.largest
            .fetch_max(buf.len(), std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A full batch of the largest frames is more than Shadow takes in one
/// TCP write (65 535 bytes, even with room in its buffer; tokio then waits
/// for the socket to turn writable, which under Shadow it never does): the
/// link hands the socket at most `MAX_WRITE` bytes at a time, and every
/// frame arrives.
#[tokio::test]
async fn a_full_batch_reaches_the_socket_in_writes_shadow_takes_whole() {
    let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s1, s2) = tokio::io::duplex(1 << 20);
    let wrap = |inner| Recording {
        inner,
        largest: Arc::clone(&largest),
    };
    let (ia, ib) = (ident(21), ident(22));
    let (a, b) = linked(wrap(s1), wrap(s2), &ia, &ib).await;
    let (_ar, mut aw) = a.into_split();
    let (mut br, _bw) = b.into_split();
    let sent: Vec<Vec<u8>> = (0..BATCH_FRAMES as u64)
        .map(|i| payload(MAX_PAYLOAD, 70 + i))
        .collect();
    for p in &sent {
        aw.queue_with(|out| out.extend_from_slice(p)).unwrap();
    }
    within(aw.flush()).await.unwrap();
    for want in &sent {
        assert_eq!(&within(br.recv()).await.unwrap().unwrap(), want);
    }
    const {
        assert!(
            BATCH_FRAMES * MAX_PAYLOAD > MAX_WRITE,
            "the batch fits one write"
        )
    };
    let largest = largest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(largest <= MAX_WRITE, "a write of {largest} bytes");
}

#[tokio::test]
async fn queued_frames_go_out_together_and_arrive_in_order() {
    // A pipe wider than several frames: the reader gets many frames (and
    // pieces of frames) per read, and a frame straddling the end of its
    // buffer is carried over.
    let (ia, ib) = (ident(11), ident(12));
    let (s1, s2) = tokio::io::duplex(5 * 33 * 1024 + 123);
    let (a, b) = linked(s1, s2, &ia, &ib).await;
    let (_ar, mut aw) = a.into_split();
    let (mut br, _bw) = b.into_split();
    // Every size, many times over, in batches of every length up to the
    // limit (a batch is a run of `queue_with` and then one `flush`).
    let all: Vec<Vec<u8>> = (0..60u64)
        .map(|i| payload(sizes()[i as usize % sizes().len()], 50 + i))
        .collect();
    let sent = all.clone();
    let send = tokio::spawn(async move {
        let mut batch = 1;
        let mut queue = sent.iter();
        let mut done = false;
        while !done {
            for _ in 0..batch {
                let Some(p) = queue.next() else {
                    done = true;
                    break;
                };
                assert!(aw.can_queue());
                aw.queue_with(|out| out.extend_from_slice(p)).unwrap();
            }
            if batch == BATCH_FRAMES {
                assert!(!aw.can_queue());
                let err = aw.queue_with(|out| out.push(1)).unwrap_err();
                assert!(matches!(err, LinkError::BatchFull), "{err:?}");
            }
            // An oversized payload is refused and leaves the batch intact.
            let err = aw.queue_with(|out| out.extend_from_slice(&vec![7; MAX_PAYLOAD + 1]));
            assert!(matches!(
                err,
                Err(LinkError::PayloadTooLarge(_) | LinkError::BatchFull)
            ));
            aw.flush().await.unwrap();
            batch = batch % BATCH_FRAMES + 1;
        }
        aw.close().await.unwrap();
    });
    within(async {
        for want in &all {
            assert_eq!(&br.recv().await.unwrap().unwrap(), want);
        }
        assert_eq!(br.recv().await.unwrap(), None, "clean end");
        send.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unsplit_link_and_oversized_payload() {
    let (ia, ib) = (ident(5), ident(6));
    let (s1, s2) = tcp_pair().await;
    let (mut a, mut b) = linked(s1, s2, &ia, &ib).await;
    let err = a.send(&vec![0u8; MAX_PAYLOAD + 1]).await.unwrap_err();
    assert!(
        matches!(err, LinkError::PayloadTooLarge(n) if n == MAX_PAYLOAD + 1),
        "{err:?}"
    );
    // Refusing an oversized payload sends nothing and leaves the link usable.
    within(a.send(b"still here")).await.unwrap();
    assert_eq!(within(b.recv()).await.unwrap().unwrap(), b"still here");
    within(b.send_keepalive()).await.unwrap();
    assert_eq!(within(a.recv()).await.unwrap().unwrap(), Vec::<u8>::new());
}

#[tokio::test]
async fn handshake_futures_are_send() {
    // Both handshakes run in spawned tasks (which requires Send futures).
    let ia = Arc::new(ident(7));
    let ib = Arc::new(ident(8));
    let (s1, s2) = tcp_pair().await;
    let (ia2, ib2) = (Arc::clone(&ia), Arc::clone(&ib));
    let server = tokio::spawn(async move {
        let allowed = |_: &PeerKey| true;
        accept(s2, &ib2, &allowed, &cfg()).await.map(|l| l.peer())
    });
    let client = tokio::spawn(async move {
        connect(s1, &ia2, &ib.public(), &cfg())
            .await
            .map(|l| l.peer())
    });
    assert_eq!(within(server).await.unwrap().unwrap(), ia.public());
    within(client).await.unwrap().unwrap();
}

// A tapping proxy: forwards length-prefixed messages between two TCP
// connections, records every message length per direction, and can flip a
// byte in one message.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// Initiator to responder: handshake message 1, then frames.
    ToResponder,
    /// Responder to initiator: handshake message 2, then frames.
    ToInitiator,
}

type Log = Arc<Mutex<Vec<(Dir, usize)>>>;

fn pump(
    dir: Dir,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Log,
    tamper: Option<usize>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: at most this many messages per direction in any test.
        for index in 0..10_000usize {
            let mut prefix = [0u8; 2];
            if from.read_exact(&mut prefix).await.is_err() {
                break;
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            let mut body = vec![0u8; len];
            if from.read_exact(&mut body).await.is_err() {
                break;
            }
            log.lock().unwrap().push((dir, len));
            if tamper == Some(index) {
                body[len / 2] ^= 0x01;
            }
            if to.write_all(&prefix).await.is_err() || to.write_all(&body).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    })
}

struct Tap {
    log: Log,
    tasks: Vec<JoinHandle<()>>,
}

impl Tap {
    /// Returns (initiator's stream, responder's stream, tap).
    /// `tamper`: flip a byte of the message with this index in this direction.
    async fn new(tamper: Option<(Dir, usize)>) -> (TcpStream, TcpStream, Tap) {
        let (initiator, proxy_a) = tcp_pair().await;
        let (proxy_b, responder) = tcp_pair().await;
        let (ar, aw) = proxy_a.into_split();
        let (br, bw) = proxy_b.into_split();
        let log: Log = Arc::default();
        let pick = |d: Dir| tamper.filter(|(td, _)| *td == d).map(|(_, i)| i);
        let tasks = vec![
            pump(
                Dir::ToResponder,
                ar,
                bw,
                Arc::clone(&log),
                pick(Dir::ToResponder),
            ),
            pump(
                Dir::ToInitiator,
                br,
                aw,
                Arc::clone(&log),
                pick(Dir::ToInitiator),
            ),
        ];
        (initiator, responder, Tap { log, tasks })
    }

    async fn finish(self) -> Vec<(Dir, usize)> {
        for t in self.tasks {
            within(t).await.unwrap();
        }
        let log = self.log.lock().unwrap();
        log.clone()
    }
}

// 2. Every frame on the wire has one of the fixed sizes.

#[tokio::test]
async fn only_fixed_frame_sizes_on_the_wire() {
    let (ia, ib) = (ident(10), ident(11));
    let (s1, s2, tap) = Tap::new(None).await;
    let (a, b) = linked(s1, s2, &ia, &ib).await;

    // Real routing messages of every shape, plus arbitrary sizes.
    let (chk, block) = Chk::encode(b"a block's worth of something").unwrap();
    let messages = [
        Message::DataRequest {
            uid: 1,
            key: chk.routing,
            htl: 18,
        },
        Message::DataNotFound { uid: 2 },
        Message::RouteNotFound { uid: 3, htl: 4 },
        Message::RejectedLoop { uid: 4 },
        Message::InsertSucceeded { uid: u64::MAX },
        Message::DataFound {
            uid: 5,
            block: block.clone(),
        },
        Message::InsertRequest {
            uid: 6,
            key: chk.routing,
            htl: 10,
            block,
        },
    ];
    let mut payloads: Vec<Vec<u8>> = messages.iter().map(Message::encode).collect();
    payloads.extend(sizes().into_iter().map(|n| payload(n, n as u64)));
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    payloads.extend((0..20).map(|i| payload(rng.gen_range(0..=MAX_PAYLOAD), i)));

    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let count = payloads.len();
    let to_b = payloads.clone();
    within(async {
        for p in &to_b {
            aw.send(p).await.unwrap();
            assert_eq!(&br.recv().await.unwrap().unwrap(), p);
            bw.send(p).await.unwrap();
            assert_eq!(&ar.recv().await.unwrap().unwrap(), p);
        }
        aw.send_keepalive().await.unwrap();
        assert_eq!(br.recv().await.unwrap(), Some(vec![]));
        aw.close().await.unwrap();
        bw.close().await.unwrap();
        assert_eq!(br.recv().await.unwrap(), None);
        assert_eq!(ar.recv().await.unwrap(), None);
    })
    .await;
    drop((ar, br));

    let log = tap.finish().await;
    let to_r: Vec<usize> = log
        .iter()
        .filter(|(d, _)| *d == Dir::ToResponder)
        .map(|&(_, n)| n)
        .collect();
    let to_i: Vec<usize> = log
        .iter()
        .filter(|(d, _)| *d == Dir::ToInitiator)
        .map(|&(_, n)| n)
        .collect();
    // Handshake: `-> e, es, s, ss, {ts}` (104), `<- e, ee, se` (48).
    assert_eq!(to_r[0], 104);
    assert_eq!(to_i[0], 48);
    let frames_r = &to_r[1..];
    let frames_i = &to_i[1..];
    assert_eq!(frames_r.len(), count + 1, "payloads + keepalive");
    assert_eq!(frames_i.len(), count, "payloads");
    let distinct: BTreeSet<usize> = frames_r.iter().chain(frames_i).copied().collect();
    assert!(
        distinct.iter().all(|n| FRAME_SIZES.contains(n)),
        "{distinct:?}"
    );
    assert_eq!(distinct.len(), 2, "{distinct:?}");
    // Every message without a block is a small frame; both block-carrying
    // messages are large.
    assert!(frames_r[..5].iter().all(|&n| n == FRAME_SIZES[0]));
    assert!(frames_r[5..7].iter().all(|&n| n == FRAME_SIZES[1]));
}

// 3. Wrong static keys are refused.

#[tokio::test]
async fn a_responder_without_the_dialled_key_cannot_open_and_stays_silent() {
    let (ia, ib, other) = (ident(20), ident(21), ident(22));
    let (s1, s2) = tcp_pair().await;
    let allowed = |_: &PeerKey| true;
    // `ia` seals its first message to `other`'s key; `ib` answers the call.
    let (ca, cb) = handshake(s1, s2, &ia, other.public(), &ib, &allowed).await;
    let eb = cb.unwrap_err();
    assert!(
        matches!(eb, LinkError::Handshake(snow::Error::Decrypt)),
        "{eb:?}"
    );
    // The responder hung up without a word.
    let ea = ca.unwrap_err();
    assert!(matches!(ea, LinkError::HandshakeClosed), "{ea:?}");
}

#[tokio::test]
async fn responder_refuses_unknown_initiator() {
    let (ia, ib, friend) = (ident(23), ident(24), ident(25));
    let (s1, s2) = tcp_pair().await;
    let friend_key = friend.public();
    let allowed = move |k: &PeerKey| *k == friend_key;
    let (ca, cb) = handshake(s1, s2, &ia, ib.public(), &ib, &allowed).await;
    let eb = cb.unwrap_err();
    assert!(
        matches!(eb, LinkError::UnknownPeer(k) if k == ia.public()),
        "{eb:?}"
    );
    // The initiator learns it too, from the hang-up: HandshakeClosed, not
    // HandshakeTimeout.
    let ea = ca.unwrap_err();
    assert!(matches!(ea, LinkError::HandshakeClosed), "{ea:?}");
}

// 4. Tampering is detected.

#[tokio::test]
async fn tampered_transport_frame_is_a_decrypt_error() {
    let (ia, ib) = (ident(30), ident(31));
    // Index 1 towards the responder is the first frame after the handshake.
    let (s1, s2, tap) = Tap::new(Some((Dir::ToResponder, 1))).await;
    let (mut a, mut b) = linked(s1, s2, &ia, &ib).await;
    within(a.send(b"tamper with me")).await.unwrap();
    let err = within(b.recv()).await.unwrap_err();
    assert!(matches!(err, LinkError::Decrypt), "{err:?}");
    // A failed reader stays failed.
    let again = within(b.recv()).await.unwrap_err();
    assert!(matches!(again, LinkError::Closed), "{again:?}");
    drop((a, b));
    tap.finish().await;
}

#[tokio::test]
async fn tampered_second_message_fails_connect() {
    let (ia, ib) = (ident(32), ident(33));
    let (s1, s2, _tap) = Tap::new(Some((Dir::ToInitiator, 0))).await;
    let allowed = |_: &PeerKey| true;
    let (ca, cb) = handshake(s1, s2, &ia, ib.public(), &ib, &allowed).await;
    assert!(cb.is_ok());
    let ea = ca.unwrap_err();
    assert!(
        matches!(ea, LinkError::Handshake(snow::Error::Decrypt)),
        "{ea:?}"
    );
}

#[tokio::test]
async fn tampered_first_message_fails_both_sides() {
    let (ia, ib) = (ident(34), ident(35));
    // Flip a byte in the first message: the initiator's sealed static key.
    let (s1, s2, _tap) = Tap::new(Some((Dir::ToResponder, 0))).await;
    let allowed = |_: &PeerKey| true;
    let (ca, cb) = handshake(s1, s2, &ia, ib.public(), &ib, &allowed).await;
    let eb = cb.unwrap_err();
    assert!(
        matches!(eb, LinkError::Handshake(snow::Error::Decrypt)),
        "{eb:?}"
    );
    let ea = ca.unwrap_err();
    assert!(matches!(ea, LinkError::HandshakeClosed), "{ea:?}");
}

// A raw peer: the initiator side done by hand with snow, per docs/links.md.

async fn write_prefixed<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) {
    let len = u16::try_from(msg.len()).unwrap();
    w.write_all(&len.to_be_bytes()).await.unwrap();
    w.write_all(msg).await.unwrap();
}

async fn read_prefixed<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut prefix = [0u8; 2];
    r.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    r.read_exact(&mut body).await.unwrap();
    body
}

/// The first handshake message of `me` dialling `to`, by hand with snow
/// per docs/links.md, carrying timestamp `ts`.
fn raw_msg1(me: &Identity, to: &PeerKey, ts: u64) -> (snow::HandshakeState, Vec<u8>) {
    let secret = me.secret_bytes();
    let mut hs = snow::Builder::new("Noise_IK_25519_ChaChaPoly_SHA256".parse().unwrap())
        .local_private_key(&secret[..])
        .unwrap()
        .remote_public_key(&to.0)
        .unwrap()
        .prologue(b"veil/link/v2")
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let n = hs.write_message(&ts.to_be_bytes(), &mut buf).unwrap();
    assert_eq!(n, 104);
    (hs, buf[..n].to_vec())
}

/// Handshake as the initiator by hand.
async fn raw_initiator(
    stream: &mut TcpStream,
    me: &Identity,
    to: &PeerKey,
) -> snow::TransportState {
    let (mut hs, msg1) = raw_msg1(me, to, 1);
    write_prefixed(stream, &msg1).await;
    let msg2 = read_prefixed(stream).await;
    assert_eq!(msg2.len(), 48);
    let mut buf = vec![0u8; 65535];
    assert_eq!(hs.read_message(&msg2, &mut buf).unwrap(), 0);
    hs.into_transport_mode().unwrap()
}

/// Seal an inner plaintext (already laid out) into a prefixed wire frame.
fn seal(ts: &mut snow::TransportState, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; inner.len() + 16];
    let n = ts.write_message(inner, &mut out).unwrap();
    let mut frame = u16::try_from(n).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&out[..n]);
    frame
}

/// The inner layout of a small frame carrying `payload`.
fn small_inner(payload: &[u8]) -> Vec<u8> {
    let mut inner = vec![0u8; FRAME_SIZES[0] - 16];
    inner[..4].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    inner[4..4 + payload.len()].copy_from_slice(payload);
    inner
}

/// A responder link (allowing anyone) facing a raw initiator over TCP.
async fn raw_pair(seed: u64) -> (TcpStream, snow::TransportState, Link<TcpStream>) {
    let (ia, ib) = (ident(seed), ident(seed + 1));
    let (mut s1, s2) = tcp_pair().await;
    let allowed = |_: &PeerKey| true;
    let c = cfg();
    let to = ib.public();
    let (ts, link) = within(async {
        tokio::join!(
            raw_initiator(&mut s1, &ia, &to),
            accept(s2, &ib, &allowed, &c)
        )
    })
    .await;
    let link = link.unwrap();
    assert_eq!(link.peer(), ia.public());
    (s1, ts, link)
}

#[tokio::test]
async fn raw_peer_follows_the_documented_format() {
    let (mut raw, mut ts, mut link) = raw_pair(40).await;
    raw.write_all(&seal(&mut ts, &small_inner(b"by hand")))
        .await
        .unwrap();
    assert_eq!(within(link.recv()).await.unwrap().unwrap(), b"by hand");
    // A small payload in a large frame is accepted too (only the sender picks
    // the smallest class).
    let mut large = vec![0u8; FRAME_SIZES[1] - 16];
    large[..4].copy_from_slice(&2u32.to_be_bytes());
    large[4..6].copy_from_slice(b"hi");
    raw.write_all(&seal(&mut ts, &large)).await.unwrap();
    assert_eq!(within(link.recv()).await.unwrap().unwrap(), b"hi");
    // And the link's frames decrypt by hand.
    within(link.send(b"back")).await.unwrap();
    let frame = within(read_prefixed(&mut raw)).await;
    assert_eq!(frame.len(), FRAME_SIZES[0]);
    let mut plain = vec![0u8; frame.len()];
    let n = ts.read_message(&frame, &mut plain).unwrap();
    assert_eq!(plain[..n], small_inner(b"back")[..]);
}

// 5. Bad length prefixes are refused before any body is read.

#[tokio::test]
async fn oversized_length_prefix_is_refused_at_once() {
    for bad in [0xFFFFu16, 0, 1, 511, 513, 33_791, 33_793] {
        let (mut raw, _ts, mut link) = raw_pair(41).await;
        // Only the prefix: no body ever follows, and the connection stays open.
        raw.write_all(&bad.to_be_bytes()).await.unwrap();
        // No body ever comes, so a reader that waited for one would hang
        // until `within` fails the test.
        let err = within(link.recv()).await.unwrap_err();
        assert!(
            matches!(err, LinkError::BadFrameLength(n) if n == usize::from(bad)),
            "{bad}: {err:?}"
        );
        assert!(matches!(link.recv().await, Err(LinkError::Closed)));
        drop(raw);
    }
}

#[tokio::test]
async fn bad_inner_layout_is_bad_padding() {
    // Declared length beyond the frame.
    let (mut raw, mut ts, mut link) = raw_pair(42).await;
    let mut inner = small_inner(b"");
    inner[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    raw.write_all(&seal(&mut ts, &inner)).await.unwrap();
    let err = within(link.recv()).await.unwrap_err();
    assert!(matches!(err, LinkError::BadPadding), "{err:?}");

    // Non-zero padding.
    let (mut raw, mut ts, mut link) = raw_pair(43).await;
    let mut inner = small_inner(b"abc");
    *inner.last_mut().unwrap() = 7;
    raw.write_all(&seal(&mut ts, &inner)).await.unwrap();
    let err = within(link.recv()).await.unwrap_err();
    assert!(matches!(err, LinkError::BadPadding), "{err:?}");
}

#[tokio::test]
async fn replayed_frame_is_a_decrypt_error() {
    let (mut raw, mut ts, mut link) = raw_pair(44).await;
    let frame = seal(&mut ts, &small_inner(b"once"));
    raw.write_all(&frame).await.unwrap();
    raw.write_all(&frame).await.unwrap();
    assert_eq!(within(link.recv()).await.unwrap().unwrap(), b"once");
    let err = within(link.recv()).await.unwrap_err();
    assert!(matches!(err, LinkError::Decrypt), "{err:?}");
}

#[tokio::test]
async fn truncated_frame_and_clean_end() {
    let (mut raw, mut ts, mut link) = raw_pair(45).await;
    let frame = seal(&mut ts, &small_inner(b"cut"));
    raw.write_all(&frame[..100]).await.unwrap();
    raw.shutdown().await.unwrap();
    let err = within(link.recv()).await.unwrap_err();
    assert!(matches!(err, LinkError::Truncated), "{err:?}");

    let (mut raw, _ts, mut link) = raw_pair(46).await;
    raw.shutdown().await.unwrap();
    assert_eq!(within(link.recv()).await.unwrap(), None);
}

#[tokio::test]
async fn recv_survives_cancellation_mid_frame() {
    let (mut raw, mut ts, mut link) = raw_pair(47).await;
    let frame = seal(&mut ts, &small_inner(b"slow"));
    raw.write_all(&frame[..1]).await.unwrap();
    // Cancelled with one prefix byte read ...
    let r = tokio::time::timeout(Duration::from_millis(30), link.recv()).await;
    assert!(r.is_err(), "nothing complete yet");
    raw.write_all(&frame[1..300]).await.unwrap();
    // ... and again in the middle of the body ...
    let r = tokio::time::timeout(Duration::from_millis(30), link.recv()).await;
    assert!(r.is_err(), "nothing complete yet");
    raw.write_all(&frame[300..]).await.unwrap();
    // ... and the frame still comes out whole.
    assert_eq!(within(link.recv()).await.unwrap().unwrap(), b"slow");
}

// 6. Silent peers time out.

fn assert_timed_out(result: Result<impl std::fmt::Debug, LinkError>, started: Instant) {
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(
        matches!(err, LinkError::HandshakeTimeout(t) if t == TIMEOUT),
        "{err:?}"
    );
    // Never early; late only within `within`'s generous bound.
    assert!(elapsed >= TIMEOUT, "{elapsed:?}");
}

#[tokio::test]
async fn silent_initiator_is_dropped_at_the_timeout() {
    let ib = ident(50);
    let (_silent, s2) = tcp_pair().await;
    let started = Instant::now();
    let allowed = |_: &PeerKey| true;
    assert_timed_out(
        within(accept(s2, &ib, &allowed, &short_cfg())).await,
        started,
    );
}

#[tokio::test]
async fn silent_responder_is_dropped_at_the_timeout() {
    let (ia, ib) = (ident(51), ident(52));
    let (s1, _silent) = tcp_pair().await;
    let started = Instant::now();
    assert_timed_out(
        within(connect(s1, &ia, &ib.public(), &short_cfg())).await,
        started,
    );
}

#[tokio::test]
async fn stalling_mid_handshake_is_dropped_at_the_timeout() {
    // Sends part of the first message and then nothing.
    let ib = ident(53);
    let (mut slow, s2) = tcp_pair().await;
    slow.write_all(&[0, 104, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let started = Instant::now();
    let allowed = |_: &PeerKey| true;
    assert_timed_out(
        within(accept(s2, &ib, &allowed, &short_cfg())).await,
        started,
    );
}

// 7. Garbage handshakes are typed errors.

#[tokio::test]
async fn garbage_instead_of_a_handshake() {
    let ib = ident(60);
    let allowed = |_: &PeerKey| true;

    // Something else entirely: the prefix is not the 104 of message 1.
    let (mut web, s2) = tcp_pair().await;
    web.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let err = within(accept(s2, &ib, &allowed, &cfg())).await.unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::HandshakeLength {
                expected: 104,
                got: 0x4745
            }
        ),
        "{err:?}"
    );

    // A well-sized but random first message fails authentication, and the
    // prober gets not one byte back: the responder closes in silence.
    let (mut fake, s2) = tcp_pair().await;
    let server = tokio::spawn(async move {
        let allowed = |_: &PeerKey| true;
        accept(s2, &ident(61), &allowed, &cfg()).await.map(|_| ())
    });
    write_prefixed(&mut fake, &payload(104, 1)).await;
    let err = within(server).await.unwrap().unwrap_err();
    assert!(
        matches!(err, LinkError::Handshake(snow::Error::Decrypt)),
        "{err:?}"
    );
    let mut back = Vec::new();
    within(fake.read_to_end(&mut back)).await.unwrap();
    assert!(back.is_empty(), "the prober got {} bytes", back.len());
}

#[tokio::test]
async fn a_replayed_first_message_gets_no_answer() {
    let (ia, ib) = (ident(67), ident(68));
    let guard = veil::link::ReplayGuard::default();
    let allowed = |_: &PeerKey| true;
    let (_, msg1) = raw_msg1(&ia, &ib.public(), 1_000);
    let (_, newer) = raw_msg1(&ia, &ib.public(), 1_001);
    // The first time it is answered; recorded and sent again, it is not; a
    // newer timestamp from the same friend is answered again.
    for (round, msg, answered) in [(0, &msg1, true), (1, &msg1, false), (2, &newer, true)] {
        let (mut rec, s2) = tcp_pair().await;
        write_prefixed(&mut rec, msg).await;
        let accepted = within(veil::link::accept_guarded(
            s2,
            &ib,
            &allowed,
            &guard,
            &cfg(),
        ))
        .await;
        let mut back = Vec::new();
        if answered {
            assert_eq!(accepted.unwrap().peer(), ia.public());
            let msg2 = within(read_prefixed(&mut rec)).await;
            assert_eq!(msg2.len(), 48, "round {round}");
        } else {
            let err = accepted.unwrap_err();
            assert!(
                matches!(err, LinkError::Replayed(k) if k == ia.public()),
                "{err:?}"
            );
            within(rec.read_to_end(&mut back)).await.unwrap();
            assert!(back.is_empty(), "a replay drew {} bytes", back.len());
        }
    }
}

#[tokio::test]
async fn garbage_responder() {
    let (ia, ib) = (ident(62), ident(63));
    let (s1, mut fake) = tcp_pair().await;
    let client =
        tokio::spawn(async move { connect(s1, &ia, &ib.public(), &cfg()).await.map(|_| ()) });
    let msg1 = within(read_prefixed(&mut fake)).await;
    assert_eq!(msg1.len(), 104);
    write_prefixed(&mut fake, &payload(48, 3)).await;
    let err = within(client).await.unwrap().unwrap_err();
    assert!(
        matches!(err, LinkError::Handshake(snow::Error::Decrypt)),
        "{err:?}"
    );
}

#[tokio::test]
async fn random_bytes_never_panic() {
    // Random garbage of random lengths at both roles, over duplex pipes.
    let mut rng = ChaCha20Rng::seed_from_u64(64);
    let (ia, ib) = (ident(65), ident(66));
    for round in 0..40 {
        let len = rng.gen_range(0..300);
        let mut junk = payload(len, round);
        if round % 4 == 0 && len >= 2 {
            // Sometimes a plausible prefix, to get past the length check.
            junk[..2].copy_from_slice(&[0, 104]);
        }
        for initiator in [true, false] {
            let (mut fake, ours) = tokio::io::duplex(4096);
            let junk = junk.clone();
            let feeder = tokio::spawn(async move {
                let _ = fake.write_all(&junk).await;
                let _ = fake.shutdown().await;
                // Drain whatever the link sends, until it hangs up.
                let mut sink = Vec::new();
                let _ = fake.read_to_end(&mut sink).await;
            });
            let result = if initiator {
                within(connect(ours, &ia, &ib.public(), &cfg()))
                    .await
                    .map(|_| ())
            } else {
                let allowed = |_: &PeerKey| true;
                within(accept(ours, &ib, &allowed, &cfg()))
                    .await
                    .map(|_| ())
            };
            assert!(result.is_err(), "round {round}: garbage made a link");
            within(feeder).await.unwrap();
        }
    }
}

// 9. The in-place link cipher speaks exactly snow's Noise transport.

/// A frame's inner plaintext of class `class` carrying `payload`.
fn inner_of(class: usize, payload: &[u8]) -> Vec<u8> {
    let mut inner = vec![0u8; class - 16];
    inner[..4].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    inner[4..4 + payload.len()].copy_from_slice(payload);
    inner
}

/// The wire frame snow's stateless transport sends for `payload` under
/// counter `nonce`: prefix, then the sealed inner layout.
fn snow_frame(ts: &snow::StatelessTransportState, nonce: u64, payload: &[u8]) -> Vec<u8> {
    let class = if payload.len() <= SMALL_PAYLOAD {
        FRAME_SIZES[0]
    } else {
        FRAME_SIZES[1]
    };
    let mut wire = u16::try_from(class).unwrap().to_be_bytes().to_vec();
    wire.resize(2 + class, 0);
    let n = ts
        .write_message(nonce, &inner_of(class, payload), &mut wire[2..])
        .unwrap();
    assert_eq!(n, class);
    wire
}

/// Open a link frame with snow's stateless transport under `nonce` and
/// check its inner layout; the payload.
fn snow_open(ts: &snow::StatelessTransportState, nonce: u64, wire: &[u8]) -> Vec<u8> {
    let class = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
    assert_eq!(wire.len(), 2 + class);
    let mut plain = vec![0u8; class];
    let n = ts.read_message(nonce, &wire[2..], &mut plain).unwrap();
    assert_eq!(n, class - 16);
    let len = u32::from_be_bytes(plain[..4].try_into().unwrap()) as usize;
    assert!(plain[4 + len..n].iter().all(|&b| b == 0), "padding is zero");
    plain[4..4 + len].to_vec()
}

/// Our handshake steps against snow's, with `ours_initiates` choosing the
/// roles: our `Established` and snow's transport for the same session.
fn ours_and_snows(
    ours: &Identity,
    theirs: &Identity,
    ours_initiates: bool,
) -> (handshake::Established, snow::StatelessTransportState) {
    let builder = |me: &Identity| {
        let secret = me.secret_bytes();
        snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .local_private_key(&secret[..])
            .unwrap()
            .prologue(PROLOGUE)
            .unwrap()
            .build_responder()
            .unwrap()
    };
    let (mut m1, mut m2) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
    let mut scratch = [0u8; HS_BUF_LEN];
    if ours_initiates {
        let (init, n1) =
            Initiator::start(&ours.secret_bytes(), theirs.public(), 9, &mut m1).unwrap();
        let mut hs = builder(theirs);
        assert_eq!(hs.read_message(&m1[..n1], &mut scratch).unwrap(), 8);
        let n2 = hs.write_message(&[], &mut m2).unwrap();
        let est = init.on_msg2(&m2[..n2]).unwrap();
        (est, hs.into_stateless_transport_mode().unwrap())
    } else {
        let (mut hs, msg1) = raw_msg1(theirs, &ours.public(), 9);
        let guard = ReplayGuard::default();
        let (est, n2) = Responder::new(&ours.secret_bytes())
            .unwrap()
            .on_msg1(&msg1, &|_| true, &guard, &mut m2)
            .unwrap();
        assert_eq!(hs.read_message(&m2[..n2], &mut scratch).unwrap(), 0);
        (est, hs.into_stateless_transport_mode().unwrap())
    }
}

#[test]
fn in_place_frames_are_snows_transport_frames_both_ways_and_roles() {
    let mut rng = ChaCha20Rng::seed_from_u64(90);
    for ours_initiates in [true, false] {
        let (ours, theirs) = (ident(91), ident(92));
        let (est, snow_ts) = ours_and_snows(&ours, &theirs, ours_initiates);
        assert_eq!(est.peer, theirs.public());
        let mut sealer = FrameSealer::new(est.transport.clone());
        let mut opener = FrameOpener::new(est.transport);
        let mut batch = Vec::new();
        let mut slice = vec![0u8; MAX_WIRE_FRAME];
        // Many counters, every size class and its edges; the link never
        // rekeys, so the counter is the only state.
        for nonce in 0..64u64 {
            let len = match nonce % 6 {
                0 => 0,
                1 => SMALL_PAYLOAD,
                2 => SMALL_PAYLOAD + 1,
                3 => MAX_PAYLOAD,
                _ => rng.gen_range(0..=MAX_PAYLOAD),
            };
            let out = payload(len, nonce);
            // Ours -> snow: snow opens it under this counter with the inner
            // layout intact (the AEAD is deterministic, so these are the
            // very bytes snow's own transport would send).
            let wire = if nonce % 2 == 0 {
                batch.clear();
                let n = sealer
                    .seal_into(|p| p.extend_from_slice(&out), &mut batch)
                    .unwrap();
                assert_eq!(n, batch.len());
                batch.clone()
            } else {
                let n = sealer.seal(&out, &mut slice).unwrap();
                slice[..n].to_vec()
            };
            assert_eq!(snow_open(&snow_ts, nonce, &wire), out);
            // Snow -> ours, opened in place and by copy.
            let back = payload(len, nonce + 1000);
            let mut wire = snow_frame(&snow_ts, nonce, &back);
            if nonce % 2 == 0 {
                assert_eq!(opener.open_in_place(&mut wire).unwrap(), back);
            } else {
                assert_eq!(opener.open(&wire).unwrap(), back);
            }
        }
        // A frame snow sealed under a counter other than the next one is
        // refused.
        let mut skipped = snow_frame(&snow_ts, 65, b"skipped");
        assert!(matches!(
            opener.open_in_place(&mut skipped),
            Err(LinkError::Decrypt)
        ));
    }
}
