//! veil: an anonymous, Freenet-style forwarding overlay.
//!
//! # Layout
//!
//! Layers, bottom up; each module has one job:
//!
//! - [`keys`]: content-hash keys (CHK): convergent encryption of 32 KiB
//!   blocks, routing keys, URIs, and locations on the key circle.
//! - [`message`]: the routing messages and their bounded CBOR codec.
//! - [`htl`]: hops-to-live policies, the pluggable part of the core.
//! - [`routing`]: the sans-IO routing core. Events in, actions out; no
//!   sockets, no clock, no threads.
//! - [`topology`]: topology files and generators.
//! - [`harness`]: the deterministic in-process network that drives many
//!   routers on a virtual clock (behind `veil trace`).
//!
//! # The path of a request
//!
//! A client asks its node for a routing key
//! ([`routing::Event::ClientGet`]). The node's [`routing::Router`] picks a
//! random uid and sends a [`message::Message::DataRequest`] to the neighbour
//! whose location is closest to the key's. Each node that accepts it either
//! answers from its datastore, or keeps a hops-to-live budget and forwards it
//! to its own best untried neighbour, backtracking on `RouteNotFound` and
//! `RejectedLoop`. `DataFound` travels back along the exact reverse path;
//! each node verifies the block against the key and caches it. No message
//! says who asked or who answered.

pub mod audit;
pub mod audit_log;
pub mod bench;
pub mod client;
pub mod config;
pub mod content;
pub mod harness;
pub mod htl;
pub mod identity;
pub mod keys;
pub mod link;
pub mod message;
pub mod node;
pub mod routing;
pub mod store;
pub mod testnet;
pub mod topology;
pub mod transfer;
pub mod workload;
