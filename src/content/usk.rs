//! Updatable keys (USK): numbered editions of a site over signed keys.
//!
//! Edition `N` of site `s` is the signed (SSK) block named `s-N`
//! ([`crate::keys::uri::edition_docname`]). Its payload is a redirect: the
//! UTF-8 URI of the edition's content (`CHK@…`, a file inserted as usual).
//! Nothing links editions on the wire: each is its own routing key, and
//! only a holder of the request URI can compute them.
//!
//! The latest edition is found by probing forward ([`find_latest`]): ask for
//! editions `from, from+1, …` and stop after [`PROBE_GAP`] misses in a row
//! or [`MAX_PROBES`] asks. An [`EditionCache`] file remembers, per node and
//! site, the newest edition seen, so the next probe starts there. The
//! network is reached through a closure, as in [`super::fetch()`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::keys::{Block, Chk, KeyError, RoutingKey, SskInsertUri, UskUri, SSK_DATA_LEN};

/// Most editions asked for in one search for the latest.
pub const MAX_PROBES: u64 = 16;
/// Misses in a row that end a search for the latest.
pub const PROBE_GAP: u64 = 2;
/// Largest edition cache file read.
const MAX_CACHE_FILE: u64 = 1 << 20;
/// Most sites an edition cache remembers (beyond it, entries are dropped in
/// hash order).
const MAX_CACHE_ENTRIES: usize = 4096;

/// Why a USK operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UskError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("edition {0}'s redirect is not a CHK URI")]
    BadRedirect(u64),
    #[error("no edition found (asked for editions {from} to {to})")]
    NoEdition { from: u64, to: u64 },
    #[error("edition cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The network (or the node) failed; its error.
    #[error(transparent)]
    Network(Box<dyn std::error::Error + Send + Sync>),
}

/// The payload of an edition: its content's URI.
pub fn redirect_payload(target: &Chk) -> Result<Vec<u8>, KeyError> {
    let bytes = target.to_uri().into_bytes();
    if bytes.len() > SSK_DATA_LEN {
        return Err(KeyError::DataTooLong(bytes.len()));
    }
    Ok(bytes)
}

/// Sign edition `edition` of the site `insert` names, pointing at `target`:
/// the routing key, the block, and the public USK of that edition.
pub fn sign_edition(
    insert: &SskInsertUri,
    edition: u64,
    target: &Chk,
) -> Result<(RoutingKey, Block, UskUri), KeyError> {
    let usk = UskUri::of_insert(insert, crate::keys::Edition::Number(edition))?;
    let docname = usk.edition_uri(edition).docname;
    let (key, block) = insert.key.sign(&docname, &redirect_payload(target)?)?;
    Ok((key, block, usk))
}

/// Open edition `edition` of `usk` from its block: the content's URI.
pub fn open_edition(usk: &UskUri, edition: u64, block: &Block) -> Result<Chk, UskError> {
    let ssk = usk.edition_uri(edition);
    let payload = ssk.key.decode(&ssk.docname, block)?;
    let text = std::str::from_utf8(&payload).map_err(|_| UskError::BadRedirect(edition))?;
    text.parse().map_err(|_| UskError::BadRedirect(edition))
}

/// The newest edition of `usk` found by probing forward from `from`, with
/// its content URI; `None` when none of the editions asked for exists.
///
/// `get` asks the network for a routing key: `Ok(Some(block))` found,
/// `Ok(None)` not found, `Err` any other failure (which ends the search).
pub async fn find_latest<F, Fut, E>(
    usk: &UskUri,
    from: u64,
    mut get: F,
) -> Result<Option<(u64, Chk)>, UskError>
where
    F: FnMut(RoutingKey) -> Fut,
    Fut: Future<Output = Result<Option<Block>, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut latest = None;
    let mut misses = 0;
    for edition in from..from.saturating_add(MAX_PROBES) {
        let key = usk.edition_uri(edition).routing_key();
        match get(key).await.map_err(|e| UskError::Network(Box::new(e)))? {
            Some(block) => {
                latest = Some((edition, open_edition(usk, edition, &block)?));
                misses = 0;
            }
            None => {
                misses += 1;
                if misses >= PROBE_GAP {
                    break;
                }
            }
        }
    }
    Ok(latest)
}

/// Per node and site, the newest edition seen: a small JSON file. Entries
/// are keyed by a hash of the node's address and the site's first routing
/// key, so the file does not list the sites in clear.
#[derive(Debug)]
pub struct EditionCache {
    path: PathBuf,
    entries: BTreeMap<String, u64>,
}

impl EditionCache {
    /// The default file: `$XDG_CACHE_HOME/veil/usk-editions.json`, else
    /// `$HOME/.cache/veil/usk-editions.json`; `None` without either.
    pub fn default_path() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        Some(base.join("veil").join("usk-editions.json"))
    }

    /// Read the cache at `path`; a missing, oversized or unreadable file
    /// is an empty cache (it is only a hint).
    pub fn load(path: &Path) -> EditionCache {
        let entries = std::fs::metadata(path)
            .ok()
            .filter(|m| m.len() <= MAX_CACHE_FILE)
            .and_then(|_| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        EditionCache {
            path: path.to_path_buf(),
            entries,
        }
    }

    fn entry(node: &str, usk: &UskUri) -> String {
        let first = usk.edition_uri(0).routing_key();
        let digest = Sha256::new()
            .chain_update(b"veil/usk-cache/v1")
            .chain_update(node.as_bytes())
            .chain_update(first.0)
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The newest edition of `usk` seen through `node`.
    pub fn get(&self, node: &str, usk: &UskUri) -> Option<u64> {
        self.entries.get(&Self::entry(node, usk)).copied()
    }

    /// Remember `edition` (if newer) and write the file (atomically).
    pub fn remember(&mut self, node: &str, usk: &UskUri, edition: u64) -> Result<(), UskError> {
        let slot = self.entries.entry(Self::entry(node, usk)).or_insert(0);
        *slot = (*slot).max(edition);
        while self.entries.len() > MAX_CACHE_ENTRIES {
            self.entries.pop_first();
        }
        let io = |source| UskError::Cache {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_vec_pretty(&self.entries).map_err(|e| io(e.into()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
#[path = "usk_tests.rs"]
mod tests;
