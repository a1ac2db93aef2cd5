//! `veil keygen`, `veil put --usk`, `veil update` and `veil get` of SSK and
//! USK URIs: the binary's side of [`veil::content::usk`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use zeroize::Zeroize;

use veil::client::{Client, ClientError, Endpoint};
use veil::content::usk::{self, EditionCache};
use veil::keys::{Block, Chk, Edition, RoutingKey, SskInsertUri, SskPrivate, SskUri, UskUri};
use veil::routing::Failure;
use veil::transfer::BLOCK_TIMEOUT;

use crate::cli::{PutArgs, UpdateArgs};

/// `veil keygen`: a fresh key pair and crypto key from the OS generator.
pub fn keygen() -> Result<ExitCode> {
    let mut seed = [0u8; 32];
    let mut crypto = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    rand::rngs::OsRng.fill_bytes(&mut crypto);
    let insert = SskInsertUri {
        key: SskPrivate::from_seed(seed, crypto),
        docname: String::new(),
    };
    seed.zeroize();
    crypto.zeroize();
    println!("{insert}");
    println!("{}", insert.public());
    eprintln!(
        "first line: the insert URI, keep it secret (publish with `veil put --usk \
         '<insert URI><site>' FILE`); second line: the request URI, to share"
    );
    Ok(ExitCode::SUCCESS)
}

/// `veil update URI PATH` is `veil put --usk URI PATH`.
pub fn update_args(a: UpdateArgs) -> Result<PutArgs> {
    if a.path.is_dir() {
        bail!(
            "{} is a directory: this build updates a site from a file (directory \
             manifests come with `veil put --dir`)",
            a.path.display()
        );
    }
    Ok(PutArgs {
        node: a.node,
        file: a.path,
        concurrency: 128,
        redundancy: veil::content::DEFAULT_REDUNDANCY,
        usk: Some(a.uri),
        edition: None,
        usk_cache: a.usk_cache,
    })
}

/// The insert URI of a site, checked before anything is inserted.
pub fn parse_insert(text: &str) -> Result<SskInsertUri> {
    let insert: SskInsertUri = text
        .parse()
        .context("invalid insert URI (SSK@<private>,<crypto key>/<site>)")?;
    UskUri::of_insert(&insert, Edition::Latest)
        .context("the insert URI must end in a site name: SSK@<private>,<crypto key>/<site>")?;
    Ok(insert)
}

/// The edition cache file to use.
pub fn cache_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(EditionCache::default_path)
}

/// Fetch one block; not found is `None`.
async fn get_block(node: &Endpoint, key: RoutingKey) -> Result<Option<Block>, ClientError> {
    let mut client = Client::connect(node, BLOCK_TIMEOUT).await?;
    match client.get(key).await {
        Ok(block) => Ok(Some(block)),
        Err(ClientError::Network(Failure::DataNotFound | Failure::RouteNotFound)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The newest edition of `site` found through `node`, starting from the
/// cached one.
async fn latest(
    node: &Endpoint,
    site: &UskUri,
    cache: &Option<EditionCache>,
) -> Result<(Option<(u64, Chk)>, Option<u64>)> {
    let known = cache.as_ref().and_then(|c| c.get(&node.to_string(), site));
    let found = usk::find_latest(site, known.unwrap_or(0), |key| get_block(node, key))
        .await
        .context("searching for the latest edition")?;
    Ok((found, known))
}

/// Sign edition `edition` (default: the next) of `site` pointing at
/// `content`, insert it, remember it, and return its USK.
pub async fn publish(
    node: &Endpoint,
    site: &SskInsertUri,
    edition: Option<u64>,
    content: &Chk,
    cache_file: Option<&Path>,
) -> Result<UskUri> {
    let public = UskUri::of_insert(site, Edition::Latest)?;
    let mut cache = load(cache_file);
    let edition = match edition {
        Some(n) => n,
        None => match latest(node, &public, &cache).await? {
            (Some((n, _)), _) => n.checked_add(1).context("edition number overflow")?,
            (None, Some(known)) => known.saturating_add(1),
            (None, None) => 0,
        },
    };
    let (_, block, usk) = usk::sign_edition(site, edition, content)?;
    let mut client = Client::connect(node, BLOCK_TIMEOUT).await?;
    match client.insert(block).await {
        Ok(()) => {}
        Err(ClientError::Network(Failure::Collision)) => bail!(
            "edition {edition} of this site already exists with other content \
             (collision); the original is kept: insert another edition"
        ),
        Err(e) => return Err(e).context(format!("inserting edition {edition}")),
    }
    remember(&mut cache, node, &usk, edition);
    Ok(usk)
}

fn load(path: Option<&Path>) -> Option<EditionCache> {
    path.map(EditionCache::load)
}

/// Remember an edition seen; a cache that cannot be written is only noted.
fn remember(cache: &mut Option<EditionCache>, node: &Endpoint, usk: &UskUri, edition: u64) {
    if let Some(Err(e)) = cache
        .as_mut()
        .map(|c| c.remember(&node.to_string(), usk, edition))
    {
        eprintln!("note: {e}");
    }
}

/// The CHK behind a `CHK@`, `SSK@…/name` or `USK@…/site/N` URI (`N = -1`:
/// the latest edition found, remembered in the cache).
pub async fn resolve(node: &Endpoint, uri: &str, cache_file: Option<&Path>) -> Result<Chk> {
    let uri = uri.trim();
    if uri.starts_with("SSK@") {
        let ssk: SskUri = uri.parse().context("invalid SSK URI")?;
        let block = get_block(node, ssk.routing_key())
            .await?
            .context("no block under this SSK")?;
        let payload = ssk.key.decode(&ssk.docname, &block)?;
        return std::str::from_utf8(&payload)
            .ok()
            .and_then(|t| t.parse().ok())
            .context("the SSK's payload is not a CHK URI");
    }
    if !uri.starts_with("USK@") {
        return uri.parse().context("invalid URI");
    }
    let usk: UskUri = uri.parse().context("invalid USK URI")?;
    let mut cache = load(cache_file);
    let (edition, chk) = match usk.edition {
        Edition::Number(n) => {
            let block = get_block(node, usk.edition_uri(n).routing_key())
                .await?
                .with_context(|| format!("edition {n} not found"))?;
            (n, usk::open_edition(&usk, n, &block)?)
        }
        Edition::Latest => match latest(node, &usk, &cache).await? {
            (Some(found), _) => found,
            (None, known) => {
                let from = known.unwrap_or(0);
                return Err(usk::UskError::NoEdition {
                    from,
                    to: from + usk::MAX_PROBES - 1,
                })
                .context("searching for the latest edition");
            }
        },
    };
    eprintln!("edition {edition}: {}", usk.at(Edition::Number(edition)));
    remember(&mut cache, node, &usk, edition);
    Ok(chk)
}
