//! `veil keygen`, `veil put --usk`, `veil update` and `veil get` of SSK and
//! USK URIs: the binary's side of [`veil::content::usk`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use zeroize::Zeroize;

use veil::client::{Client, ClientError, Endpoint};
use veil::content::usk::{self, EditionCache};
use veil::freesite::{self, get_signed, Key};
use veil::keys::{Chk, Edition, SskInsertUri, SskPrivate, UskUri};
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
         '<insert URI><site>' FILE` or `--dir DIR`); second line: the request URI, to share"
    );
    Ok(ExitCode::SUCCESS)
}

/// `veil update URI PATH` is `veil put --usk URI PATH`, and `veil put
/// --usk URI --dir PATH` when PATH is a directory (or given as `--dir`).
pub fn update_args(a: UpdateArgs) -> Result<PutArgs> {
    let (file, dir) = match (a.path, a.dir) {
        (Some(p), None) if p.is_dir() => (None, Some(p)),
        (path, dir) => (path, dir),
    };
    Ok(PutArgs {
        node: a.node,
        file,
        dir,
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

/// The newest edition of `site` found through `node`, starting from the
/// cached one.
async fn latest(
    node: &Endpoint,
    site: &UskUri,
    cache: &Option<EditionCache>,
) -> Result<(Option<(u64, Chk)>, Option<u64>)> {
    let known = cache.as_ref().and_then(|c| c.get(&node.to_string(), site));
    let found = usk::find_latest(site, known.unwrap_or(0), |key| get_signed(node, key))
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

/// The CHK behind a `CHK@`, `SSK@…/name` or `USK@…/site/N` key (`N = -1`:
/// the latest edition found, probed from the one the cache remembers).
pub async fn resolve(node: &Endpoint, key: &Key, cache_file: Option<&Path>) -> Result<Chk> {
    let Key::Usk(usk) = key else {
        return Ok(freesite::target(node, key, None).await?.0);
    };
    let mut cache = load(cache_file);
    let known = match usk.edition {
        Edition::Latest => cache.as_ref().and_then(|c| c.get(&node.to_string(), usk)),
        Edition::Number(_) => None,
    };
    let (chk, edition) = freesite::target(node, key, known)
        .await
        .context("looking up the edition")?;
    if let Some(edition) = edition {
        eprintln!("edition {edition}: {}", usk.at(Edition::Number(edition)));
        remember(&mut cache, node, usk, edition);
    }
    Ok(chk)
}
