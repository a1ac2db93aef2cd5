//! The audit log record: the one definition of a line of `audit.jsonl`
//! ([`AuditLine`]) and of `origin.jsonl` ([`OriginLine`]). The node writes
//! these types ([`crate::audit::log`]) and `veil audit` reads them back
//! ([`crate::audit::load`]); `docs/audit-log.md` describes the same format.
//!
//! Every field has the protocol's own type: peers are [`PeerKey`]s, routing
//! keys [`RoutingKey`]s, message kinds [`MessageKind`]s, operations
//! [`Op`]s. Uids are written by [`format_uid`] as 16 lower-case hex digits.

use serde::{Deserialize, Serialize};

use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::Op;

/// One line of `audit.jsonl`: when, which node, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// Milliseconds since the Unix epoch, the node's wall clock.
    pub ts: u64,
    /// The node that wrote the line.
    pub node: PeerKey,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// What a node saw, named by the line's `event` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A `DataRequest` (`op` get) or `InsertRequest` (`op` put) arrived.
    RequestReceived {
        #[serde(with = "uid_text")]
        uid: Uid,
        #[serde(with = "key_text")]
        key: RoutingKey,
        htl: Htl,
        from: PeerKey,
        op: Op,
    },
    /// This node sent a request, originated or forwarded alike.
    RequestSent {
        #[serde(with = "uid_text")]
        uid: Uid,
        #[serde(with = "key_text")]
        key: RoutingKey,
        htl: Htl,
        to: PeerKey,
        op: Op,
    },
    /// A reply arrived; `htl` only for a kind that carries one.
    ReplyReceived {
        #[serde(with = "uid_text")]
        uid: Uid,
        reply: MessageKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        htl: Option<Htl>,
        from: PeerKey,
    },
    /// This node sent a reply.
    ReplySent {
        #[serde(with = "uid_text")]
        uid: Uid,
        reply: MessageKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        htl: Option<Htl>,
        to: PeerKey,
    },
    /// A verified block entered the cache.
    BlockCached {
        #[serde(with = "key_text")]
        key: RoutingKey,
    },
    /// A block entered the store.
    BlockStored {
        #[serde(with = "key_text")]
        key: RoutingKey,
    },
    /// An authenticated link came up.
    LinkUp { peer: PeerKey },
    /// A link went down.
    LinkDown { peer: PeerKey },
    /// An event this version does not know (written by a later one).
    #[serde(other)]
    Other,
}

/// One line of `origin.jsonl`: the local client started or ended a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginLine {
    /// Milliseconds since the Unix epoch, the node's wall clock.
    pub ts: u64,
    #[serde(with = "uid_text")]
    pub uid: Uid,
    #[serde(flatten)]
    pub event: OriginEvent,
}

/// Start or end of a local request (told apart by their fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OriginEvent {
    /// The request ended: `found`, `inserted` or `failed: <reason>`.
    Finished { outcome: String },
    /// The request started.
    Started {
        #[serde(with = "key_text")]
        key: RoutingKey,
        op: Op,
    },
}

/// A uid as the logs write it: 16 lower-case hex digits.
pub fn format_uid(uid: Uid) -> String {
    format!("{uid:016x}")
}

/// A uid as the logs write it (1 to 16 hex digits).
pub fn parse_uid(text: &str) -> Option<Uid> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uid::from_str_radix(text, 16).ok()
}

/// The request kind of an operation.
pub fn request_kind(op: Op) -> MessageKind {
    match op {
        Op::Get => MessageKind::DataRequest,
        Op::Put => MessageKind::InsertRequest,
    }
}

/// Uids as text, through [`format_uid`] and [`parse_uid`].
mod uid_text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use crate::message::Uid;

    pub fn serialize<S: Serializer>(uid: &Uid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_uid(*uid))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uid, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_uid(&text)
            .ok_or_else(|| D::Error::custom(format!("uid {text:?} is not a hex request ID")))
    }
}

/// Routing keys as base64url text (their CBOR form is bytes).
mod key_text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use crate::keys::RoutingKey;

    pub fn serialize<S: Serializer>(key: &RoutingKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_base64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RoutingKey, D::Error> {
        let text = String::deserialize(d)?;
        RoutingKey::from_base64(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(b: u8) -> PeerKey {
        PeerKey([b; 32])
    }

    #[test]
    fn a_request_line_has_the_documented_fields_in_order() {
        let line = AuditLine {
            ts: 1_764_072_000_123,
            node: peer(1),
            event: AuditEvent::RequestReceived {
                uid: 0x9f3a_0c1d_2e4b_5a69,
                key: RoutingKey([2; 32]),
                htl: 17,
                from: peer(3),
                op: Op::Get,
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        let want = format!(
            "{{\"ts\":1764072000123,\"node\":\"{}\",\"event\":\"request_received\",\
             \"uid\":\"9f3a0c1d2e4b5a69\",\"key\":\"{}\",\"htl\":17,\"from\":\"{}\",\"op\":\"get\"}}",
            peer(1),
            RoutingKey([2; 32]).to_base64(),
            peer(3)
        );
        assert_eq!(text, want);
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
    }

    #[test]
    fn a_reply_writes_htl_only_when_it_has_one() {
        let mut line = AuditLine {
            ts: 5,
            node: peer(1),
            event: AuditEvent::ReplySent {
                uid: 1,
                reply: MessageKind::DataFound,
                htl: None,
                to: peer(2),
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(!text.contains("htl"), "{text}");
        assert!(text.contains("\"reply\":\"DataFound\""), "{text}");
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
        line.event = AuditEvent::ReplyReceived {
            uid: 1,
            reply: MessageKind::RouteNotFound,
            htl: Some(4),
            from: peer(2),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.ends_with(&format!(",\"htl\":4,\"from\":\"{}\"}}", peer(2))));
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
    }

    #[test]
    fn an_unknown_event_is_other_and_a_known_one_needs_its_fields() {
        let text = format!(
            "{{\"ts\":1,\"node\":\"{}\",\"event\":\"tunnel_built\"}}",
            peer(1)
        );
        let line: AuditLine = serde_json::from_str(&text).unwrap();
        assert_eq!(line.event, AuditEvent::Other);
        let text = format!(
            "{{\"ts\":1,\"node\":\"{}\",\"event\":\"link_up\"}}",
            peer(1)
        );
        let err = serde_json::from_str::<AuditLine>(&text).unwrap_err();
        assert!(err.to_string().contains("`peer`"), "{err}");
    }

    #[test]
    fn origin_lines_round_trip_both_shapes() {
        let start = OriginLine {
            ts: 7,
            uid: 0xab,
            event: OriginEvent::Started {
                key: RoutingKey([9; 32]),
                op: Op::Put,
            },
        };
        let text = serde_json::to_string(&start).unwrap();
        assert!(text.starts_with("{\"ts\":7,\"uid\":\"00000000000000ab\",\"key\":"));
        assert!(text.ends_with(",\"op\":\"put\"}"), "{text}");
        assert_eq!(serde_json::from_str::<OriginLine>(&text).unwrap(), start);
        let end = OriginLine {
            ts: 8,
            uid: 0xab,
            event: OriginEvent::Finished {
                outcome: "failed: route not found".into(),
            },
        };
        let text = serde_json::to_string(&end).unwrap();
        assert_eq!(
            text,
            "{\"ts\":8,\"uid\":\"00000000000000ab\",\"outcome\":\"failed: route not found\"}"
        );
        assert_eq!(serde_json::from_str::<OriginLine>(&text).unwrap(), end);
    }

    #[test]
    fn uids_are_one_to_sixteen_hex_digits() {
        assert_eq!(parse_uid("ab"), Some(0xab));
        assert_eq!(parse_uid(&format_uid(u64::MAX)), Some(u64::MAX));
        for bad in ["", "0x12", "g", "00000000000000000"] {
            assert_eq!(parse_uid(bad), None, "{bad}");
        }
        let text = r#"{"ts":1,"uid":"zz","outcome":"found"}"#;
        assert!(serde_json::from_str::<OriginLine>(text).is_err());
    }
}
