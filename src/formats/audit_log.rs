//! The audit log record: the one definition of a line of `audit.jsonl`
//! ([`AuditLine`]) and of `origin.jsonl` ([`OriginLine`]). The node writes
//! these types ([`crate::audit::log`]) and `veil audit` reads them back
//! (`crate::audit::load`); `docs/audit-log.md` describes the same format.
//!
//! Every field has the protocol's own type: peers are [`PeerKey`]s, routing
//! keys [`RoutingKey`]s, message kinds [`MessageKind`]s, operations
//! [`Op`]s. Flows (today: request uids) are written by [`format_uid`] as 16
//! lower-case hex digits. Times are microseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::{Htl, MessageKind, Uid};
use crate::routing::{ClientOutcome, Op};

/// The identifier of a request on one link (today the request's uid; a
/// tunnel id once tunnels exist), written as hex.
pub type Flow = u64;

/// One line of `audit.jsonl`: when, which node, and what it saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditLine {
    /// Microseconds since the Unix epoch, the node's wall clock.
    pub ts_us: u64,
    /// The node that wrote the line.
    pub node: PeerKey,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// One message on a link, as the node that sent or received it saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageRecord {
    pub kind: MessageKind,
    /// The neighbour it came from (`recv`) or went to (`send`).
    pub peer: PeerKey,
    /// The request (or tunnel) it belongs to on that link.
    #[serde(with = "uid_text")]
    #[schemars(with = "super::text::Uid")]
    pub flow: Flow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htl: Option<Htl>,
    /// The one routing key the message carries, if it carries exactly one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_key_text"
    )]
    #[schemars(with = "Option<super::text::Key>")]
    pub key: Option<RoutingKey>,
    /// The routing keys a message carrying several lists (a batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "keys_text")]
    #[schemars(with = "Vec<super::text::Key>")]
    pub keys: Vec<RoutingKey>,
    /// Bytes of cells and blocks the message carries: its size on the
    /// link, less a header of a few dozen bytes (absent in logs of older
    /// versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u32>,
}

impl MessageRecord {
    /// A message carrying at most one key.
    pub fn new(
        kind: MessageKind,
        peer: PeerKey,
        flow: Flow,
        htl: Option<Htl>,
        key: Option<RoutingKey>,
    ) -> MessageRecord {
        MessageRecord {
            kind,
            peer,
            flow,
            htl,
            key,
            keys: Vec::new(),
            bytes: None,
        }
    }

    /// Every routing key the message carries (`key` and `keys`).
    pub fn all_keys(&self) -> impl Iterator<Item = &RoutingKey> {
        self.key.iter().chain(self.keys.iter())
    }
}

/// What a node saw, named by the line's `event` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A message arrived from a neighbour.
    Recv(MessageRecord),
    /// This node sent a message to a neighbour (originated or forwarded alike).
    Send(MessageRecord),
    /// A verified block entered the cache.
    BlockCached {
        #[serde(with = "key_text")]
        #[schemars(with = "super::text::Key")]
        key: RoutingKey,
    },
    /// A block entered the store.
    BlockStored {
        #[serde(with = "key_text")]
        #[schemars(with = "super::text::Key")]
        key: RoutingKey,
    },
    /// An authenticated link came up; `location` is the location the peer
    /// announced (public: every neighbour learns it).
    LinkUp {
        peer: PeerKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<f64>,
    },
    /// A link went down.
    LinkDown { peer: PeerKey },
    /// A neighbour announced a new location (it swapped; public to every
    /// neighbour, as the first one was).
    NeighbourMoved { peer: PeerKey, location: f64 },
    /// As a tunnel's exit, this node opened a cell holding these routing
    /// keys (or a block with the one key) on the tunnel `flow` from `peer`:
    /// the only place a tunnel's keys appear in any log.
    TunnelExit {
        peer: PeerKey,
        #[serde(with = "uid_text")]
        #[schemars(with = "super::text::Uid")]
        flow: Flow,
        #[serde(with = "keys_text")]
        #[schemars(with = "Vec<super::text::Key>")]
        keys: Vec<RoutingKey>,
    },
    /// The rules this node routes by from now on: written when the node
    /// starts and whenever they change (a testnet compares rules on one
    /// set of locations). The audit's HTL bound depends on them.
    RoutingRules {
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
        /// Where inserts end (absent in logs written before it was
        /// recorded: `walk`).
        #[serde(default)]
        insert_end: crate::routing::InsertEnd,
    },
    /// An event this version does not know (written by a later one).
    #[serde(other)]
    Other,
}

/// One line of `origin.jsonl`: ground truth about the local client's own
/// requests. Never read as a signal, only to label observations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OriginLine {
    /// Microseconds since the Unix epoch, the node's wall clock.
    pub ts_us: u64,
    #[serde(with = "uid_text")]
    #[schemars(with = "super::text::Uid")]
    pub flow: Flow,
    #[serde(flatten)]
    pub event: OriginEvent,
}

/// What the local client did, named by the line's `event` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OriginEvent {
    /// The local client started a request (`flow` is its uid).
    RequestStarted {
        #[serde(with = "key_text")]
        #[schemars(with = "super::text::Key")]
        key: RoutingKey,
        op: Op,
    },
    /// The request started the flow `flow` on the link to `to`: every
    /// neighbour it was sent to gets one line.
    FlowStarted { to: PeerKey, op: Op },
    /// The request ended: `found`, `inserted` or `failed: <reason>`.
    RequestFinished { outcome: String },
    /// An event this version does not know (written by a later one).
    #[serde(other)]
    Other,
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

/// The operation of a request kind; `None` for replies.
pub fn request_op(kind: MessageKind) -> Option<Op> {
    match kind {
        MessageKind::DataRequest => Some(Op::Get),
        MessageKind::InsertRequest => Some(Op::Put),
        _ => None,
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
pub(crate) mod key_text {
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

/// An optional routing key as base64url text.
mod opt_key_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::keys::RoutingKey;

    pub fn serialize<S: Serializer>(key: &Option<RoutingKey>, s: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(k) => super::key_text::serialize(k, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RoutingKey>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::key_text")] RoutingKey);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// A list of routing keys as base64url texts.
pub(crate) mod keys_text {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::keys::RoutingKey;

    pub fn serialize<S: Serializer>(keys: &[RoutingKey], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(keys.len()))?;
        for k in keys {
            seq.serialize_element(&k.to_base64())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RoutingKey>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::key_text")] RoutingKey);
        Ok(Vec::<Wrap>::deserialize(d)?
            .into_iter()
            .map(|w| w.0)
            .collect())
    }
}

/// How an outcome is written in `origin.jsonl` and client errors.
pub fn outcome_text(outcome: &ClientOutcome) -> String {
    match outcome {
        ClientOutcome::Found(_) => "found".into(),
        ClientOutcome::Inserted => "inserted".into(),
        ClientOutcome::Failed(f) => format!("failed: {}", f.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(b: u8) -> PeerKey {
        PeerKey([b; 32])
    }

    fn message(kind: MessageKind, htl: Option<Htl>, key: Option<RoutingKey>) -> MessageRecord {
        MessageRecord::new(kind, peer(3), 0x9f3a_0c1d_2e4b_5a69, htl, key)
    }

    #[test]
    fn a_message_line_has_the_documented_fields_in_order() {
        let key = RoutingKey([2; 32]);
        let line = AuditLine {
            ts_us: 1_764_072_000_123_456,
            node: peer(1),
            event: AuditEvent::Recv(message(MessageKind::DataRequest, Some(17), Some(key))),
        };
        let text = serde_json::to_string(&line).unwrap();
        let want = format!(
            "{{\"ts_us\":1764072000123456,\"node\":\"{}\",\"event\":\"recv\",\"kind\":\"DataRequest\",\
             \"peer\":\"{}\",\"flow\":\"9f3a0c1d2e4b5a69\",\"htl\":17,\"key\":\"{}\"}}",
            peer(1),
            peer(3),
            key.to_base64(),
        );
        assert_eq!(text, want);
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
    }

    #[test]
    fn htl_key_and_keys_are_written_only_when_present() {
        let mut line = AuditLine {
            ts_us: 5,
            node: peer(1),
            event: AuditEvent::Send(message(MessageKind::DataFound, None, None)),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(!text.contains("htl") && !text.contains("key"), "{text}");
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
        let mut batch = message(MessageKind::DataRequest, Some(4), None);
        batch.keys = vec![RoutingKey([7; 32]), RoutingKey([8; 32])];
        line.event = AuditEvent::Send(batch.clone());
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains(&format!(
            "\"keys\":[\"{}\",\"{}\"]",
            RoutingKey([7; 32]).to_base64(),
            RoutingKey([8; 32]).to_base64()
        )));
        assert_eq!(serde_json::from_str::<AuditLine>(&text).unwrap(), line);
        assert_eq!(batch.all_keys().count(), 2);
    }

    #[test]
    fn an_unknown_event_is_other_and_a_known_one_needs_its_fields() {
        let text = format!(
            "{{\"ts_us\":1,\"node\":\"{}\",\"event\":\"tunnel_built\"}}",
            peer(1)
        );
        let line: AuditLine = serde_json::from_str(&text).unwrap();
        assert_eq!(line.event, AuditEvent::Other);
        let text = format!(
            "{{\"ts_us\":1,\"node\":\"{}\",\"event\":\"link_up\"}}",
            peer(1)
        );
        let err = serde_json::from_str::<AuditLine>(&text).unwrap_err();
        assert!(err.to_string().contains("`peer`"), "{err}");
        let text = format!(
            "{{\"ts_us\":1,\"node\":\"{}\",\"event\":\"recv\",\"kind\":\"DataFound\",\"peer\":\"{}\"}}",
            peer(1),
            peer(2)
        );
        let err = serde_json::from_str::<AuditLine>(&text).unwrap_err();
        assert!(err.to_string().contains("`flow`"), "{err}");
    }

    #[test]
    fn origin_lines_round_trip_every_shape() {
        let lines = [
            OriginLine {
                ts_us: 7,
                flow: 0xab,
                event: OriginEvent::RequestStarted {
                    key: RoutingKey([9; 32]),
                    op: Op::Put,
                },
            },
            OriginLine {
                ts_us: 8,
                flow: 0xab,
                event: OriginEvent::FlowStarted {
                    to: peer(4),
                    op: Op::Put,
                },
            },
            OriginLine {
                ts_us: 9,
                flow: 0xab,
                event: OriginEvent::RequestFinished {
                    outcome: "failed: route not found".into(),
                },
            },
        ];
        for line in lines {
            let text = serde_json::to_string(&line).unwrap();
            assert!(
                text.starts_with(&format!(
                    "{{\"ts_us\":{},\"flow\":\"00000000000000ab\",\"event\":",
                    line.ts_us
                )),
                "{text}"
            );
            assert_eq!(serde_json::from_str::<OriginLine>(&text).unwrap(), line);
        }
        let text = format!(
            "{{\"ts_us\":8,\"flow\":\"ab\",\"event\":\"flow_started\",\"to\":\"{}\",\"op\":\"get\"}}",
            peer(4)
        );
        let line: OriginLine = serde_json::from_str(&text).unwrap();
        assert_eq!(
            line.event,
            OriginEvent::FlowStarted {
                to: peer(4),
                op: Op::Get
            }
        );
    }

    #[test]
    fn flows_are_one_to_sixteen_hex_digits() {
        assert_eq!(parse_uid("ab"), Some(0xab));
        assert_eq!(parse_uid(&format_uid(u64::MAX)), Some(u64::MAX));
        for bad in ["", "0x12", "g", "00000000000000000"] {
            assert_eq!(parse_uid(bad), None, "{bad}");
        }
        let text = r#"{"ts_us":1,"flow":"zz","event":"request_finished","outcome":"found"}"#;
        assert!(serde_json::from_str::<OriginLine>(text).is_err());
    }

    #[test]
    fn request_kinds_and_ops_correspond() {
        for op in [Op::Get, Op::Put] {
            assert_eq!(request_op(request_kind(op)), Some(op));
        }
        assert_eq!(request_op(MessageKind::DataFound), None);
    }
}
