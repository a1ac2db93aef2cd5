//! Copies of a file's top block at other points of the key space.
//!
//! The top block (the block a file's URI names) has no check blocks, and
//! every insert of it lands near its one routing key, so the nodes there
//! are a single point of failure. Copy `i` (1..=[`TOP_COPIES`]) puts it
//! somewhere else, found from the URI alone:
//!
//! ```text
//! derive(tag, i) = SHA-256(tag || routing key || decryption key || i)     i: one byte
//! copy block     = the top block's plaintext sealed under
//!                  derive("veil/top-copy/key/v1", i)                      (another CHK)
//! pointer        = signed block "top" of the subspace whose ed25519 seed is
//!                  derive("veil/top-copy/sign/v1", i) and crypto key
//!                  derive("veil/top-copy/crypto/v1", i); its data:
//!                  1 (version, one byte) || the copy block's routing key (32 bytes)
//! ```
//!
//! A fetch whose top block fails asks for the pointers, then the copy
//! blocks they name: two lookups per copy, each at an independent point
//! of the key circle. A copy is accepted only if its plaintext, sealed
//! again as a top block, gives exactly the URI: anyone holding the URI can
//! derive the subspace and sign a pointer, but none can make a block that
//! passes. See `docs/protocol.md`, "The top block".

use std::future::Future;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::segment::{unavailable, FetchError, Getter, RetryIf};
use super::ContentError;
use crate::keys::{Block, BlockKind, Chk, DecryptionKey, KeyError, RoutingKey, SskPrivate};

/// How many copies of the top block `veil put` places besides the block
/// itself, and a fetch looks for.
pub const TOP_COPIES: u8 = 3;

/// The document name of every pointer (each copy has its own subspace).
const DOCNAME: &str = "top";
const POINTER_VERSION: u8 = 1;
const POINTER_LEN: usize = 1 + 32;

/// One copy of a top block: the block under its own key, and the signed
/// pointer that names it. Insert the block first.
#[derive(Clone, Debug)]
pub struct TopCopy {
    /// 1-based.
    pub index: u8,
    pub block: Block,
    pub pointer: Block,
}

/// Why a copy did not give the top block (only ever a cause: a fetch that
/// fails reports the top block's own failure).
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("the pointer of copy {0} does not verify or open: {1}")]
    Pointer(u8, KeyError),
    #[error("the pointer of copy {0} is not a version-1 pointer")]
    Format(u8),
    #[error("copy {0} does not open: {1}")]
    Block(u8, KeyError),
    #[error("copy {0} is not the URI's top block")]
    NotTheTop(u8),
}

fn derive(tag: &[u8], uri: &Chk, index: u8) -> [u8; 32] {
    Sha256::new()
        .chain_update(tag)
        .chain_update(uri.routing.0)
        .chain_update(uri.decryption.as_bytes())
        .chain_update([index])
        .finalize()
        .into()
}

fn subspace(uri: &Chk, index: u8) -> SskPrivate {
    SskPrivate::from_seed(
        derive(b"veil/top-copy/sign/v1", uri, index),
        derive(b"veil/top-copy/crypto/v1", uri, index),
    )
}

fn copy_key(uri: &Chk, index: u8) -> DecryptionKey {
    DecryptionKey::from_bytes(derive(b"veil/top-copy/key/v1", uri, index))
}

/// Where the pointer of copy `index` lives.
pub fn pointer_key(uri: &Chk, index: u8) -> RoutingKey {
    subspace(uri, index).public().routing_key(DOCNAME)
}

/// Copies 1..=`count` of the top block `root` of `uri` (which it must
/// open). Deterministic: the same URI always gives the same blocks, so a
/// repeated put stores nothing new and collides with nothing.
pub fn top_copies(uri: &Chk, root: &Block, count: u8) -> Result<Vec<TopCopy>, ContentError> {
    let bad = |e| ContentError::BadBlock {
        key: uri.routing.to_base64(),
        source: e,
    };
    let (_, data) = uri.decode_any(root).map_err(bad)?;
    (1..=count)
        .map(|index| {
            let block = Chk::seal_under(&copy_key(uri, index), &data).map_err(bad)?;
            let mut payload = [0u8; POINTER_LEN];
            payload[0] = POINTER_VERSION;
            payload[1..].copy_from_slice(&block.routing_key().0);
            let (_, pointer) = subspace(uri, index).sign(DOCNAME, &payload).map_err(bad)?;
            Ok(TopCopy {
                index,
                block,
                pointer,
            })
        })
        .collect()
}

/// The routing key of copy `index`'s block, from its pointer.
fn read_pointer(uri: &Chk, index: u8, pointer: &Block) -> Result<RoutingKey, CopyError> {
    let data = subspace(uri, index)
        .public()
        .decode(DOCNAME, pointer)
        .map_err(|e| CopyError::Pointer(index, e))?;
    match data.split_first() {
        Some((&POINTER_VERSION, key)) if data.len() == POINTER_LEN => {
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Ok(RoutingKey(k))
        }
        _ => Err(CopyError::Format(index)),
    }
}

/// The top block again, from copy `index`'s block fetched under `key`:
/// opened under the copy's key, sealed again as a top block of either
/// kind, it must give exactly `uri`.
fn top_from_copy(
    uri: &Chk,
    index: u8,
    key: &RoutingKey,
    block: &Block,
) -> Result<Block, CopyError> {
    block.verify(key).map_err(|e| CopyError::Block(index, e))?;
    let data =
        Chk::open_under(&copy_key(uri, index), block).map_err(|e| CopyError::Block(index, e))?;
    for kind in [BlockKind::Manifest, BlockKind::Data] {
        if let Ok((chk, top)) = Chk::encode_kind(kind, &data) {
            if chk == *uri {
                return Ok(top);
            }
        }
    }
    Err(CopyError::NotTheTop(index))
}

/// One try at copy `index`: its pointer (unless known from an earlier
/// round), then its block.
struct CopyTry {
    index: u8,
    /// The copy block's key, once a pointer was read.
    block_key: Option<RoutingKey>,
    /// The top block, or whether another round is worth it.
    result: Result<Block, bool>,
}

async fn try_copy<F, Fut, E>(
    fetch: F,
    retry_if: RetryIf,
    uri: Chk,
    index: u8,
    known: Option<RoutingKey>,
) -> CopyTry
where
    F: Fn(RoutingKey) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
    E: Into<FetchError>,
{
    let failed = |block_key, again| CopyTry {
        index,
        block_key,
        result: Err(again),
    };
    let worth = |e: E| {
        let e: FetchError = e.into();
        retry_if(e.as_ref())
    };
    let key = match known {
        Some(key) => key,
        None => match fetch(pointer_key(&uri, index)).await {
            Err(e) => return failed(None, worth(e)),
            Ok(pointer) => match read_pointer(&uri, index, &pointer) {
                Ok(key) => key,
                Err(_) => return failed(None, false),
            },
        },
    };
    match fetch(key).await {
        Err(e) => failed(Some(key), worth(e)),
        Ok(block) => match top_from_copy(&uri, index, &key, &block) {
            Ok(top) => CopyTry {
                index,
                block_key: Some(key),
                result: Ok(top),
            },
            Err(_) => failed(Some(key), false),
        },
    }
}

/// What one task of a round found.
enum Found {
    Top(Result<Block, FetchError>),
    Copy(CopyTry),
}

/// The top block of `uri`, unverified when it came itself (the caller
/// opens it), or rebuilt from one of `copies` copies. The block is asked
/// for once; if that fails in a way `getter` would retry, every copy is
/// asked for at once, then rounds of the block and the copies still worth
/// asking, after the getter's backoff, up to its retries. Fails with the
/// top block's own last failure. Without copies: the getter's retries of
/// the block alone, as before copies existed.
pub(super) async fn fetch_top<F, Fut, E>(
    getter: &Getter<F>,
    uri: &Chk,
    copies: u8,
) -> Result<Block, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    if copies == 0 {
        return getter.raw(uri.routing).await;
    }
    let mut top_err: FetchError = match (getter.fetch_block)(uri.routing).await {
        Ok(block) => return Ok(block),
        Err(e) => e.into(),
    };
    if !(getter.retry_if)(top_err.as_ref()) {
        return Err(unavailable(&uri.routing, top_err));
    }
    // Per copy: still worth asking, and its block's key once known.
    let mut wanted = vec![true; usize::from(copies)];
    let mut block_keys: Vec<Option<RoutingKey>> = vec![None; usize::from(copies)];
    for round in 0..=getter.retries {
        let mut tasks = JoinSet::new();
        if round > 0 {
            getter.pause(round - 1).await;
            let fetch = getter.fetch_block.clone();
            let key = uri.routing;
            tasks.spawn(async move { Found::Top(fetch(key).await.map_err(Into::into)) });
        }
        for (slot, index) in (1..=copies).enumerate() {
            if wanted[slot] {
                let (fetch, retry_if, uri) =
                    (getter.fetch_block.clone(), getter.retry_if, uri.clone());
                let known = block_keys[slot];
                tasks.spawn(async move {
                    Found::Copy(try_copy(fetch, retry_if, uri, index, known).await)
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Found::Top(Ok(block)))
                | Ok(Found::Copy(CopyTry {
                    result: Ok(block), ..
                })) => return Ok(block),
                Ok(Found::Top(Err(e))) => {
                    if !(getter.retry_if)(e.as_ref()) {
                        return Err(unavailable(&uri.routing, e));
                    }
                    top_err = e;
                }
                Ok(Found::Copy(CopyTry {
                    index,
                    block_key,
                    result: Err(again),
                })) => {
                    let slot = usize::from(index - 1);
                    block_keys[slot] = block_key.or(block_keys[slot]);
                    wanted[slot] = again;
                }
                // A task that panicked: the others go on.
                Err(_) => {}
            }
        }
    }
    Err(unavailable(&uri.routing, top_err))
}

#[cfg(test)]
#[path = "copies_tests.rs"]
mod tests;
