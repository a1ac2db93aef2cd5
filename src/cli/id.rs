//! `veil id DIR`: a node's public key and listen address as a [[peers]]
//! entry, ready to append to a friend's node.toml.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use veil::config::{NodeConfig, IDENTITY_FILE};
use veil::identity::Identity;

#[derive(clap::Args)]
pub struct IdArgs {
    dir: PathBuf,
}

pub fn run(a: IdArgs) -> Result<ExitCode> {
    let dir = &a.dir;
    let config = NodeConfig::load(dir)?;
    let identity = Identity::load(dir.join(IDENTITY_FILE))
        .with_context(|| format!("reading {}", dir.join(IDENTITY_FILE).display()))?;
    println!("[[peers]]");
    println!("public_key = \"{}\"", identity.public());
    println!("address = \"{}\"", config.listen);
    Ok(ExitCode::SUCCESS)
}
