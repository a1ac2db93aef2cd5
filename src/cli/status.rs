//! `veil status`: a node's peers, store usage and counters.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use veil::client::Client;

use super::args::NodeArg;
use super::output::show;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    node: NodeArg,
    #[arg(long)]
    json: bool,
}

pub async fn run(a: StatusArgs) -> Result<ExitCode> {
    let node = a.node.endpoint()?;
    let status = Client::connect(&node, Duration::from_secs(10))
        .await?
        .status()
        .await?;
    let text = status.render_text();
    let output = veil::formats::status::StatusOutput {
        version: Default::default(),
        status,
    };
    show(a.json, serde_json::to_string_pretty(&output)?, text);
    Ok(ExitCode::SUCCESS)
}
