//! Writing `audit.jsonl` and `origin.jsonl` (testnet mode). The format is
//! defined by [`crate::audit::record`] (and described in
//! `docs/audit-log.md`); `crate::audit` reads it with the same types.
//!
//! Only what this node could observe is written: message kinds, uids, routing
//! keys, HTLs and peer public keys. Never plaintext, decryption keys or
//! secret keys (the types that carry those are not accepted here).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::audit::record::{AuditEvent, AuditLine, OriginEvent, OriginLine};
use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::{Message, MessageKind, Uid};
use crate::routing::Op;

/// Name of the per-node routing event log.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Name of the per-node ground-truth log of local requests.
pub const ORIGIN_FILE: &str = "origin.jsonl";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Append one record as a JSON line and flush it; a failure is logged, not
/// returned (auditing never stops the node).
fn append<T: Serialize>(out: &mut BufWriter<File>, record: &T, file: &str) {
    let result = serde_json::to_writer(&mut *out, record)
        .map_err(std::io::Error::from)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = result {
        tracing::warn!(error = %e, file, "cannot write audit log");
    }
}

/// Appends audit events for one node.
pub struct AuditLog {
    node: PeerKey,
    audit: BufWriter<File>,
    origin: BufWriter<File>,
}

impl AuditLog {
    /// Open (append to) the two logs in `dir`.
    pub fn open(dir: &Path, node: &PeerKey) -> std::io::Result<AuditLog> {
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
        };
        Ok(AuditLog {
            node: *node,
            audit: BufWriter::new(open(AUDIT_FILE)?),
            origin: BufWriter::new(open(ORIGIN_FILE)?),
        })
    }

    fn write(&mut self, event: AuditEvent) {
        let line = AuditLine {
            ts: now_ms(),
            node: self.node,
            event,
        };
        append(&mut self.audit, &line, AUDIT_FILE);
    }

    /// A message this node received from `peer`.
    pub fn received(&mut self, peer: &PeerKey, msg: &Message) {
        self.message(false, *peer, msg);
    }

    /// A message this node sent to `peer`.
    pub fn sent(&mut self, peer: &PeerKey, msg: &Message) {
        self.message(true, *peer, msg);
    }

    fn message(&mut self, sent: bool, peer: PeerKey, msg: &Message) {
        let uid = msg.uid();
        let kind = msg.message_kind();
        let event = match (msg.key(), msg.htl()) {
            (Some(key), Some(htl)) if kind.is_request() => {
                let op = if kind == MessageKind::InsertRequest {
                    Op::Put
                } else {
                    Op::Get
                };
                if sent {
                    AuditEvent::RequestSent {
                        uid,
                        key,
                        htl,
                        to: peer,
                        op,
                    }
                } else {
                    AuditEvent::RequestReceived {
                        uid,
                        key,
                        htl,
                        from: peer,
                        op,
                    }
                }
            }
            (_, htl) if sent => AuditEvent::ReplySent {
                uid,
                reply: kind,
                htl,
                to: peer,
            },
            (_, htl) => AuditEvent::ReplyReceived {
                uid,
                reply: kind,
                htl,
                from: peer,
            },
        };
        self.write(event);
    }

    pub fn block_cached(&mut self, key: &RoutingKey) {
        self.write(AuditEvent::BlockCached { key: *key });
    }

    pub fn block_stored(&mut self, key: &RoutingKey) {
        self.write(AuditEvent::BlockStored { key: *key });
    }

    pub fn link_up(&mut self, peer: &PeerKey) {
        self.write(AuditEvent::LinkUp { peer: *peer });
    }

    pub fn link_down(&mut self, peer: &PeerKey) {
        self.write(AuditEvent::LinkDown { peer: *peer });
    }

    fn write_origin(&mut self, uid: Uid, event: OriginEvent) {
        let line = OriginLine {
            ts: now_ms(),
            uid,
            event,
        };
        append(&mut self.origin, &line, ORIGIN_FILE);
    }

    /// The local client started a request.
    pub fn origin_started(&mut self, uid: Uid, key: &RoutingKey, op: Op) {
        self.write_origin(uid, OriginEvent::Started { key: *key, op });
    }

    /// The local client's request ended.
    pub fn origin_finished(&mut self, uid: Uid, outcome: &str) {
        let outcome = outcome.to_string();
        self.write_origin(uid, OriginEvent::Finished { outcome });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditEvent, AuditLine, OriginEvent, OriginLine};

    fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn what_the_node_writes_reads_back_as_the_record_type() {
        let dir = tempfile::tempdir().unwrap();
        let (me, peer, key) = (PeerKey([1; 32]), PeerKey([2; 32]), RoutingKey([3; 32]));
        let mut log = AuditLog::open(dir.path(), &me).unwrap();
        log.origin_started(7, &key, Op::Get);
        log.sent(
            &peer,
            &Message::DataRequest {
                uid: 7,
                key,
                htl: 18,
            },
        );
        log.received(&peer, &Message::RouteNotFound { uid: 7, htl: 16 });
        log.received(&peer, &Message::RejectedLoop { uid: 7 });
        log.link_down(&peer);
        log.origin_finished(7, "failed: route not found");
        drop(log);

        let audit: Vec<AuditLine> = lines(&dir.path().join(AUDIT_FILE));
        assert!(audit.iter().all(|l| l.node == me && l.ts > 0));
        let events: Vec<AuditEvent> = audit.into_iter().map(|l| l.event).collect();
        assert_eq!(
            events,
            [
                AuditEvent::RequestSent {
                    uid: 7,
                    key,
                    htl: 18,
                    to: peer,
                    op: Op::Get
                },
                AuditEvent::ReplyReceived {
                    uid: 7,
                    reply: MessageKind::RouteNotFound,
                    htl: Some(16),
                    from: peer
                },
                AuditEvent::ReplyReceived {
                    uid: 7,
                    reply: MessageKind::RejectedLoop,
                    htl: None,
                    from: peer
                },
                AuditEvent::LinkDown { peer },
            ]
        );
        let origin: Vec<OriginEvent> = lines::<OriginLine>(&dir.path().join(ORIGIN_FILE))
            .into_iter()
            .map(|l| l.event)
            .collect();
        assert_eq!(
            origin,
            [
                OriginEvent::Started { key, op: Op::Get },
                OriginEvent::Finished {
                    outcome: "failed: route not found".into()
                },
            ]
        );
    }
}
