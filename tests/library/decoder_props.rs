//! Property tests for every wire decoder: routing messages, peer frames, link
//! frames, manifests, CHK URIs and client frames.
//!
//! Each decoder gets random bytes and mutated valid encodings (bit flips,
//! inserted, deleted and overwritten bytes, truncation). Nothing may panic;
//! valid encodings round-trip; anything a decoder accepts re-encodes
//! consistently (decode, encode, decode gives the same value, and encoding
//! is a fixed point). The link properties run real Noise links over
//! `tokio::io::duplex` with a tampering middle: whatever it does to the wire,
//! the reader yields exactly a prefix of what was sent, then a clean end or
//! an error.
//!
//! The same oracles drive the libFuzzer targets in `fuzz/`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use rand::SeedableRng;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use veil::client::{read_frame, write_frame, ClientRequest, ClientResponse, MAX_CLIENT_FRAME};
use veil::content::{
    decode_manifest, encode_manifest, Manifest, ManifestEntry, MANIFEST_VERSION,
    MANIFEST_VERSION_V1, MAX_DEPTH, MAX_FANOUT, MAX_FILE_LEN,
};
use veil::identity::{Identity, PeerKey};
use veil::keys::{Block, Chk, Location, RoutingKey, BLOCK_DATA_LEN};
use veil::link::{accept, connect, LinkConfig, LinkError, MAX_PAYLOAD, SMALL_PAYLOAD};
use veil::message::{Message, PeerFrame, MAX_MESSAGE_LEN};

// ---------------------------------------------------------------------------
// Mutations

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..4)
}

/// Apply `m`, aiming at the first `head` bytes (where most of the structure
/// is) when `head` is non-zero.
fn apply(bytes: &mut Vec<u8>, m: &Mutation, head: usize) {
    let span = |len: usize| {
        if head > 0 {
            len.clamp(1, head)
        } else {
            len.max(1)
        }
    };
    match *m {
        Mutation::Flip(i, b) => {
            if !bytes.is_empty() {
                let n = span(bytes.len());
                bytes[i % n] ^= b;
            }
        }
        Mutation::Set(i, b) => {
            if !bytes.is_empty() {
                let n = span(bytes.len());
                bytes[i % n] = b;
            }
        }
        Mutation::Insert(i, b) => {
            let n = span(bytes.len() + 1);
            bytes.insert(i % n, b);
        }
        Mutation::Delete(i) => {
            if !bytes.is_empty() {
                let n = span(bytes.len());
                bytes.remove(i % n);
            }
        }
        Mutation::Truncate(i) => {
            let n = bytes.len() + 1;
            bytes.truncate(i % n);
        }
    }
}

fn mutated(bytes: &[u8], ms: &[Mutation], near_head: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in ms {
        apply(&mut out, m, if near_head { 64 } else { 0 });
    }
    out
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

// ---------------------------------------------------------------------------
// Shared values

/// Two real blocks (building one costs a 32 KiB encryption, so only two).
fn blocks() -> &'static [Block; 2] {
    static BLOCKS: std::sync::OnceLock<[Block; 2]> = std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| {
        [
            Chk::encode(b"decoder props one").unwrap().1,
            Chk::encode(b"decoder props two").unwrap().1,
        ]
    })
}

fn routing_key() -> impl Strategy<Value = RoutingKey> {
    any::<[u8; 32]>().prop_map(RoutingKey)
}

fn block() -> impl Strategy<Value = Block> {
    (0usize..2).prop_map(|i| blocks()[i].clone())
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), routing_key(), any::<u8>())
            .prop_map(|(uid, key, htl)| Message::DataRequest { uid, key, htl }),
        (any::<u64>(), block()).prop_map(|(uid, block)| Message::DataFound { uid, block }),
        any::<u64>().prop_map(|uid| Message::DataNotFound { uid }),
        (any::<u64>(), any::<u8>()).prop_map(|(uid, htl)| Message::RouteNotFound { uid, htl }),
        any::<u64>().prop_map(|uid| Message::RejectedLoop { uid }),
        any::<u64>().prop_map(|uid| Message::RejectedOverload { uid }),
        (any::<u64>(), routing_key(), any::<u8>(), block()).prop_map(|(uid, key, htl, block)| {
            Message::InsertRequest {
                uid,
                key,
                htl,
                block,
            }
        }),
        any::<u64>().prop_map(|uid| Message::InsertSucceeded { uid }),
        any::<u64>().prop_map(|uid| Message::InsertFailed { uid }),
    ]
}

/// Small messages only (no block): cheap to mutate anywhere.
fn small_message() -> impl Strategy<Value = Message> {
    message().prop_filter("no block", |m| {
        !matches!(m, Message::DataFound { .. } | Message::InsertRequest { .. })
    })
}

fn chk_from(routing: [u8; 32], decryption: [u8; 32]) -> Chk {
    format!(
        "CHK@{},{}",
        URL_SAFE_NO_PAD.encode(routing),
        URL_SAFE_NO_PAD.encode(decryption)
    )
    .parse()
    .expect("a URI built from two 32-byte keys parses")
}

fn chk() -> impl Strategy<Value = Chk> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, d)| chk_from(r, d))
}

// ---------------------------------------------------------------------------
// Oracles

/// Anything `Message::decode` accepts re-encodes consistently.
fn check_message(bytes: &[u8]) -> Option<Message> {
    let msg = Message::decode(bytes).ok()?;
    let again = msg.encode();
    assert!(again.len() <= MAX_MESSAGE_LEN);
    assert_eq!(Message::decode(&again).unwrap(), msg);
    assert_eq!(Message::decode(&again).unwrap().encode(), again);
    Some(msg)
}

fn check_peer_frame(bytes: &[u8]) -> Option<PeerFrame> {
    let frame = PeerFrame::decode(bytes).ok()?;
    let again = frame.encode();
    assert_eq!(PeerFrame::decode(&again).unwrap(), frame);
    if let PeerFrame::Hello { .. } = frame {
        assert_eq!(again, bytes, "a hello has exactly one encoding");
    }
    Some(frame)
}

/// Anything `decode_manifest` accepts meets the documented checks, fits in
/// a block when re-encoded, and round-trips.
fn check_manifest(bytes: &[u8]) -> Option<Manifest> {
    let m = decode_manifest(bytes).ok()?;
    assert!(m.depth <= MAX_DEPTH);
    assert!((1..=veil::content::manifest::max_fanout(m.version)).contains(&m.entries.len()));
    // Version 2 roots state the file's length in `fec`; `length` also
    // counts check blocks.
    assert!(m.fec.map_or(m.length, |f| f.file_length) <= MAX_FILE_LEN);
    if let Some(fec) = m.fec {
        assert_eq!(veil::content::Layout::new(fec).stored_len(), m.length);
    }
    assert!(m.entries.iter().all(|e| e.length > 0));
    assert_eq!(m.entries.iter().map(|e| e.length).sum::<u64>(), m.length);
    let again = encode_manifest(&m);
    assert!(again.len() <= BLOCK_DATA_LEN, "{} bytes", again.len());
    assert_eq!(decode_manifest(&again).unwrap(), m);
    assert_eq!(encode_manifest(&decode_manifest(&again).unwrap()), again);
    Some(m)
}

/// A parsed URI prints back as the trimmed input and re-parses equal.
fn check_uri(text: &str) -> Option<Chk> {
    let chk = text.parse::<Chk>().ok()?;
    let uri = chk.to_uri();
    assert_eq!(uri.parse::<Chk>().unwrap(), chk);
    assert_eq!(uri, text.trim(), "a key has exactly one URI");
    Some(chk)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

async fn encode_frame<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, value).await.unwrap();
    out
}

/// Read frames of `T` from `bytes` until the end or an error; every frame
/// read re-encodes to a fixed point. Returns the re-encoded frames and the
/// final result (`Ok(())` for a clean end).
async fn read_all<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
) -> (Vec<Vec<u8>>, Result<(), veil::client::ClientError>) {
    let mut reader = bytes;
    let mut frames = Vec::new();
    loop {
        match read_frame::<_, T>(&mut reader).await {
            Ok(Some(value)) => {
                let once = encode_frame(&value).await;
                assert!(once.len() <= 4 + MAX_CLIENT_FRAME);
                let mut r = once.as_slice();
                let back: T = read_frame(&mut r).await.unwrap().unwrap();
                assert!(r.is_empty());
                assert_eq!(encode_frame(&back).await, once);
                frames.push(once);
                assert!(frames.len() <= bytes.len() / 4, "frames without input");
            }
            Ok(None) => return (frames, Ok(())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Link plumbing: a real handshake over duplex streams through a middle that
// relays the handshake, captures what the initiator sends, and feeds the
// responder whatever the test makes of it.

fn identities() -> &'static (Identity, Identity) {
    static IDS: std::sync::OnceLock<(Identity, Identity)> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xdec0de);
        (Identity::generate(&mut rng), Identity::generate(&mut rng))
    })
}

/// Handshake wire bytes, `u16` prefixes included (Noise IK): `-> e, es,
/// s, ss, {ts}` to the responder, `<- e, ee, se` back.
const HS_TO_RESPONDER: usize = 2 + veil::link::handshake::HS_MSG1_LEN;
const HS_TO_INITIATOR: usize = 2 + veil::link::handshake::HS_MSG2_LEN;

async fn relay_handshake(to_i: &mut DuplexStream, to_r: &mut DuplexStream) {
    let mut buf = [0u8; HS_TO_RESPONDER + HS_TO_INITIATOR];
    to_i.read_exact(&mut buf[..HS_TO_RESPONDER]).await.unwrap();
    to_r.write_all(&buf[..HS_TO_RESPONDER]).await.unwrap();
    to_r.read_exact(&mut buf[..HS_TO_INITIATOR]).await.unwrap();
    to_i.write_all(&buf[..HS_TO_INITIATOR]).await.unwrap();
}

/// What the responder's reader made of the wire.
#[derive(Debug)]
struct Received {
    payloads: Vec<Vec<u8>>,
    end: Result<(), LinkError>,
    /// The wire the reader saw was exactly what the writer sent.
    untouched: bool,
}

/// Send `payloads` over a fresh link, let `tamper` rewrite the wire bytes,
/// and read everything back. Checks the link oracle on the way.
fn link_round(payloads: &[Vec<u8>], tamper: impl FnOnce(&mut Vec<u8>)) -> Received {
    runtime().block_on(async {
        let (ia, ib) = identities();
        let cfg = LinkConfig::default();
        let (a_io, mut mid_i) = tokio::io::duplex(1 << 20);
        let (b_io, mut mid_r) = tokio::io::duplex(1 << 20);
        let want_a = ia.public();
        let want_b = ib.public();
        let allowed = move |k: &PeerKey| *k == want_a;
        let (a, b, ()) = tokio::join!(
            connect(a_io, ia, &want_b, &cfg),
            accept(b_io, ib, &allowed, &cfg),
            relay_handshake(&mut mid_i, &mut mid_r),
        );
        let (mut a, mut b) = (a.unwrap(), b.unwrap());

        for p in payloads {
            a.send(p).await.unwrap();
        }
        a.close().await.unwrap();
        let mut original = Vec::new();
        mid_i.read_to_end(&mut original).await.unwrap();
        let mut wire = original.clone();
        tamper(&mut wire);
        let untouched = wire == original;

        let feed = async move {
            mid_r.write_all(&wire).await.unwrap();
            mid_r.shutdown().await.unwrap();
            mid_r
        };
        let read = async {
            let mut got = Vec::new();
            let end = loop {
                match b.recv().await {
                    Ok(Some(p)) => got.push(p),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            (got, end)
        };
        let (_mid, (got, end)) = tokio::join!(feed, read);

        // Never a payload that was not sent, never out of order.
        assert!(got.len() <= payloads.len());
        for (i, p) in got.iter().enumerate() {
            assert!(p == &payloads[i], "payload #{i} differs from what was sent");
        }
        if end.is_err() {
            assert!(matches!(b.recv().await, Err(LinkError::Closed)));
        }
        if untouched {
            assert!(end.is_ok() && got == payloads, "untouched wire: {end:?}");
        }
        Received {
            payloads: got,
            end,
            untouched,
        }
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (0..=SMALL_PAYLOAD, any::<u8>()),
        1 => (SMALL_PAYLOAD + 1..=MAX_PAYLOAD, any::<u8>()),
    ]
    .prop_map(|(len, seed)| {
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // --- routing messages ---

    #[test]
    fn message_random_bytes(b in bytes(300)) {
        check_message(&b);
    }

    #[test]
    fn message_valid_round_trips_and_truncation_fails(m in message(), cut in any::<usize>()) {
        let enc = m.encode();
        prop_assert!(enc.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(Message::decode(&enc).unwrap(), m);
        // A strict prefix of one definite-length CBOR item is never complete.
        let cut = cut % enc.len();
        prop_assert!(Message::decode(&enc[..cut]).is_err());
    }

    #[test]
    fn message_mutated(m in message(), ms in mutations(), near_head in any::<bool>()) {
        check_message(&mutated(&m.encode(), &ms, near_head));
    }

    // --- peer frames ---

    #[test]
    fn peer_frame_random_bytes(tag in 0u8..4, b in bytes(200)) {
        let mut input = vec![tag];
        input.extend_from_slice(&b);
        check_peer_frame(&input);
        check_peer_frame(&b);
    }

    #[test]
    fn peer_frame_valid_and_mutated(
        frame in prop_oneof![
            any::<u64>().prop_map(|l| PeerFrame::Hello { location: Location(l) }),
            message().prop_map(PeerFrame::Routing),
        ],
        ms in mutations(),
        near_head in any::<bool>(),
    ) {
        let enc = frame.encode();
        prop_assert_eq!(PeerFrame::decode(&enc).unwrap(), frame);
        for cut in [0, 1, enc.len() - 1] {
            prop_assert!(PeerFrame::decode(&enc[..cut]).is_err());
        }
        check_peer_frame(&mutated(&enc, &ms, near_head));
    }

    // --- manifests ---

    #[test]
    fn manifest_random_bytes(b in bytes(400)) {
        check_manifest(&b);
    }

    #[test]
    fn manifest_mutated(
        m in manifest(),
        ms in mutations(),
        near_head in any::<bool>(),
    ) {
        let enc = encode_manifest(&m);
        prop_assert!(enc.len() <= BLOCK_DATA_LEN);
        prop_assert_eq!(&decode_manifest(&enc).unwrap(), &m);
        prop_assert!(decode_manifest(&enc[..enc.len() - 1]).is_err());
        check_manifest(&mutated(&enc, &ms, near_head));
    }

    // --- URIs ---

    #[test]
    fn uri_random_text(s in "\\PC{0,120}") {
        check_uri(&s);
    }

    #[test]
    fn uri_shaped_text(s in "[ \t]{0,2}CHK@[A-Za-z0-9_=+/-]{41,45},[A-Za-z0-9_=+/-]{41,45}[ \n]{0,2}") {
        check_uri(&s);
    }

    #[test]
    fn uri_valid_and_mutated(c in chk(), ms in mutations(), pad in "[ \t\n]{0,3}") {
        let uri = c.to_uri();
        prop_assert_eq!(check_uri(&uri).unwrap(), c.clone());
        prop_assert_eq!(check_uri(&format!("{pad}{uri}{pad}")).unwrap(), c);
        let bad = mutated(uri.as_bytes(), &ms, false);
        check_uri(&String::from_utf8_lossy(&bad));
    }

    // --- client frames ---

    #[test]
    fn client_frame_random_bytes(b in bytes(300)) {
        runtime().block_on(async {
            let _ = read_all::<ClientRequest>(&b).await;
            let _ = read_all::<ClientResponse>(&b).await;
        });
    }

    #[test]
    fn client_frame_valid_and_mutated(
        req in client_request(),
        ms in mutations(),
        near_head in any::<bool>(),
    ) {
        runtime().block_on(async {
            let enc = encode_frame(&req).await;
            // Valid: exactly one frame, the same encoding, then a clean end.
            let (frames, end) = read_all::<ClientRequest>(&enc).await;
            assert!(end.is_ok());
            assert_eq!(frames, vec![enc.clone()]);
            // Truncated past the header: an error, never a frame.
            for cut in [4, enc.len() - 1] {
                let (frames, end) = read_all::<ClientRequest>(&enc[..cut]).await;
                assert!(frames.is_empty() && end.is_err(), "cut at {cut}");
            }
            // Truncated inside the header: an error too, not a clean end.
            for cut in 1..4 {
                let (frames, end) = read_all::<ClientRequest>(&enc[..cut]).await;
                assert!(frames.is_empty() && end.is_err(), "cut at {cut}");
            }
            let _ = read_all::<ClientRequest>(&mutated(&enc, &ms, near_head)).await;
        });
    }
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        0..=MAX_DEPTH,
        prop_oneof![4 => 1usize..6, 1 => Just(MAX_FANOUT)],
        proptest::option::of(any::<[u8; 32]>()),
        any::<u64>(),
        chk(),
    )
        .prop_map(|(depth, n, sha256, seed, chk)| {
            let mut cap = BLOCK_DATA_LEN as u64;
            for _ in 0..depth {
                cap = cap.saturating_mul(MAX_FANOUT as u64);
            }
            let cap = cap.min(MAX_FILE_LEN / n as u64);
            let mut state = seed;
            let entries: Vec<ManifestEntry> = (0..n)
                .map(|i| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Mostly the widest lengths, to stress the size bound.
                    let length = if i % 3 == 0 { cap } else { 1 + state % cap };
                    ManifestEntry {
                        chk: chk.clone(),
                        length,
                    }
                })
                .collect();
            // A version-2 root also needs a layout that matches its
            // length: roots here are version 1, children version 2.
            Manifest {
                version: if sha256.is_some() {
                    MANIFEST_VERSION_V1
                } else {
                    MANIFEST_VERSION
                },
                length: entries.iter().map(|e| e.length).sum(),
                sha256,
                depth,
                entries,
                fec: None,
                checks: Vec::new(),
            }
        })
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        routing_key().prop_map(|key| ClientRequest::Get { key }),
        block().prop_map(|block| ClientRequest::Insert { block }),
        Just(ClientRequest::Status),
        block().prop_map(|block| ClientRequest::Place { block }),
    ]
}

// Link properties: each case is a full handshake plus up to ~100 KiB of
// frames, so fewer cases (about a millisecond each).
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn link_untouched_wire_delivers_everything(ps in proptest::collection::vec(payload(), 0..4)) {
        let r = link_round(&ps, |_| {});
        prop_assert!(r.untouched && r.end.is_ok());
        prop_assert_eq!(r.payloads, ps);
    }

    #[test]
    fn link_mutated_wire_gives_a_prefix_or_an_error(
        ps in proptest::collection::vec(payload(), 1..4),
        ms in mutations(),
        near_head in any::<bool>(),
    ) {
        let r = link_round(&ps, |wire| *wire = mutated(wire, &ms, near_head));
        if !r.untouched {
            // Anything done to the wire loses at least the frame it touched.
            prop_assert!(r.end.is_err() || r.payloads.len() < ps.len());
        }
    }

    #[test]
    fn link_random_wire(prefix in bytes(64), ps in proptest::collection::vec(payload(), 0..2)) {
        // Garbage in front of valid frames, including plausible length
        // prefixes (0x0200 and 0x8400 are the two frame sizes).
        let r = link_round(&ps, |wire| {
            let mut w = prefix.clone();
            w.extend_from_slice(wire);
            *wire = w;
        });
        if !prefix.is_empty() {
            prop_assert!(r.end.is_err());
            prop_assert!(r.payloads.is_empty());
        }
    }

    #[test]
    fn link_small_message_frames(m in small_message(), ms in mutations()) {
        // A peer frame carried in a link frame, mutated on the wire: either
        // lost, or delivered intact and decodes to the same frame.
        let frame = PeerFrame::Routing(m).encode();
        let r = link_round(std::slice::from_ref(&frame), |wire| {
            *wire = mutated(wire, &ms, false)
        });
        for p in &r.payloads {
            prop_assert_eq!(check_peer_frame(p).unwrap(), PeerFrame::decode(&frame).unwrap());
        }
    }
}
