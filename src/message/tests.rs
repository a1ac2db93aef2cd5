//! Tests of the message codec ([`super`]).
use super::*;
use crate::keys::{Chk, Location};

fn samples() -> Vec<Message> {
    let (chk, block) = Chk::encode(b"sample").unwrap();
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
            block: block.clone(),
        },
        Message::InsertSucceeded { uid: 8 },
        Message::InsertFailed { uid: u64::MAX },
        Message::InsertCollision {
            uid: 9,
            block: block.clone(),
        },
        Message::TunnelBuild {
            tunnel: 1 << 63,
            ephemeral: Ephemeral([9; 32]),
        },
        Message::TunnelBuilt {
            tunnel: u64::MAX,
            ephemeral: Ephemeral([0; 32]),
        },
        Message::TunnelForward {
            tunnel: 1 << 63,
            cell: Cell::from_bytes(vec![0xa5; SMALL_CELL]).unwrap(),
        },
        Message::TunnelBackward {
            tunnel: 1 << 63,
            cell: Cell::from_bytes(vec![0x5a; BIG_CELL]).unwrap(),
        },
        Message::TunnelDown { tunnel: 1 << 63 },
    ]
}

#[test]
fn every_kind_round_trips() {
    for m in samples() {
        let bytes = m.encode();
        assert!(bytes.len() <= MAX_MESSAGE_LEN);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }
}

#[test]
fn truncated_input_is_an_error() {
    for m in samples() {
        let bytes = m.encode();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Message::decode(&bytes[..cut]).is_err(),
                "{} cut {cut}",
                m.kind()
            );
        }
    }
}

#[test]
fn unknown_kind_and_trailing_bytes_are_errors() {
    let mut unknown = Vec::new();
    ciborium::ser::into_writer(&serde_json::json!({"Teleport": {"uid": 1}}), &mut unknown).unwrap();
    assert!(matches!(
        Message::decode(&unknown),
        Err(DecodeError::Malformed(_))
    ));
    let mut bytes = Message::DataNotFound { uid: 1 }.encode();
    bytes.push(0);
    assert!(Message::decode(&bytes).is_err());
    assert_eq!(
        Message::decode(&vec![0u8; MAX_MESSAGE_LEN + 1]),
        Err(DecodeError::TooLong(MAX_MESSAGE_LEN + 1))
    );
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // {"DataFound": {"uid": 1, "block": <byte string claiming 2^63 bytes>}}
    let mut bytes = Vec::new();
    bytes.push(0xA1);
    bytes.push(0x69);
    bytes.extend_from_slice(b"DataFound");
    bytes.push(0xA2);
    bytes.extend_from_slice(&[0x63, b'u', b'i', b'd', 0x01]);
    bytes.extend_from_slice(&[0x65, b'b', b'l', b'o', b'c', b'k']);
    bytes.push(0x5B);
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert!(Message::decode(&bytes).is_err());
}

#[test]
fn peer_frames_round_trip_and_reject_garbage() {
    let hello = PeerFrame::Hello {
        location: Location(42),
    };
    assert_eq!(PeerFrame::decode(&hello.encode()).unwrap(), hello);
    let msg = PeerFrame::Routing(Message::RejectedLoop { uid: 7 });
    assert_eq!(PeerFrame::decode(&msg.encode()).unwrap(), msg);
    let malformed = |m| Err(DecodeError::Malformed(m));
    assert_eq!(PeerFrame::decode(&[]), malformed(Malformed::EmptyFrame));
    assert_eq!(
        PeerFrame::decode(&[9, 1, 2]),
        malformed(Malformed::UnknownFrameTag(9))
    );
    assert_eq!(
        PeerFrame::decode(&[TAG_HELLO, 1, 2]),
        malformed(Malformed::HelloLength(2))
    );
    assert!(PeerFrame::decode(&[TAG_ROUTING, 0xff]).is_err());
    let mut trailing = msg.encode();
    trailing.push(0);
    assert_eq!(
        PeerFrame::decode(&trailing),
        malformed(Malformed::TrailingBytes(1))
    );
}

#[test]
fn a_wrong_sized_block_is_refused() {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(
        &serde_json::json!({"DataFound": {"uid": 1, "block": []}}),
        &mut bytes,
    )
    .unwrap();
    assert!(Message::decode(&bytes).is_err());
}

#[test]
fn a_message_carrying_a_block_decodes_as_the_small_path_does() {
    let (_, block) = Chk::encode(&[9u8; 5000]).unwrap();
    let msg = Message::DataFound { uid: 3, block };
    let bytes = msg.encode();
    assert!(bytes.len() > SMALL_DECODE);
    // The whole-message scratch and ciborium's own 4 KiB one agree.
    let small: Message = decode_cbor(&bytes, MAX_MESSAGE_LEN, 16).unwrap();
    assert_eq!(Message::decode(&bytes).unwrap(), small);
    assert_eq!(small, msg);
    // Trailing bytes, truncation and garbage are refused, never a panic.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Message::decode(&trailing),
        Err(DecodeError::Malformed(Malformed::TrailingBytes(1)))
    );
    assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(Message::decode(&vec![0x9f; SMALL_DECODE + 1]).is_err());
    assert!(Message::decode(&vec![0x5b; MAX_MESSAGE_LEN]).is_err());
}
