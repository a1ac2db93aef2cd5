//! veil: an anonymous, Freenet-style forwarding overlay.
//!
//! # Layout
//!
//! One folder per layer, one job per module. Lower layers never import
//! higher ones; the routing core imports nothing that does I/O.
//!
//! ```text
//! keys.rs          CHK blocks: convergent encryption, routing keys, URIs, locations
//! identity.rs      a node's static X25519 key; peer keys; key files (0600)
//! message.rs       the wire vocabulary: Message, MessageKind, PeerFrame, bounded CBOR;
//!                  message/swap.rs the location-swap messages
//! error.rs         ErrorKind / HasKind: what kind of failure an error is, peer's fault or not
//! content/         files of any size: manifest format (manifest), layout, segment (RS),
//!                  split/stream (a segment at a time), fetch, resume (FILE.veil-part)
//! routing/         THE sans-IO core, events in, actions out (no socket, clock, thread):
//!   mod.rs           Router, the pool of searches: uid table, loops, limits, stats, timers
//!   search.rs        one request's state machine: next hop, on reply, its ending
//!   vocab.rs         Event, Action, ClientOutcome, Failure, RouterConfig, Op
//!   htl.rs           hops-to-live policies: none (deterministic), freenet (per-link coins)
//!   swap.rs          location swapping (Sandberg 2006): the D1/D2 rule, offers, schedule,
//!                    the shared coin; swapper.rs the swap protocol (Swapper) beside the Router
//!   tunnel/          random-walk tunnels: walk, relay and exit (mod), client sessions (client)
//! link/            encrypted links between friends:
//!   handshake.rs     Noise XX steps over byte buffers
//!   frame.rs         sans-IO seal/open of fixed-size frames
//!   mod.rs           the thin tokio wrapper: Link, LinkReader, LinkWriter, connect, accept
//! store/           redb datastore: the store and the LRU cache (mod), size settings (size)
//! config.rs        node.toml: NodeConfig embeds [router], [link], [runtime], with defaults
//! node/            the tokio runtime, a thin driver of the core:
//!   mod.rs           start-up: NodeSetup, start, RunningNode
//!   links.rs         accept, dial, establish, per-link reader and writer tasks
//!   router_task.rs   owns the Router; performs its actions (sends, store, audit, answers)
//!   swap.rs          drives the Swapper: swap frames, a new location on a swap
//!   client_api.rs    the local client API server
//!   client_cache.rs  what this node's own client fetched through a tunnel
//! client.rs        the client API protocol and client (NodeStatus, ClientError)
//! transfer.rs      whole files over the client API (put_file, get_file)
//! freesite.rs      directories over the client API: KEY/path addresses, put_dir, resolve
//! gateway/         the browser gateway (veil gateway): browse, insert, status, safety
//! sim/             the core on a virtual clock: harness, scenario (veil trace), topology;
//!                  veil sim: engine (discrete events), freenet (veil as a Model), model,
//!                  baselines, graphs, runner (one run), experiments, plot, swap,
//!                  blocks (the engine's compact stores), churn (sessions)
//! testnet/         real node processes on loopback: up/down (mod), run (veil testnet run
//!                  and its report), workload, info (testnet.json, workload.json), bench,
//!                  swap (hops before and after swapping)
//! audit/           what nodes could observe: record (THE log record type), log (the
//!                  writer), load, traffic, invariants, leaks, trace; the adversary:
//!                  features, signals, classifier, posterior, anonymity, verdict, report
//! main.rs, cli.rs  the binary: arguments (cli.rs), call the library, print
//! ```
//!
//! The node, the harness and the simulator (`sim::engine`) are drivers of the same
//! [`routing::Router`]: routing logic lives only in [`routing`].
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
pub mod freesite;
pub mod gateway;
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
