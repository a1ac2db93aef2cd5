//! veil: an anonymous, Freenet-style forwarding overlay.
//!
//! # Layout
//!
//! Layers, bottom up; each module has one job:
//!
//! - keys and content: [`keys`] (CHK: convergent encryption of 32 KiB
//!   blocks, routing keys, URIs, locations on the key circle) and
//!   [`content`] (files of any size: manifests, split and fetch).
//! - wire format: [`message`] (routing messages, bounded CBOR codec).
//! - link encryption: [`identity`] (static X25519 keys) and [`link`] (Noise
//!   XX, fixed-size AEAD frames).
//! - routing core: [`routing::htl`] (hops-to-live policies, the pluggable part) and
//!   [`routing`] (the sans-IO state machine: events in, actions out; no
//!   sockets, no clock, no threads).
//! - store: [`store`] (redb: the store and the LRU cache).
//! - node runtime: [`config`] (`node.toml`), [`node`] (tokio tasks that
//!   drive the core), [`audit::log`] (what a testnet node writes).
//! - client API and CLI: [`client`] (the local protocol), [`transfer`]
//!   (whole files over it); the binary is `src/main.rs`.
//! - testnet, audit, simulation: [`sim::topology`] (files and generators),
//!   [`sim::harness`] (many routers on a virtual clock, behind `veil trace`),
//!   [`testnet`] and [`testnet::workload`] (real processes, `veil testnet`),
//!   [`audit`] (`veil audit`), [`testnet::bench`] (`veil bench`).
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
//!
//! In a running node, bytes arrive on a [`link`], become a
//! [`message::Message`], and are fed to the router by the [`node`] runtime,
//! which carries out the actions: frames to other links, blocks to the
//! [`store`], answers to the [`client`] API.

pub mod audit;
pub mod client;
pub mod config;
pub mod content;
pub mod error;
pub mod identity;
pub mod keys;
pub mod link;
pub mod message;
pub mod node;
pub mod routing;
pub mod sim;
pub mod store;
pub mod testnet;
pub mod transfer;
