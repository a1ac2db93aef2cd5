//! `--node NODE [--cookie FILE]`: which running node a client command
//! talks to (see `veil::client::endpoint`).

use std::path::PathBuf;

/// Which running node a client command talks to: `--node NODE [--cookie FILE]`.
#[derive(clap::Args, Clone)]
pub struct NodeArg {
    /// The node: its directory (default: the current directory), its
    /// client socket, or the HOST:PORT of a TCP client API (with --cookie).
    #[arg(long, value_name = "NODE", default_value = ".")]
    pub node: String,
    /// With --node HOST:PORT: the node's cookie file (NODE_DIR/client.cookie).
    #[arg(long, value_name = "FILE")]
    pub cookie: Option<PathBuf>,
}

impl NodeArg {
    /// The endpoint `--node` names.
    pub fn endpoint(&self) -> Result<veil::client::Endpoint, veil::client::EndpointError> {
        veil::client::Endpoint::parse(&self.node, self.cookie.as_deref())
    }
}

/// `add-peer` / `remove-peer --client NODE [--cookie FILE]`.
#[derive(clap::Args, Clone)]
pub struct ClientArg {
    /// Act on this running node: its client socket, or HOST:PORT with
    /// --cookie (a node directory is the NODE_DIR positional).
    #[arg(long, value_name = "NODE")]
    pub client: Option<String>,
    /// With --client HOST:PORT: the node's cookie file.
    #[arg(long, value_name = "FILE")]
    pub cookie: Option<PathBuf>,
}

impl ClientArg {
    /// The endpoint `--client` names, if given.
    pub fn endpoint(&self) -> Result<Option<veil::client::Endpoint>, veil::client::EndpointError> {
        let parse = |c: &String| veil::client::Endpoint::parse(c, self.cookie.as_deref());
        self.client.as_ref().map(parse).transpose()
    }
}
