//! Malformed or unexpected input, to the decoder and to the routing core,
//! gives a typed error or is ignored: never a panic, never a stray message.

use ciborium::value::Value;
use proptest::prelude::*;
use veil::keys::{Block, Chk, RoutingKey, BLOCK_LEN};
use veil::message::{DecodeError, Message, MAX_MESSAGE_LEN};
use veil::routing::{ClientOutcome, ClientToken, RouterConfig};
use veil::sim::harness::Harness;
use veil::sim::topology::Topology;

/// A (0.90) - B (0.20) with B's other neighbours C (0.50) and D (0.70); E is
/// isolated, so it is nobody's neighbour. Indices follow name order:
/// A=0, B=1, C=2, D=3, E=4.
const TOPOLOGY: &str = r#"
edges = [["A","B"], ["B","C"], ["B","D"]]
[nodes]
A = { location = 0.90 }
B = { location = 0.20 }
C = { location = 0.50 }
D = { location = 0.70 }
E = { location = 0.10 }
"#;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const E: usize = 4;
const MAX_HTL: u8 = 18;

fn harness() -> Harness {
    let t = Topology::parse(TOPOLOGY).unwrap();
    let config = RouterConfig {
        max_htl: MAX_HTL,
        ..RouterConfig::default()
    };
    Harness::new(&t, config, 42)
}

/// A block whose key lies next to C's location, so B tries C first, then D.
fn block() -> (Chk, Block) {
    veil::sim::harness::block_near(veil::keys::Location::from_f64(0.5), 0.01)
}

fn other_block() -> (Chk, Block) {
    Chk::encode(b"some other content").unwrap()
}

fn samples() -> Vec<Message> {
    let (chk, block) = block();
    let key = chk.routing;
    vec![
        Message::DataRequest {
            uid: 1,
            key,
            htl: 18,
        },
        Message::DataFound {
            uid: 2,
            block: block.clone(),
        },
        Message::DataNotFound { uid: 3 },
        Message::RouteNotFound { uid: 4, htl: 9 },
        Message::RejectedLoop { uid: 5 },
        Message::RejectedOverload { uid: 6 },
        Message::InsertRequest {
            uid: 7,
            key,
            htl: 3,
            block,
        },
        Message::InsertSucceeded { uid: 8 },
        Message::InsertFailed { uid: u64::MAX },
    ]
}

fn replies(uid: u64) -> Vec<Message> {
    let (_, block) = block();
    vec![
        Message::DataFound { uid, block },
        Message::DataNotFound { uid },
        Message::RouteNotFound { uid, htl: 5 },
        Message::RejectedLoop { uid },
        Message::RejectedOverload { uid },
        Message::InsertSucceeded { uid },
        Message::InsertFailed { uid },
    ]
}

/// A get from A for the test block, run until B has forwarded it to C and
/// waits on C. Returns (harness, token, uid).
fn b_waiting_on_c(place_at_d: bool) -> (Harness, ClientToken, u64) {
    let mut h = harness();
    let (chk, block) = block();
    if place_at_d {
        h.place(D, block);
    }
    let token = h.get(A, chk.routing);
    let uid = h.clients[&token].uid.unwrap();
    assert_eq!(h.run(1), 1); // A -> B delivered; B sends B -> C.
    assert_eq!(h.sent.len(), 2);
    assert_eq!((h.sent[1].from, h.sent[1].to), (B, C));
    assert!(h.router(B).is_handling(uid));
    (h, token, uid)
}

fn quiet(h: &Harness) -> bool {
    h.sent.is_empty() && h.misbehaviour.is_empty()
}

// ---- the decoder ----

#[test]
fn truncated_encodings_of_every_kind_are_errors() {
    for m in samples() {
        let bytes = m.encode();
        let len = bytes.len();
        // Every cut for short messages; for the block-carrying kinds, every
        // cut near both ends and a stride through the block.
        let cuts: Vec<usize> = if len <= 512 {
            (0..len).collect()
        } else {
            (0..256)
                .chain((256..len - 256).step_by(61))
                .chain(len - 256..len)
                .collect()
        };
        for cut in cuts {
            match Message::decode(&bytes[..cut]) {
                Err(DecodeError::Malformed(_)) => {}
                other => panic!("{} cut at {cut}/{len}: {other:?}", m.kind()),
            }
        }
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn unknown_kinds_are_errors() {
    let uid = || vec![(text("uid"), Value::Integer(1.into()))];
    let cases = vec![
        // A kind that does not exist.
        Value::Map(vec![(text("Teleport"), Value::Map(uid()))]),
        // Case matters.
        Value::Map(vec![(text("datanotfound"), Value::Map(uid()))]),
        // A kind given as a bare string, an integer, or nothing.
        text("DataNotFound"),
        Value::Integer(3.into()),
        Value::Map(vec![]),
        // Two kinds at once.
        Value::Map(vec![
            (text("DataNotFound"), Value::Map(uid())),
            (text("RejectedLoop"), Value::Map(uid())),
        ]),
        // A known kind missing its fields, or with mistyped ones.
        Value::Map(vec![(text("DataNotFound"), Value::Map(vec![]))]),
        Value::Map(vec![(
            text("DataNotFound"),
            Value::Map(vec![(text("uid"), text("1"))]),
        )]),
        Value::Map(vec![(
            text("RouteNotFound"),
            Value::Map(vec![
                (text("uid"), Value::Integer(1.into())),
                (text("htl"), Value::Integer(256.into())),
            ]),
        )]),
        Value::Map(vec![(
            text("DataRequest"),
            Value::Map(vec![
                (text("uid"), Value::Integer(1.into())),
                (text("key"), Value::Bytes(vec![0; 31])),
                (text("htl"), Value::Integer(1.into())),
            ]),
        )]),
        Value::Map(vec![(
            text("DataNotFound"),
            Value::Map(vec![(text("uid"), Value::Integer((-1).into()))]),
        )]),
    ];
    for v in cases {
        let bytes = cbor(&v);
        assert!(
            matches!(Message::decode(&bytes), Err(DecodeError::Malformed(_))),
            "{v:?} decoded"
        );
    }
}

#[test]
fn oversized_and_deeply_nested_input_is_refused() {
    let big = vec![0xA1; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        Message::decode(&big),
        Err(DecodeError::TooLong(MAX_MESSAGE_LEN + 1))
    );
    // 10,000 nested arrays: refused by the recursion limit, no stack overflow.
    let nested = vec![0x81; 10_000];
    assert!(matches!(
        Message::decode(&nested),
        Err(DecodeError::Malformed(_))
    ));
    // A block one byte short or long is not a block.
    for len in [BLOCK_LEN - 1, BLOCK_LEN + 1] {
        let v = Value::Map(vec![(
            text("DataFound"),
            Value::Map(vec![
                (text("uid"), Value::Integer(1.into())),
                (text("block"), Value::Bytes(vec![7; len])),
            ]),
        )]);
        assert!(matches!(
            Message::decode(&cbor(&v)),
            Err(DecodeError::Malformed(_))
        ));
    }
}

/// A mutation of a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation, near_head: bool) {
    // Most structure is in the first few dozen bytes; aim there half the time.
    let span = |len: usize| {
        if near_head {
            len.clamp(1, 48)
        } else {
            len.max(1)
        }
    };
    match *m {
        Mutation::Flip(i, b) => {
            let n = span(bytes.len());
            if !bytes.is_empty() {
                bytes[i % n] ^= b;
            }
        }
        Mutation::Set(i, b) => {
            let n = span(bytes.len());
            if !bytes.is_empty() {
                bytes[i % n] = b;
            }
        }
        Mutation::Insert(i, b) => {
            let n = span(bytes.len() + 1);
            bytes.insert(i % n, b);
        }
        Mutation::Remove(i) => {
            let n = span(bytes.len());
            if !bytes.is_empty() {
                bytes.remove(i % n);
            }
        }
        Mutation::Truncate(i) => {
            let n = bytes.len() + 1;
            bytes.truncate(i % n);
        }
    }
}

/// Decode and, if it is a message, feed it to B from each of its neighbours
/// and from a stranger, then let the network settle. Nothing may panic, and
/// anything the core sends still goes to a neighbour only.
fn decode_and_feed(bytes: &[u8]) {
    let Ok(msg) = Message::decode(bytes) else {
        return;
    };
    // A message that decodes re-encodes to itself (the codec is canonical).
    assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
    let mut h = harness();
    for from in [A, C, D, E] {
        h.inject(from, B, msg.clone());
    }
    h.run(10_000);
    for s in &h.sent {
        assert!(h.adjacency[s.from].contains(&s.to));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Regression files would land outside the files this suite owns.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match Message::decode(&bytes) {
            Ok(m) => { decode_and_feed(&bytes); let _ = m; }
            Err(DecodeError::Malformed(_)) | Err(DecodeError::TooLong(_)) => {}
        }
    }

    #[test]
    fn cbor_shaped_random_bytes_never_panic(
        kind in 0usize..9,
        tail in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        // A valid head ({"Kind": ...) followed by garbage reaches deeper into
        // the decoder than uniformly random bytes.
        let head = samples()[kind].encode();
        let cut = head.len().min(2 + samples()[kind].kind().len());
        let mut bytes = head[..cut].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = Message::decode(&bytes);
        decode_and_feed(&bytes);
    }

    #[test]
    fn mutated_valid_encodings_never_panic(
        kind in 0usize..9,
        mutations in proptest::collection::vec(mutation(), 1..4),
        near_head in any::<bool>(),
    ) {
        let mut bytes = samples()[kind].encode();
        for m in &mutations {
            apply(&mut bytes, m, near_head);
        }
        let _ = Message::decode(&bytes);
        decode_and_feed(&bytes);
    }
}

// ---- the routing core ----

#[test]
fn reply_for_an_unknown_uid_is_ignored() {
    for msg in replies(0xdead_beef) {
        let mut h = harness();
        h.inject(C, B, msg.clone());
        assert!(quiet(&h), "{}: {:?}", msg.kind(), h.sent);
        let stats = h.router(B).stats();
        assert_eq!(stats.ignored_replies, 1, "{}", msg.kind());
        assert_eq!(h.router(B).pending_count(), 0);
        assert!(h.stores[B].cache.is_empty(), "{}", msg.kind());
        assert_eq!(h.run(100), 0, "nothing was queued");
    }
}

#[test]
fn reply_from_a_peer_not_waited_on_is_ignored() {
    // The harness is seeded, so every fresh run gets the same uid.
    let (_, _, uid) = b_waiting_on_c(true);
    for msg in replies(uid) {
        // From D (a neighbour B is not waiting on) and from A (upstream).
        for from in [D, A] {
            let (mut h, token, same_uid) = b_waiting_on_c(true);
            assert_eq!(same_uid, uid);
            let sent_before = h.sent.len();
            h.inject(from, B, msg.clone());
            assert_eq!(h.sent.len(), sent_before, "{} from {from}", msg.kind());
            assert!(h.misbehaviour.is_empty());
            assert_eq!(h.router(B).stats().ignored_replies, 1);
            assert!(h.router(B).is_handling(uid), "B still waits on C");
            assert!(h.stores[B].cache.is_empty(), "nothing cached");
            // The request then completes normally: C is a dead end, D holds
            // the block.
            h.run(10_000);
            assert!(
                matches!(h.outcome(token), Some(ClientOutcome::Found(_))),
                "{} from {from}: {:?}",
                msg.kind(),
                h.outcome(token)
            );
            assert_eq!(h.clients[&token].outcomes.len(), 1);
            // B forwarded to C, then D, exactly as without the stray reply.
            let from_b: Vec<_> = h
                .sent
                .iter()
                .filter(|s| s.from == B && s.msg.is_request())
                .map(|s| (s.to, s.msg.htl()))
                .collect();
            assert_eq!(from_b, vec![(C, Some(17)), (D, Some(16))]);
        }
    }
}

#[test]
fn datafound_with_wrong_block_is_dropped_and_search_continues() {
    let (mut h, token, uid) = b_waiting_on_c(true);
    let (good, _) = block();
    let (bad_chk, bad) = other_block();
    assert_ne!(bad_chk.routing, good.routing);
    h.inject(C, B, Message::DataFound { uid, block: bad });
    assert_eq!(h.misbehaviour, vec![(B, C)]);
    // Counted as a failure of C (one hop): B goes on to D with 17 - 1.
    let last = h.sent.last().unwrap();
    assert_eq!((last.from, last.to), (B, D));
    assert_eq!(
        last.msg,
        Message::DataRequest {
            uid,
            key: good.routing,
            htl: 16
        }
    );
    assert!(!h.stores[B].cache.contains_key(&bad_chk.routing));
    h.run(10_000);
    assert!(
        matches!(h.outcome(token), Some(ClientOutcome::Found(b)) if b.verify(&good.routing).is_ok())
    );
    assert_eq!(h.clients[&token].outcomes.len(), 1);
    // C's genuine (late) RouteNotFound is now ignored.
    assert_eq!(h.router(B).stats().ignored_replies, 1);
    // Nobody ever cached or stored the bad block.
    for s in &h.stores {
        assert!(!s.cache.contains_key(&bad_chk.routing));
        assert!(!s.store.contains_key(&bad_chk.routing));
    }
    // A never saw the bad block.
    let to_a: Vec<_> = h.sent.iter().filter(|s| s.to == A).collect();
    assert_eq!(to_a.len(), 1);
    assert!(
        matches!(&to_a[0].msg, Message::DataFound { block, .. } if block.verify(&good.routing).is_ok())
    );
}

#[test]
fn wrong_block_as_the_last_hope_ends_in_a_clean_failure() {
    // Nobody holds the block; C answers with garbage, D is the last candidate.
    let (mut h, token, uid) = b_waiting_on_c(false);
    let (_, bad) = other_block();
    h.inject(C, B, Message::DataFound { uid, block: bad });
    assert_eq!(h.misbehaviour, vec![(B, C)]);
    h.run(10_000);
    let outcomes = &h.clients[&token].outcomes;
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(outcomes[0], ClientOutcome::Failed(_)));
}

#[test]
fn insert_with_mismatched_block_is_refused() {
    let mut h = harness();
    let (chk, _) = block();
    let (_, bad) = other_block();
    h.inject(
        A,
        B,
        Message::InsertRequest {
            uid: 99,
            key: chk.routing,
            htl: 5,
            block: bad,
        },
    );
    assert_eq!(h.misbehaviour, vec![(B, A)]);
    assert!(h.sent.is_empty());
    assert!(h.stores[B].cache.is_empty() && h.stores[B].store.is_empty());
    assert!(!h.router(B).is_handling(99));
    assert_eq!(h.run(100), 0);
}

#[test]
fn request_with_zero_htl_is_misbehaviour() {
    let (chk, good) = block();
    for msg in [
        Message::DataRequest {
            uid: 5,
            key: chk.routing,
            htl: 0,
        },
        Message::InsertRequest {
            uid: 6,
            key: chk.routing,
            htl: 0,
            block: good.clone(),
        },
    ] {
        let mut h = harness();
        // Even a node that holds the block does not answer a zero-HTL get.
        h.place(B, good.clone());
        h.inject(A, B, msg.clone());
        assert_eq!(h.misbehaviour, vec![(B, A)], "{}", msg.kind());
        assert!(h.sent.is_empty(), "{}", msg.kind());
        assert!(
            h.stores[B].cache.is_empty(),
            "{}: nothing cached",
            msg.kind()
        );
        assert_eq!(h.router(B).pending_count(), 0);
    }
}

#[test]
fn htl_above_max_is_clamped() {
    let (chk, good) = block();
    for htl in [MAX_HTL + 1, 100, u8::MAX] {
        let mut h = harness();
        h.inject(
            A,
            B,
            Message::DataRequest {
                uid: 7,
                key: chk.routing,
                htl,
            },
        );
        assert!(h.misbehaviour.is_empty());
        assert_eq!(h.sent.len(), 1);
        assert_eq!((h.sent[0].from, h.sent[0].to), (B, C));
        assert_eq!(h.sent[0].msg.htl(), Some(MAX_HTL - 1), "received {htl}");

        let mut h = harness();
        h.inject(
            A,
            B,
            Message::InsertRequest {
                uid: 8,
                key: chk.routing,
                htl,
                block: good.clone(),
            },
        );
        assert_eq!(h.sent.len(), 1);
        assert_eq!(h.sent[0].msg.htl(), Some(MAX_HTL - 1), "insert {htl}");
        // And the whole clamped run stays within the clamped budget.
        h.run(10_000);
        let inserts = h
            .sent
            .iter()
            .filter(|s| matches!(s.msg, Message::InsertRequest { .. }))
            .count();
        assert!(inserts <= usize::from(MAX_HTL));
    }
}

#[test]
fn message_from_a_non_neighbour_is_ignored() {
    let (chk, good) = block();
    let mut msgs = vec![
        Message::DataRequest {
            uid: 11,
            key: chk.routing,
            htl: 5,
        },
        Message::InsertRequest {
            uid: 12,
            key: chk.routing,
            htl: 5,
            block: good.clone(),
        },
        // Even malformed ones are dropped before they are looked at.
        Message::DataRequest {
            uid: 13,
            key: chk.routing,
            htl: 0,
        },
    ];
    msgs.extend(replies(14));
    for msg in msgs {
        // E exists but is not B's neighbour; 1000 is no node at all.
        for from in [E, 1000] {
            let mut h = harness();
            h.place(B, good.clone());
            h.inject(from, B, msg.clone());
            assert!(quiet(&h), "{} from {from}", msg.kind());
            assert_eq!(h.router(B).stats(), &Default::default());
            assert_eq!(h.stores[B].cache.len(), 0);
        }
    }
    // While B is busy with a request, a stranger's reply does not touch it.
    let (mut h, token, uid) = b_waiting_on_c(true);
    let before = h.sent.len();
    h.inject(E, B, Message::DataNotFound { uid });
    assert_eq!(h.sent.len(), before);
    assert_eq!(h.router(B).stats().ignored_replies, 0);
    h.run(10_000);
    assert!(matches!(h.outcome(token), Some(ClientOutcome::Found(_))));
}

#[test]
fn garbage_key_requests_are_routed_not_crashed() {
    // Keys are opaque 32 bytes: all-zero and all-one keys route like any other.
    for key in [RoutingKey([0; 32]), RoutingKey([0xff; 32])] {
        let mut h = harness();
        h.inject(
            A,
            B,
            Message::DataRequest {
                uid: 21,
                key,
                htl: 3,
            },
        );
        h.run(10_000);
        let to_a: Vec<_> = h.sent.iter().filter(|s| s.to == A).collect();
        assert_eq!(to_a.len(), 1, "exactly one answer to the injector");
        assert!(!matches!(to_a[0].msg, Message::DataFound { .. }));
    }
}

/// A `DataRequest` for uid 31 at htl 9, as CBOR, with `extra` fields.
fn request_with(key: RoutingKey, extra: Vec<(Value, Value)>) -> Vec<u8> {
    let mut fields = vec![
        (text("uid"), Value::Integer(31.into())),
        (text("key"), Value::Bytes(key.0.to_vec())),
        (text("htl"), Value::Integer(9.into())),
    ];
    fields.extend(extra);
    cbor(&Value::Map(vec![(text("DataRequest"), Value::Map(fields))]))
}

#[test]
fn unknown_fields_are_skipped_and_never_forwarded() {
    // A peer tries to smuggle a field naming the originator.
    let (chk, _) = block();
    let key = chk.routing;
    let smuggling = request_with(key, vec![(text("origin"), text("A"))]);
    let msg = Message::decode(&smuggling).expect("unknown fields are skipped");
    assert_eq!(
        msg,
        Message::DataRequest {
            uid: 31,
            key,
            htl: 9
        }
    );
    // B behaves exactly as it does for the same request without the field:
    // the same request, byte for byte, to the same next hop.
    let mut smuggled = harness();
    smuggled.inject(A, B, msg);
    let mut clean = harness();
    let plain = Message::decode(&request_with(key, Vec::new())).expect("plain request");
    clean.inject(A, B, plain);
    assert_eq!(smuggled.sent.len(), 1);
    assert_eq!(smuggled.sent, clean.sent);
    let forwarded = &smuggled.sent[0];
    assert_eq!(
        forwarded.to, C,
        "B forwards to the neighbour closest to the key"
    );
    let expected = Message::DataRequest {
        uid: 31,
        key,
        htl: 8,
    };
    assert_eq!(forwarded.msg.encode(), expected.encode());
}
