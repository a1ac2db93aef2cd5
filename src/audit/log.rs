//! Writing `audit.jsonl` and `origin.jsonl` (testnet mode). The format is
//! defined by [`crate::formats::audit_log`] (and described in
//! `docs/audit-log.md`); `crate::audit` reads it with the same types.
//!
//! Only what this node could observe is written: message kinds, uids, routing
//! keys, HTLs and peer public keys. Never plaintext, decryption keys or
//! secret keys (the types that carry those are not accepted here).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::formats::audit_log::{AuditEvent, AuditLine, MessageRecord, OriginEvent, OriginLine};
use crate::identity::PeerKey;
use crate::keys::{Location, RoutingKey};
use crate::message::{Message, Uid};
use crate::routing::Op;

/// Name of the per-node routing event log.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// Name of the per-node ground-truth log of local requests.
pub const ORIGIN_FILE: &str = "origin.jsonl";

/// How many of the local client's requests the log tracks at once (to
/// write a `flow_started` line for each link they go out on). Beyond it a
/// request's flows are not recorded and a warning says so.
const MAX_TRACKED_ORIGINS: usize = 65_536;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Longest an `audit.jsonl` line waits in memory while the node is busy:
/// a line older than this is written with the next one. An idle node's
/// router writes what it has at once ([`AuditLog::flush`]).
pub const AUDIT_STALE_US: u64 = 20_000;

/// Buffer of `audit.jsonl`: lines are written in batches, not one write
/// each.
const AUDIT_BUFFER: usize = 64 * 1024;

/// Append one record as a JSON line (to the buffer; [`AuditLog::flush`]
/// writes it out); a failure is logged, not returned (auditing never stops
/// the node).
fn append<T: Serialize>(out: &mut BufWriter<File>, record: &T, file: &str) {
    let result = serde_json::to_writer(&mut *out, record)
        .map_err(std::io::Error::from)
        .and_then(|_| out.write_all(b"\n"));
    if let Err(e) = result {
        tracing::warn!(error = %e, file, "cannot write audit log");
    }
}

/// The local client's requests and announced flows in flight, and their
/// operation: decides which sent messages get a `flow_started` line. Shared
/// by the file log and the simulator's in-memory log
/// ([`crate::audit::MemoryAudit`]), so both label flows alike.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origins {
    originated: HashMap<Uid, Op>,
}

impl Origins {
    /// Track `flow` (a request's uid, or an announced tunnel flow); false
    /// when too many are in flight already.
    pub(crate) fn track(&mut self, flow: Uid, op: Op) -> bool {
        if self.originated.len() < MAX_TRACKED_ORIGINS {
            self.originated.insert(flow, op);
            true
        } else {
            false
        }
    }

    /// The operation whose flow this sent message starts, if it is the
    /// local client's: a request on one of its uids (every link it goes
    /// out on), or the one tunnel message an announcement covers.
    pub(crate) fn on_sent(&mut self, record: &MessageRecord) -> Option<Op> {
        if !record.kind.starts_flow() {
            return None;
        }
        if record.kind.is_tunnel() {
            self.originated.remove(&record.flow)
        } else {
            self.originated.get(&record.flow).copied()
        }
    }

    /// The request ended.
    pub(crate) fn finish(&mut self, uid: Uid) {
        self.originated.remove(&uid);
    }
}

/// The record of one message: its kind, flow and htl, and the routing key
/// a node handling it sees (a request's; a tunnel cell shows none: what an
/// exit opens is logged by [`AuditLog::tunnel_exit`]).
pub(crate) fn message_record(peer: PeerKey, msg: &Message) -> MessageRecord {
    let mut record = MessageRecord::new(msg.message_kind(), peer, msg.uid(), msg.htl(), msg.key());
    record.bytes = u32::try_from(msg.payload_len()).ok();
    record
}

/// Appends audit events for one node.
pub struct AuditLog {
    node: PeerKey,
    /// Lines are written when the node is idle ([`AuditLog::flush`]), when
    /// the oldest unwritten one is [`AUDIT_STALE_US`] old, or when the
    /// buffer fills.
    audit: BufWriter<File>,
    /// When `audit` was last written out (µs since the epoch).
    audit_flushed_us: u64,
    /// Written with `audit`'s lines, and always before the local client
    /// hears an answer ([`AuditLog::origin_finished`]).
    origin: BufWriter<File>,
    /// The local client's requests in flight, and their operation.
    originated: Origins,
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
            audit: BufWriter::with_capacity(AUDIT_BUFFER, open(AUDIT_FILE)?),
            audit_flushed_us: now_us(),
            origin: BufWriter::new(open(ORIGIN_FILE)?),
            originated: Origins::default(),
        })
    }

    fn write(&mut self, event: AuditEvent) {
        let ts_us = now_us();
        let line = AuditLine {
            ts_us,
            node: self.node,
            event,
        };
        append(&mut self.audit, &line, AUDIT_FILE);
        if ts_us.saturating_sub(self.audit_flushed_us) >= AUDIT_STALE_US {
            self.flush();
        }
    }

    /// Write out the `audit.jsonl` and `origin.jsonl` lines still in memory. The router calls
    /// it whenever it has nothing else to do, so a log is complete up to
    /// the moment its node went idle; dropping the log flushes it too.
    pub fn flush(&mut self) {
        for (out, file) in [
            (&mut self.audit, AUDIT_FILE),
            (&mut self.origin, ORIGIN_FILE),
        ] {
            if !out.buffer().is_empty() {
                if let Err(e) = out.flush() {
                    tracing::warn!(error = %e, file, "cannot write audit log");
                }
            }
        }
        self.audit_flushed_us = now_us();
    }

    /// A message this node received from `peer`.
    pub fn received(&mut self, peer: &PeerKey, msg: &Message) {
        self.write(AuditEvent::Recv(message_record(*peer, msg)));
    }

    /// A message this node sent to `peer`. A request of the local client's
    /// (or a tunnel build or batch announced by [`AuditLog::flow_originated`])
    /// also gets its `flow_started` line in `origin.jsonl`.
    pub fn sent(&mut self, peer: &PeerKey, msg: &Message) {
        let record = message_record(*peer, msg);
        // A tunnel flow is announced once per message it covers.
        if let Some(op) = self.originated.on_sent(&record) {
            self.write_origin(record.flow, OriginEvent::FlowStarted { to: *peer, op });
        }
        self.write(AuditEvent::Send(record));
    }

    pub fn block_cached(&mut self, key: &RoutingKey) {
        self.write(AuditEvent::BlockCached { key: *key });
    }

    pub fn block_stored(&mut self, key: &RoutingKey) {
        self.write(AuditEvent::BlockStored { key: *key });
    }

    /// From now on this node routes by these rules.
    pub fn routing_rules(
        &mut self,
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
        insert_end: crate::routing::InsertEnd,
    ) {
        self.write(AuditEvent::RoutingRules {
            lookahead,
            htl_rule,
            insert_end,
        });
    }

    /// A link came up to `peer`, which announced `location`.
    pub fn link_up(&mut self, peer: &PeerKey, location: Location) {
        self.write(AuditEvent::LinkUp {
            peer: *peer,
            location: Some(location.as_f64()),
        });
    }

    /// `peer` announced that it moved to `location` (a swap).
    pub fn neighbour_moved(&mut self, peer: &PeerKey, location: Location) {
        self.write(AuditEvent::NeighbourMoved {
            peer: *peer,
            location: location.as_f64(),
        });
    }

    /// As a tunnel's exit, this node opened `keys` on `flow` from `peer`.
    pub fn tunnel_exit(&mut self, peer: &PeerKey, flow: Uid, keys: Vec<RoutingKey>) {
        self.write(AuditEvent::TunnelExit {
            peer: *peer,
            flow,
            keys,
        });
    }

    pub fn link_down(&mut self, peer: &PeerKey) {
        self.write(AuditEvent::LinkDown { peer: *peer });
    }

    fn write_origin(&mut self, flow: Uid, event: OriginEvent) {
        let line = OriginLine {
            ts_us: now_us(),
            flow,
            event,
        };
        append(&mut self.origin, &line, ORIGIN_FILE);
    }

    /// The local client started a request.
    pub fn origin_started(&mut self, uid: Uid, key: &RoutingKey, op: Op) {
        if !self.originated.track(uid, op) {
            tracing::warn!("too many local requests in flight; their flows are not logged");
        }
        self.write_origin(uid, OriginEvent::RequestStarted { key: *key, op });
    }

    /// The next message sent with id `flow` (a tunnel build or batch) is
    /// the local client's own: `sent` writes its `flow_started` line.
    pub fn flow_originated(&mut self, flow: Uid, op: Op) {
        if !self.originated.track(flow, op) {
            tracing::warn!("too many local flows in flight; this one is not logged");
        }
    }

    /// The local client's request ended. Both logs are written out before
    /// the client hears the answer.
    pub fn origin_finished(&mut self, uid: Uid, outcome: &str) {
        self.originated.finish(uid);
        let outcome = outcome.to_string();
        self.write_origin(uid, OriginEvent::RequestFinished { outcome });
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_on_disk_after_a_flush_and_before_a_clients_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (me, peer) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let key = RoutingKey([3; 32]);
        let mut log = AuditLog::open(dir.path(), &me).unwrap();
        let on_disk = |name: &str| lines::<serde_json::Value>(&dir.path().join(name)).len();
        log.origin_started(7, &key, Op::Get);
        log.received(&peer, &Message::DataNotFound { uid: 9 });
        // Buffered: a busy router writes them in batches.
        assert_eq!((on_disk(AUDIT_FILE), on_disk(ORIGIN_FILE)), (0, 0));
        log.flush();
        assert_eq!((on_disk(AUDIT_FILE), on_disk(ORIGIN_FILE)), (1, 1));
        log.received(&peer, &Message::DataNotFound { uid: 7 });
        log.origin_finished(7, "failed: data not found");
        // Everything logged before the client's answer is written with it.
        assert_eq!((on_disk(AUDIT_FILE), on_disk(ORIGIN_FILE)), (2, 2));
        log.received(&peer, &Message::DataNotFound { uid: 10 });
        drop(log);
        assert_eq!(on_disk(AUDIT_FILE), 3);
    }

    #[test]
    fn what_the_node_writes_reads_back_as_the_record_type() {
        let dir = tempfile::tempdir().unwrap();
        let (me, peer, other) = (PeerKey([1; 32]), PeerKey([2; 32]), PeerKey([5; 32]));
        let key = RoutingKey([3; 32]);
        let mut log = AuditLog::open(dir.path(), &me).unwrap();
        log.link_up(&peer, Location::from_f64(0.25));
        log.origin_started(7, &key, Op::Get);
        let request = Message::DataRequest {
            uid: 7,
            key,
            htl: 18,
        };
        log.sent(&peer, &request);
        log.received(&peer, &Message::RouteNotFound { uid: 7, htl: 16 });
        log.sent(&other, &request);
        log.received(&other, &Message::RejectedLoop { uid: 7 });
        log.origin_finished(7, "failed: route not found");
        // A forwarded request (not the client's) starts no flow of ours.
        log.sent(
            &peer,
            &Message::DataRequest {
                uid: 8,
                key,
                htl: 5,
            },
        );
        log.link_down(&peer);
        drop(log);

        let audit: Vec<AuditLine> = lines(&dir.path().join(AUDIT_FILE));
        assert!(audit.iter().all(|l| l.node == me && l.ts_us > 0));
        assert!(audit.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
        let events: Vec<AuditEvent> = audit.into_iter().map(|l| l.event).collect();
        // Requests and these replies carry no cells or blocks: 0 bytes.
        let msg = |kind, peer, flow, htl, key| MessageRecord {
            bytes: Some(0),
            ..MessageRecord::new(kind, peer, flow, htl, key)
        };
        assert_eq!(
            events,
            [
                AuditEvent::LinkUp {
                    peer,
                    location: Some(0.25)
                },
                AuditEvent::Send(msg(MessageKind::DataRequest, peer, 7, Some(18), Some(key))),
                AuditEvent::Recv(msg(MessageKind::RouteNotFound, peer, 7, Some(16), None)),
                AuditEvent::Send(msg(MessageKind::DataRequest, other, 7, Some(18), Some(key))),
                AuditEvent::Recv(msg(MessageKind::RejectedLoop, other, 7, None, None)),
                AuditEvent::Send(msg(MessageKind::DataRequest, peer, 8, Some(5), Some(key))),
                AuditEvent::LinkDown { peer },
            ]
        );
        let origin: Vec<(Uid, OriginEvent)> = lines::<OriginLine>(&dir.path().join(ORIGIN_FILE))
            .into_iter()
            .map(|l| (l.flow, l.event))
            .collect();
        assert_eq!(
            origin,
            [
                (7, OriginEvent::RequestStarted { key, op: Op::Get }),
                (
                    7,
                    OriginEvent::FlowStarted {
                        to: peer,
                        op: Op::Get
                    }
                ),
                (
                    7,
                    OriginEvent::FlowStarted {
                        to: other,
                        op: Op::Get
                    }
                ),
                (
                    7,
                    OriginEvent::RequestFinished {
                        outcome: "failed: route not found".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_announced_tunnel_message_starts_one_flow_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let (me, peer) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let mut log = AuditLog::open(dir.path(), &me).unwrap();
        let share = crate::message::Ephemeral([5; 32]);
        let build = Message::TunnelBuild {
            tunnel: 1 << 63,
            ephemeral: share,
        };
        let cell = crate::message::Cell::from_bytes(vec![0; crate::message::SMALL_CELL]).unwrap();
        let batch = Message::TunnelForward {
            tunnel: 1 << 63,
            cell,
        };
        log.flow_originated(1 << 63, Op::Get);
        log.sent(&peer, &build);
        // Not announced: an extended build or a relayed batch is no flow of ours.
        log.sent(&peer, &build);
        log.sent(&peer, &batch);
        log.flow_originated(1 << 63, Op::Put);
        log.sent(&peer, &batch);
        // Replies never start a flow, announced or not.
        log.flow_originated(9, Op::Get);
        log.sent(
            &peer,
            &Message::TunnelBuilt {
                tunnel: 9,
                ephemeral: share,
            },
        );
        drop(log);
        let origin: Vec<(Uid, OriginEvent)> = lines::<OriginLine>(&dir.path().join(ORIGIN_FILE))
            .into_iter()
            .map(|l| (l.flow, l.event))
            .collect();
        let started = |op| OriginEvent::FlowStarted { to: peer, op };
        assert_eq!(
            origin,
            [(1 << 63, started(Op::Get)), (1 << 63, started(Op::Put))]
        );
        let sends = lines::<AuditLine>(&dir.path().join(AUDIT_FILE)).len();
        assert_eq!(sends, 5);
    }
}
