//! `veil gateway`: the browser gateway on localhost, through the node's
//! client API, until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};

use veil::gateway::{GatewayConfig, GatewayError};

use super::args::{parse_max_size, NodeArg};

#[derive(clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    node: NodeArg,
    /// Where the gateway listens: a loopback address unless --public.
    #[arg(long, default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// Allow a non-loopback listen address and any Host header: anyone who
    /// reaches it can browse and insert through your node.
    #[arg(long)]
    public: bool,
    /// The largest file the gateway fetches or accepts for insertion.
    #[arg(long, default_value = "256MiB", value_parser = parse_max_size)]
    max_size: u64,
}

pub async fn run(a: GatewayArgs) -> Result<ExitCode> {
    // The listen address is checked first: it needs no node.
    if !a.public && !a.listen.ip().is_loopback() {
        return Err(GatewayError::NotLoopback(a.listen).into());
    }
    let node = a.node.endpoint()?;
    let mut config = GatewayConfig::new(node.clone(), a.listen);
    config.public = a.public;
    config.max_size = a.max_size;
    let listener = veil::gateway::bind(&config).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    eprintln!(
        "gateway on http://{} (node {}); Ctrl-C stops it",
        listener.local_addr()?,
        node
    );
    let server = tokio::spawn(veil::gateway::serve(listener, config, stopped));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let _ = stop.send(true);
    server.await.context("the gateway task")??;
    Ok(ExitCode::SUCCESS)
}
