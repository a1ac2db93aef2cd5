//! Benchmarks: figures measured on this machine as a user runs veil,
//! printed (and given as JSON), never asserted.
//!
//! ```text
//! inproc.rs   `veil bench`: per-hop latency and get throughput over a
//!             5-node chain of in-process nodes, raw AEAD speed
//! modes.rs    `veil bench`: the same gets in each anonymity mode
//! chain.rs    `veil bench --chain`: 6 `veil node` processes, the path's
//!             computed limit, every node's memory
//! floor.rs    the bare relay chain measured beside `--chain`
//! files.rs    `veil bench files`: `veil put` and `veil get` child
//!             processes on one file over one link, peak RSS and speed
//! ```

pub mod chain;
mod chain_text;
pub mod files;
pub mod floor;
pub mod inproc;
pub mod limit;
pub mod modes;

use std::path::Path;

use serde::Serialize;

use crate::formats::Version;

/// What `veil bench --json` prints: the in-process chain's figures and the
/// per-mode gets, each absent when skipped (docs/formats.md).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BenchOutput {
    pub version: Version<1>,
    pub chain: Option<inproc::BenchReport>,
    pub modes: Option<modes::ModesReport>,
}

/// What `veil bench --chain --json` prints: one report per anonymity mode,
/// in the order of `--modes` (docs/formats.md).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ChainOutput {
    pub version: Version<1>,
    pub runs: Vec<chain::ChainReport>,
}

/// Why a benchmark could not be measured: setting the chain up, then
/// measuring on it.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error("the bench network's links did not come up within 30 s")]
    ChainNotUp,
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Content(#[from] crate::content::ContentError),
    #[error("cannot start a node: {0}")]
    Spawn(String),
    #[error("a bench task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Floor(#[from] floor::FloorError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("veil {what} failed: {detail}")]
    Child { what: String, detail: String },
    #[error("veil {0} did not report its peak RSS")]
    NoPeakRss(String),
    #[error("the two nodes did not link within 30 s")]
    PairNotUp,
    #[error("the fetched file differs")]
    Differs,
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(transparent)]
    Transfer(#[from] crate::client::transfer::TransferError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}
