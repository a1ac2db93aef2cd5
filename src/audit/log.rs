//! Writing `audit.jsonl` and `origin.jsonl` (testnet mode). The format is
//! specified in `docs/audit-log.md`; `crate::audit` reads it.
//!
//! Only what this node could observe is written: message kinds, uids, routing
//! keys, HTLs and peer public keys. Never plaintext, decryption keys or
//! secret keys (the types that carry those are not accepted here).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::{Message, Uid};
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

/// A uid as the logs write it: 16 lower-case hex digits.
pub fn uid_hex(uid: Uid) -> String {
    format!("{uid:016x}")
}

/// Appends audit events for one node.
pub struct AuditLog {
    node: String,
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
            node: node.to_string(),
            audit: BufWriter::new(open(AUDIT_FILE)?),
            origin: BufWriter::new(open(ORIGIN_FILE)?),
        })
    }

    fn write(&mut self, event: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("ts".into(), json!(now_ms()));
        line.insert("node".into(), json!(self.node));
        line.insert("event".into(), json!(event));
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        let result = serde_json::to_writer(&mut self.audit, &Value::Object(line))
            .map_err(std::io::Error::from)
            .and_then(|_| self.audit.write_all(b"\n"))
            .and_then(|_| self.audit.flush());
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write audit log");
        }
    }

    /// A message this node received from `peer`.
    pub fn received(&mut self, peer: &PeerKey, msg: &Message) {
        self.message("received", "from", peer, msg);
    }

    /// A message this node sent to `peer`.
    pub fn sent(&mut self, peer: &PeerKey, msg: &Message) {
        self.message("sent", "to", peer, msg);
    }

    fn message(&mut self, dir: &str, who: &str, peer: &PeerKey, msg: &Message) {
        let mut fields = Map::new();
        fields.insert("uid".into(), json!(uid_hex(msg.uid())));
        if msg.is_request() {
            if let Some(key) = msg.key() {
                fields.insert("key".into(), json!(key.to_base64()));
            }
            fields.insert("htl".into(), json!(msg.htl()));
            fields.insert(who.into(), json!(peer.to_string()));
            let op = if matches!(msg, Message::InsertRequest { .. }) {
                "put"
            } else {
                "get"
            };
            fields.insert("op".into(), json!(op));
            self.write(&format!("request_{dir}"), Value::Object(fields));
        } else {
            fields.insert("reply".into(), json!(msg.kind()));
            if let Some(h) = msg.htl() {
                fields.insert("htl".into(), json!(h));
            }
            fields.insert(who.into(), json!(peer.to_string()));
            self.write(&format!("reply_{dir}"), Value::Object(fields));
        }
    }

    pub fn block_cached(&mut self, key: &RoutingKey) {
        self.write("block_cached", json!({"key": key.to_base64()}));
    }

    pub fn block_stored(&mut self, key: &RoutingKey) {
        self.write("block_stored", json!({"key": key.to_base64()}));
    }

    pub fn link_up(&mut self, peer: &PeerKey) {
        self.write("link_up", json!({"peer": peer.to_string()}));
    }

    pub fn link_down(&mut self, peer: &PeerKey) {
        self.write("link_down", json!({"peer": peer.to_string()}));
    }

    fn write_origin(&mut self, value: Value) {
        let result = serde_json::to_writer(&mut self.origin, &value)
            .map_err(std::io::Error::from)
            .and_then(|_| self.origin.write_all(b"\n"))
            .and_then(|_| self.origin.flush());
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write origin log");
        }
    }

    /// The local client started a request.
    pub fn origin_started(&mut self, uid: Uid, key: &RoutingKey, op: Op) {
        self.write_origin(json!({
            "ts": now_ms(), "uid": uid_hex(uid), "key": key.to_base64(), "op": op.as_str()
        }));
    }

    /// The local client's request ended.
    pub fn origin_finished(&mut self, uid: Uid, outcome: &str) {
        self.write_origin(json!({"ts": now_ms(), "uid": uid_hex(uid), "outcome": outcome}));
    }
}
