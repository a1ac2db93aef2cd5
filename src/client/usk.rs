//! Sites under updatable keys, as every front end publishes them: a fresh
//! key pair, an insert URI checked before anything is inserted, the next
//! edition found through a node, and an edition signed and inserted.
//!
//! Reading an edition (`USK@…/site/N`, or `-1` for the newest found) is
//! [`super::site::target`]. Which edition a front end last saw (the CLI's
//! [`EditionCache`](crate::content::usk::EditionCache) file, the gateway's
//! memory) is the front end's to keep: it passes it in as `known`.

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::site::{get_signed, SiteError};
use super::transfer::BLOCK_TIMEOUT;
use super::{Client, ClientError, Endpoint};
use crate::content::usk::redirect_payload;
use crate::content::usk::{find_latest, sign_edition};
use crate::keys::{Chk, Edition, SskInsertUri, SskPrivate, SskUri, UskUri};
use crate::routing::Failure;

/// A fresh signing key pair and crypto key: the insert URI of a new site
/// space (its request URI is [`SskInsertUri::public`]).
pub fn keygen(rng: &mut (impl RngCore + CryptoRng)) -> SskInsertUri {
    let mut seed = [0u8; 32];
    let mut crypto = [0u8; 32];
    rng.fill_bytes(&mut seed);
    rng.fill_bytes(&mut crypto);
    let insert = SskInsertUri {
        key: SskPrivate::from_seed(seed, crypto),
        docname: String::new(),
    };
    seed.zeroize();
    crypto.zeroize();
    insert
}

/// The insert URI of a site (`SSK@<private>,<crypto key>/<site>`), checked
/// before anything is inserted.
pub fn parse_insert(text: &str) -> Result<SskInsertUri, SiteError> {
    let insert: SskInsertUri = text.parse().map_err(SiteError::InsertUri)?;
    UskUri::of_insert(&insert, Edition::Latest).map_err(|_| SiteError::NoSiteName)?;
    Ok(insert)
}

/// The edition after the newest one found through `node`, probing forward
/// from `known` (the newest this front end has seen); 0 for a new site.
pub async fn next_edition(
    node: &Endpoint,
    site: &SskInsertUri,
    known: Option<u64>,
) -> Result<u64, SiteError> {
    let public = UskUri::of_insert(site, Edition::Latest).map_err(|_| SiteError::NoSiteName)?;
    let found = find_latest(&public, known.unwrap_or(0), |key| get_signed(node, key)).await?;
    match (found, known) {
        (Some((n, _)), _) => n.checked_add(1).ok_or(SiteError::EditionOverflow),
        (None, Some(known)) => Ok(known.saturating_add(1)),
        (None, None) => Ok(0),
    }
}

/// Sign edition `edition` of `site` pointing at `content` and insert it;
/// the edition's public `USK@` URI. An edition that already exists with
/// other content is refused ([`SiteError::Collision`]), the original kept.
pub async fn publish(
    node: &Endpoint,
    site: &SskInsertUri,
    edition: u64,
    content: &Chk,
) -> Result<UskUri, SiteError> {
    let (_, block, usk) = sign_edition(site, edition, content).map_err(SiteError::InsertUri)?;
    let mut client = Client::connect(node, BLOCK_TIMEOUT).await?;
    match client.insert(block).await {
        Ok(()) => Ok(usk),
        Err(ClientError::Network(Failure::Collision)) => Err(SiteError::Collision(edition)),
        Err(e) => Err(e.into()),
    }
}

/// Sign the document `insert` names (`SSK@<private>,<crypto key>/<name>`)
/// pointing at `content` and insert it; its public `SSK@` URI. A document
/// that already exists with other content is refused
/// ([`SiteError::SignedCollision`]), the original kept.
pub async fn publish_ssk(
    node: &Endpoint,
    insert: &SskInsertUri,
    content: &Chk,
) -> Result<SskUri, SiteError> {
    let payload = redirect_payload(content).map_err(SiteError::InsertUri)?;
    let (_, block) = insert
        .key
        .sign(&insert.docname, &payload)
        .map_err(SiteError::InsertUri)?;
    let mut client = Client::connect(node, BLOCK_TIMEOUT).await?;
    match client.insert(block).await {
        Ok(()) => Ok(insert.public()),
        Err(ClientError::Network(Failure::Collision)) => {
            Err(SiteError::SignedCollision(insert.public().to_string()))
        }
        Err(e) => Err(e.into()),
    }
}
