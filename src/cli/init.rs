//! `veil init DIR`: a new node directory, node.toml and identity.key (0600).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use veil::client::Endpoint;
use veil::config::{NodeConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::Identity;

#[derive(clap::Args)]
pub struct InitArgs {
    dir: PathBuf,
    /// Address for peer links.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Serve the client API on this TCP address (clients then need the
    /// cookie file NODE_DIR/client.cookie) instead of the default Unix
    /// socket NODE_DIR/client.sock.
    #[arg(long)]
    client: Option<SocketAddr>,
    /// Serve FCPv2, Freenet's client protocol, on this address (Freenet's
    /// tools use 127.0.0.1:9481); loopback only (see docs/fcp.md).
    #[arg(long, value_name = "ADDR")]
    fcp: Option<SocketAddr>,
    /// Location in [0, 1); derived from the public key when absent.
    #[arg(long)]
    location: Option<f64>,
}

pub fn run(a: InitArgs) -> Result<ExitCode> {
    let (dir, listen, client) = (a.dir.as_path(), a.listen, a.client);
    if dir.join(CONFIG_FILE).exists() {
        bail!(
            "{}: already exists; refusing to overwrite",
            dir.join(CONFIG_FILE).display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config = NodeConfig::new(listen, client, a.location);
    config.fcp = a.fcp;
    let client = Endpoint::of_config(dir, client);
    config.validate().map_err(anyhow::Error::msg)?;
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    identity
        .save(dir.join(IDENTITY_FILE))
        .with_context(|| format!("writing {}", dir.join(IDENTITY_FILE).display()))?;
    config.save(dir)?;
    println!("{}", identity.public());
    eprintln!(
        "created {} (listen {listen}, client {client}); add friends with `veil add-peer`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
