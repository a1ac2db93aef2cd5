//! `veil add-peer` and `veil remove-peer`: through a running node's client
//! API (the node changes its links and writes its own node.toml), or on
//! node.toml alone when the node in NODE_DIR is not running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use veil::client::{Client, Endpoint};
use veil::config::{NodeConfig, PeerConfig, CONFIG_FILE, IDENTITY_FILE};
use veil::identity::{Identity, PeerKey};

use super::args::ClientArg;

#[derive(clap::Args)]
pub struct AddPeerArgs {
    /// NODE_DIR (absent with --client).
    #[arg(value_name = "NODE_DIR")]
    first: Option<String>,
    /// The friend's listen address.
    #[arg(value_name = "ADDRESS", allow_hyphen_values = true)]
    second: Option<String>,
    /// The friend's public key (from `veil id`). Keys may start with '-'.
    #[arg(value_name = "PUBLIC_KEY", allow_hyphen_values = true)]
    third: Option<String>,
    #[command(flatten)]
    client: ClientArg,
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
pub struct RemovePeerArgs {
    /// NODE_DIR (absent with --client).
    #[arg(value_name = "NODE_DIR")]
    first: Option<String>,
    /// The friend's public key. Keys may start with '-'.
    #[arg(value_name = "PUBLIC_KEY", allow_hyphen_values = true)]
    second: Option<String>,
    #[command(flatten)]
    client: ClientArg,
}

/// How long to wait for a node's client API.
const CONNECT: Duration = Duration::from_secs(5);

/// Which node a membership command acts on.
enum Target {
    Dir(PathBuf),
    Client(Endpoint),
}

/// With `--client` the positionals shift left: the first is not a NODE_DIR.
fn target<'a>(
    client: Option<Endpoint>,
    positionals: &'a [Option<String>],
    wanted: &str,
) -> Result<(Target, Vec<&'a str>)> {
    let given: Vec<&str> = positionals.iter().flatten().map(String::as_str).collect();
    let n = wanted.split(' ').count();
    match client {
        Some(addr) if given.len() == n => Ok((Target::Client(addr), given)),
        None if given.len() == n + 1 => {
            Ok((Target::Dir(PathBuf::from(given[0])), given[1..].to_vec()))
        }
        Some(_) => bail!("with --client, give {wanted}"),
        None => bail!("give NODE_DIR {wanted}, or --client SOCKET {wanted}"),
    }
}

fn key(text: &str) -> Result<PeerKey> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a public key: {e}"))
}

/// The running node's client: at `--client`, or the one NODE_DIR's
/// node.toml names if the node answering there is that node. `None` when
/// the node in NODE_DIR is not running.
async fn running(target: &Target) -> Result<Option<Client>> {
    match target {
        Target::Client(addr) => Client::connect(addr, CONNECT)
            .await
            .map(Some)
            .with_context(|| format!("no node answers at {addr}")),
        Target::Dir(dir) => {
            let config = NodeConfig::load(dir)?;
            let identity = Identity::load(dir.join(IDENTITY_FILE))
                .with_context(|| format!("reading {}", dir.join(IDENTITY_FILE).display()))?;
            let endpoint = Endpoint::of_config(dir, config.client);
            let Ok(mut client) = Client::connect(&endpoint, CONNECT).await else {
                return Ok(None);
            };
            let ours = identity.public().to_string();
            match client.status().await {
                Ok(status) if status.public_key == ours => Ok(Some(client)),
                _ => Ok(None),
            }
        }
    }
}

pub async fn add(a: AddPeerArgs) -> Result<ExitCode> {
    let positionals = [a.first, a.second, a.third];
    let client = a.client.endpoint()?;
    let (target, rest) = target(client, &positionals, "ADDRESS PUBLIC_KEY")?;
    let address: SocketAddr = rest[0]
        .parse()
        .with_context(|| format!("{:?} is not an address", rest[0]))?;
    let peer = PeerConfig {
        address,
        public_key: key(rest[1])?,
        name: a.name,
    };
    if let Some(mut client) = running(&target).await? {
        let key = peer.public_key;
        client.add_peer(peer).await.context("add-peer")?;
        eprintln!("peer {key} added to the running node and its node.toml");
        return Ok(ExitCode::SUCCESS);
    }
    let Target::Dir(dir) = target else {
        bail!("no node answers on the client address");
    };
    let mut config = NodeConfig::load(&dir)?;
    if config.peers.iter().any(|p| p.public_key == peer.public_key) {
        bail!(
            "{}: a peer with key {} is already configured",
            dir.join(CONFIG_FILE).display(),
            peer.public_key
        );
    }
    config.peers.push(peer);
    config.save(&dir)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(a: RemovePeerArgs) -> Result<ExitCode> {
    let positionals = [a.first, a.second];
    let client = a.client.endpoint()?;
    let (target, rest) = target(client, &positionals, "PUBLIC_KEY")?;
    let public_key = key(rest[0])?;
    if let Some(mut client) = running(&target).await? {
        client
            .remove_peer(public_key)
            .await
            .context("remove-peer")?;
        eprintln!("peer {public_key} removed from the running node and its node.toml");
        return Ok(ExitCode::SUCCESS);
    }
    let Target::Dir(dir) = target else {
        bail!("no node answers on the client address");
    };
    remove_offline(&dir, &public_key)?;
    Ok(ExitCode::SUCCESS)
}

fn remove_offline(dir: &Path, public_key: &PeerKey) -> Result<()> {
    let mut config = NodeConfig::load(dir)?;
    let before = config.peers.len();
    config.peers.retain(|p| p.public_key != *public_key);
    if config.peers.len() == before {
        bail!(
            "{}: no peer with key {public_key} is configured",
            dir.join(CONFIG_FILE).display()
        );
    }
    config.save(dir)?;
    Ok(())
}
