//! The audit of a run recorded in memory (the simulator's): the same
//! records a node's [`AuditLog`](crate::audit::log::AuditLog) writes to
//! `audit.jsonl` and `origin.jsonl` ([`crate::formats::audit_log`]), built by the
//! same code ([`message_record`], [`Origins`]) and taken in by the same code
//! that reads the files back, then scored by the same adversary and verdict
//! as `veil audit`.
//!
//! Nodes are numbered `0..n` and named `n0`, `n1`, ...; node `i`'s key is
//! [`MemoryAudit::peer_key`]`(i)`. Times are microseconds of the caller's
//! (virtual) clock.

use super::load::{NodeData, Run};
use super::log::{message_record, Origins};
use super::{file_keys, score, Anonymity, AuditOptions};
use crate::formats::audit_log::{AuditEvent, OriginEvent, OriginLine};
use crate::identity::PeerKey;
use crate::keys::{Location, RoutingKey};
use crate::message::{Htl, Message, Uid};
use crate::routing::Op;

/// The name of the node whose key is `key` ([`MemoryAudit::peer_key`]).
fn name_of(key: PeerKey) -> String {
    let mut ix = [0u8; 8];
    ix.copy_from_slice(&key.0[..8]);
    MemoryAudit::name(u64::from_be_bytes(ix) as usize)
}

/// Every node's audit records, kept in memory.
pub struct MemoryAudit {
    run: Run,
    origins: Vec<Origins>,
}

impl MemoryAudit {
    /// An empty log for `n` nodes.
    pub fn new(n: usize) -> MemoryAudit {
        let nodes = (0..n)
            .map(|i| NodeData {
                name: Self::name(i),
                ..NodeData::default()
            })
            .collect();
        MemoryAudit {
            run: Run {
                nodes,
                warnings: Vec::new(),
            },
            origins: vec![Origins::default(); n],
        }
    }

    /// Node `i`'s name.
    pub fn name(i: usize) -> String {
        format!("n{i}")
    }

    /// Node `i`'s key in the records.
    pub fn peer_key(i: usize) -> PeerKey {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        PeerKey(key)
    }

    pub fn len(&self) -> usize {
        self.run.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.run.nodes.is_empty()
    }

    fn audit_event(&mut self, node: usize, ts_us: u64, event: AuditEvent) {
        if let Some(n) = self.run.nodes.get_mut(node) {
            n.apply_audit(ts_us, event, &name_of);
        }
    }

    fn origin_event(&mut self, node: usize, ts_us: u64, flow: Uid, event: OriginEvent) {
        if let Some(n) = self.run.nodes.get_mut(node) {
            n.apply_origin(OriginLine { ts_us, flow, event }, &name_of);
        }
    }

    /// A link from `node` to `peer` came up; `peer` announced `location`.
    pub fn link_up(&mut self, node: usize, ts_us: u64, peer: usize, location: Location) {
        let event = AuditEvent::LinkUp {
            peer: Self::peer_key(peer),
            location: Some(location.as_f64()),
        };
        self.audit_event(node, ts_us, event);
    }

    /// `node` received `msg` from `peer`.
    pub fn received(&mut self, node: usize, ts_us: u64, peer: usize, msg: &Message) {
        let record = message_record(Self::peer_key(peer), msg);
        self.audit_event(node, ts_us, AuditEvent::Recv(record));
    }

    /// `node` sent `msg` to `peer` (and, when it starts one of its client's
    /// flows, the `flow_started` ground truth).
    pub fn sent(&mut self, node: usize, ts_us: u64, peer: usize, msg: &Message) {
        let record = message_record(Self::peer_key(peer), msg);
        let op = self.origins.get_mut(node).and_then(|o| o.on_sent(&record));
        if let Some(op) = op {
            let to = Self::peer_key(peer);
            self.origin_event(
                node,
                ts_us,
                record.flow,
                OriginEvent::FlowStarted { to, op },
            );
        }
        self.audit_event(node, ts_us, AuditEvent::Send(record));
    }

    /// `node`, as a tunnel's exit, opened `keys` on `flow` from `peer`.
    pub fn tunnel_exit(
        &mut self,
        node: usize,
        ts_us: u64,
        peer: usize,
        flow: Uid,
        keys: Vec<RoutingKey>,
    ) {
        let peer = Self::peer_key(peer);
        self.audit_event(node, ts_us, AuditEvent::TunnelExit { peer, flow, keys });
    }

    /// A block entered `node`'s cache.
    pub fn block_cached(&mut self, node: usize, ts_us: u64, key: RoutingKey) {
        self.audit_event(node, ts_us, AuditEvent::BlockCached { key });
    }

    /// A block entered `node`'s store.
    pub fn block_stored(&mut self, node: usize, ts_us: u64, key: RoutingKey) {
        self.audit_event(node, ts_us, AuditEvent::BlockStored { key });
    }

    /// `node`'s client started request `uid`.
    pub fn origin_started(&mut self, node: usize, ts_us: u64, uid: Uid, key: RoutingKey, op: Op) {
        if let Some(o) = self.origins.get_mut(node) {
            o.track(uid, op);
        }
        self.origin_event(node, ts_us, uid, OriginEvent::RequestStarted { key, op });
    }

    /// The next message `node` sends on `flow` is its client's own (a
    /// tunnel build or batch).
    pub fn flow_originated(&mut self, node: usize, flow: Uid, op: Op) {
        if let Some(o) = self.origins.get_mut(node) {
            o.track(flow, op);
        }
    }

    /// `node`'s client's request `uid` ended with `outcome`.
    pub fn origin_finished(&mut self, node: usize, ts_us: u64, uid: Uid, outcome: &str) {
        if let Some(o) = self.origins.get_mut(node) {
            o.finish(uid);
        }
        let outcome = outcome.to_string();
        self.origin_event(node, ts_us, uid, OriginEvent::RequestFinished { outcome });
    }

    /// Messages recorded (sent and received), over all nodes.
    pub fn lines(&self) -> usize {
        self.run.nodes.iter().map(|n| n.events.len()).sum()
    }

    /// The adversary of `options` (colluders, seed, limits) on what was
    /// recorded, exactly as `veil audit` scores a testnet's logs: `files`
    /// are the workload's files (each its routing keys, as
    /// `workload.json`'s `keys`), `max_htl` the nodes' largest HTL.
    pub fn anonymity(
        &self,
        files: &[Vec<RoutingKey>],
        max_htl: Option<Htl>,
        options: &AuditOptions,
    ) -> Anonymity {
        let files = file_keys(files.iter().map(Vec::as_slice));
        score(&self.run, &files, max_htl, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line 0 - 1 - 2: node 0's client asks for a key; node 1 forwards.
    #[test]
    fn the_records_label_the_originators_first_hop_only() {
        let mut m = MemoryAudit::new(3);
        for (a, b) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
            m.link_up(a, 0, b, Location::from_f64(b as f64 / 3.0));
        }
        let key = RoutingKey([4; 32]);
        let uid = 0x77;
        let ask = |htl| Message::DataRequest { uid, key, htl };
        m.origin_started(0, 10, uid, key, Op::Get);
        m.sent(0, 10, 1, &ask(18));
        m.received(1, 20, 0, &ask(18));
        m.sent(1, 20, 2, &ask(17));
        m.received(2, 30, 1, &ask(17));
        m.origin_finished(0, 50, uid, "failed: route not found");
        // A later send on the finished uid is no longer the client's.
        m.sent(0, 60, 1, &ask(5));
        assert_eq!(m.len(), 3);
        assert_eq!(m.lines(), 5);
        let a = m.anonymity(&[vec![key]], Some(18), &AuditOptions::default());
        assert_eq!((a.observations, a.positives), (2, 1), "{a:?}");
        assert_eq!(a.entropy.requests_observed, 1);
        // A pool of one keeps only what that node saw: n1 saw the
        // originator's request, n2 a forwarded one, n0 nothing.
        let pooled = AuditOptions {
            colluders: Some(1),
            ..AuditOptions::default()
        };
        let p = m.anonymity(&[vec![key]], Some(18), &pooled);
        let want = match p.colluders.first().map(String::as_str) {
            Some("n1") => (1, 1),
            Some("n2") => (1, 0),
            _ => (0, 0),
        };
        assert_eq!((p.observations, p.positives), want, "{p:?}");
    }

    #[test]
    fn an_announced_tunnel_message_is_the_clients_once() {
        let mut m = MemoryAudit::new(2);
        let build = Message::TunnelBuild {
            tunnel: 9,
            ephemeral: crate::message::Ephemeral([1; 32]),
        };
        m.flow_originated(0, 9, Op::Get);
        m.sent(0, 1, 1, &build);
        m.sent(0, 2, 1, &build);
        let started = &m.run.nodes[0].flows_started;
        assert_eq!(started.len(), 1);
        assert!(started.contains(&(9, MemoryAudit::name(1))));
        assert_eq!(MemoryAudit::name(1), "n1");
        assert_eq!(name_of(MemoryAudit::peer_key(12345)), "n12345");
    }
}
