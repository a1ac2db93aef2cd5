//! veil: an anonymous, Freenet-style forwarding overlay.
//!
//! # Layout
//!
//! One folder per layer, one job per module. The layers, from the ground
//! up; a layer imports only layers listed above it, and never one that
//! imports it back (`tests/library/layout.rs` checks this on the code):
//!
//! ```text
//! error/      ErrorKind / HasKind: what kind of failure an error is, peer's fault or not
//! keys/       CHK blocks (convergent encryption, routing keys, locations); ssk: signed
//!             subspace keys; uri: SSK/USK URIs and editions
//! identity/   a node's static X25519 key; peer keys; key files (0600)
//! message/    the wire vocabulary: Message, MessageKind, PeerFrame, bounded CBOR;
//!             swap: the location-swap messages
//! routing/    THE sans-IO core, events in, actions out (no socket, clock, thread):
//!               mod: Router, the pool of searches (uids, loops, limits, stats, timers)
//!               search: one request's state machine; vocab: Event, Action, Failure, …
//!               htl: hops-to-live policies (none, freenet); swap, swapper: location
//!               swapping; tunnel/: sealed tunnels (build, relay, exit, sessions, onion)
//! link/       encrypted links between friends: handshake (Noise IK over byte
//!             buffers), frame (sans-IO seal/open of fixed-size frames), mod (tokio)
//! store/      the datastore: a redb index and store, a flat slot file for the cache,
//!             a group-commit writer, size settings, disk health
//! config/     node.toml: NodeConfig with [router], [link], [runtime], defaults, checks
//! content/    files of any size: manifests, layout, Reed-Solomon segments, split and
//!             fetch a segment at a time, resume; dir: freesite documents; usk: editions
//! client/     the client layer every front end uses: endpoint, api (the node's client
//!             API and Client), status, transfer (whole files), address, site
//!             (freesites), usk (publishing editions)
//! formats/    files other programs read: audit_log (audit.jsonl, origin.jsonl),
//!             testnet (testnet.json, workload.json); schemas in docs/formats.md
//! audit/      what nodes could observe: log (the writer), load, traffic, invariants,
//!             leaks, trace; the adversary: features, signals, classifier, posterior,
//!             anonymity, verdict, report
//! gateway/    the browser gateway (veil gateway): browse, insert, status, safety
//! fcp/        FCPv2 for Freenet's tools (fcpput, fcpget, site managers): frame
//!             (sans-IO), connection, cmd/ (one file per command, over client/)
//! node/       the tokio runtime, a thin driver of the core: links, router_task (owns
//!             the Router, performs its actions), swap, client_api, client_cache
//! sim/        the core on a virtual clock: harness (veil trace), scenario, topology;
//!             veil sim: engine, freenet (veil as a Model), baselines, runner,
//!             experiments, plot, swap, churn, anonymity
//! testnet/    real node processes on loopback: up/down (mod), run (veil testnet run),
//!             workload, failures (kill, churn), swap
//! bench/      figures measured as a user runs veil (veil bench): inproc, modes,
//!             chain (real processes), floor (the bare relay), files (put and get)
//! ```
//!
//! The binary (`main.rs` and `src/cli/`, one file per command) parses
//! arguments, calls these layers and prints.
//!
//! The node, the harness and the simulator (`sim::engine`) are drivers of the same
//! [`routing::Router`]: routing logic lives only in [`routing`].
//!
//! # The path of a request
//!
//! `veil get URI` (`src/cli/get.rs`) resolves the URI to a CHK
//! ([`client::site::target`]) and fetches the file a segment at a time
//! ([`client::transfer`], [`content`]), asking its node for each block's
//! routing key over the node's client API ([`client::Client`]). The file is
//! decrypted here, on the client's side: the node sees only routing keys
//! and encrypted blocks.
//!
//! The node's [`routing::Router`] takes the request
//! ([`routing::Event::ClientGet`]). In the default mode (`anonymity =
//! "tunnel"`) it seals the key in a cell of its tunnel
//! ([`routing::tunnel`]), three hops or more, whose exit opens and searches
//! for it; in `none` and
//! `freenet` it searches itself. A search picks a random uid and sends a
//! [`message::Message::DataRequest`] to the neighbour whose location is
//! closest to the key's. Each node that accepts it either answers from its
//! datastore, or keeps a hops-to-live budget and forwards it to its own best
//! untried neighbour, backtracking on `RouteNotFound` and `RejectedLoop`.
//! `DataFound` travels back along the exact reverse path; each node
//! verifies the block against the key and caches it. No message says who
//! asked or who answered.
//!
//! In a running node, bytes arrive on a [`link`], become a
//! [`message::Message`], and are fed to the router by the [`node`] runtime,
//! which carries out the actions: frames to other links, blocks to the
//! [`store`], answers to the client API.

/// `FromStr` and `Display` for a fieldless enum spelled as one word per
/// variant (its flag's and its `node.toml` value's spelling), whose parse
/// error names the choices: `words!(HtlRule, "an HTL rule", Hop = "hop", …)`.
macro_rules! words {
    ($ty:ident, $what:literal, $($variant:ident = $word:literal),+ $(,)?) => {
        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($ty::$variant),)+
                    _ => Err(format!("{s:?} is not {}: {}", $what, [$($word),+].join(" or "))),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($ty::$variant => $word,)+
                })
            }
        }
    };
}

pub mod audit;
pub mod bench;
pub mod client;
pub mod config;
pub mod content;
pub mod error;
pub mod fcp;
pub mod formats;
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
