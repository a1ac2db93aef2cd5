//! `veil node DIR`: run a node in the foreground until Ctrl-C or SIGTERM;
//! `veil node DIR --check`: load and check it without starting it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use veil::node::{NodeError, NodeSetup};

use super::one_line;
use super::output::show;

#[derive(clap::Args)]
pub struct NodeArgs {
    dir: PathBuf,
    /// Testnet mode (audit logs, placement command) regardless of node.toml.
    #[arg(long)]
    testnet: bool,
    /// Load node.toml, identity.key and the peers as the node would, check
    /// them, print a summary and exit (0: it would start). Opens no socket.
    #[arg(long)]
    check: bool,
    /// With --check: print the summary as JSON.
    #[arg(long, requires = "check")]
    json: bool,
}

pub fn run(a: NodeArgs) -> Result<ExitCode> {
    if a.check {
        let checked = veil::node::check::check(&a.dir, a.testnet)
            .with_context(|| format!("node {} would not start", a.dir.display()))?;
        let json = serde_json::to_string_pretty(&checked).context("writing the summary as JSON")?;
        show(a.json, json, checked.render_text());
        return Ok(ExitCode::SUCCESS);
    }
    let mut setup = NodeSetup::load(&a.dir)?;
    setup.config.testnet |= a.testnet;
    runtime(setup.config.runtime.worker_threads)?.block_on(serve(setup))
}

/// A node's runtime: `runtime.worker_threads` threads (0: one per core).
fn runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .context("starting the node's async runtime")
}

async fn serve(setup: NodeSetup) -> Result<ExitCode> {
    let grace_ms = setup.config.runtime.shutdown_grace_ms;
    let running = match veil::node::start(setup).await {
        // The testnet tells this failure from others by the exit status.
        Err(e @ NodeError::Bind { .. }) => {
            eprintln!("veil: {}", one_line(&e.into()));
            return Ok(ExitCode::from(veil::testnet::EXIT_CANNOT_LISTEN));
        }
        started => started?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.leave(Duration::from_millis(grace_ms)).await;
    Ok(ExitCode::SUCCESS)
}
