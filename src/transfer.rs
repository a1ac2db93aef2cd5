//! Whole files over a node's client API: split and insert, fetch and
//! reassemble. Used by `veil put`/`veil get` and the testnet workload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::content::{self, ContentError, FetchOptions, Progress, SplitOptions};
use crate::error::{ErrorKind, HasKind};
use crate::keys::Chk;
use crate::routing::Failure;
use sha2::{Digest, Sha256};

/// How long one block request may take end to end.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(150);

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("an insert worker stopped unexpectedly: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

impl HasKind for TransferError {
    /// A block that could not be fetched has the kind of the client error
    /// behind it; data that does not verify is [`ErrorKind::BadData`].
    fn kind(&self) -> ErrorKind {
        match self {
            TransferError::Client(e) => e.kind(),
            TransferError::Content(e) if e.is_bad_data() => ErrorKind::BadData,
            TransferError::Content(e) => e
                .unavailable_cause()
                .and_then(|cause| cause.downcast_ref::<ClientError>())
                .map_or(ErrorKind::Local, HasKind::kind),
            TransferError::Worker(_) => ErrorKind::Local,
        }
    }
}

/// Split `data` with the default options (100% redundancy), insert every
/// block through the node at `node` with at most `concurrency` blocks in
/// flight (the root last, so the URI only resolves once everything is in),
/// and return the URI. `on_block` is called after each block with (done,
/// total).
pub async fn put_file(
    node: SocketAddr,
    data: &[u8],
    concurrency: usize,
    on_block: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Chk, TransferError> {
    put_file_with(node, data, concurrency, &SplitOptions::default(), on_block).await
}

/// [`put_file`] with the splitting options (redundancy, segment size).
pub async fn put_file_with(
    node: SocketAddr,
    data: &[u8],
    concurrency: usize,
    split: &SplitOptions,
    on_block: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Chk, TransferError> {
    let split = content::split_with(data, split)?;
    let total = split.blocks.len();
    let mut blocks = split.blocks;
    let Some(root) = blocks.pop() else {
        return Ok(split.uri);
    };
    blocks.reverse(); // workers pop from the end: insert in split order
    let queue = Arc::new(std::sync::Mutex::new(blocks));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let on_block = Arc::new(on_block);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, 64) {
        let queue = queue.clone();
        let done = done.clone();
        let on_block = on_block.clone();
        workers.spawn(async move {
            let mut client: Option<Client> = None;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(block) = next else {
                    return Ok::<(), ClientError>(());
                };
                if client.is_none() {
                    client = Some(Client::connect(node, BLOCK_TIMEOUT).await?);
                }
                if let Some(c) = client.as_mut() {
                    c.insert(block).await?;
                }
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                on_block(n, total);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(TransferError::Worker)??;
    }
    Client::connect(node, BLOCK_TIMEOUT)
        .await?
        .insert(root)
        .await?;
    on_block(total, total);
    Ok(split.uri)
}

/// Whether a failed block request through the node is worth asking again:
/// not found, timed out, overloaded, or the connection lost mid-request.
/// Not when the node cannot be reached at all, has no peers, refuses, or
/// sent something that does not verify.
pub fn worth_retrying(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Network(f)) => !matches!(f, Failure::NoPeers),
        Some(ClientError::Timeout(_) | ClientError::Io(_) | ClientError::Closed) => true,
        _ => false,
    }
}

/// The fetch options `veil get` starts from: the defaults, retrying only
/// what [`worth_retrying`] says.
pub fn get_options(concurrency: usize) -> FetchOptions {
    FetchOptions {
        concurrency: concurrency.clamp(1, 64),
        retry_if: worth_retrying,
        ..FetchOptions::default()
    }
}

/// Fetch the file named by `uri` through the node at `node`, verifying every
/// block, the length and the whole-file hash ([`get_options`]).
pub async fn get_file(
    node: SocketAddr,
    uri: &Chk,
    concurrency: usize,
) -> Result<Vec<u8>, TransferError> {
    let mut out = Vec::new();
    get_to_writer(node, uri, &get_options(concurrency), &mut out, |_| {}).await?;
    Ok(out)
}

/// Fetch the file named by `uri` through the node at `node` into `writer`
/// (see [`content::fetch_to_writer`]: discard what was written on error).
pub async fn get_to_writer<W: tokio::io::AsyncWrite + Unpin>(
    node: SocketAddr,
    uri: &Chk,
    opts: &FetchOptions,
    writer: &mut W,
    on_progress: impl FnMut(Progress),
) -> Result<u64, TransferError> {
    // Unless told otherwise, the order blocks are asked for is random per
    // file and node but the same each time: a second get through the same
    // node asks for the same blocks, which its client cache holds, while
    // other nodes spread over other check blocks.
    let mut opts = *opts;
    if opts.seed.is_none() {
        let digest = Sha256::new()
            .chain_update(uri.routing.0)
            .chain_update(node.to_string())
            .finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        opts.seed = Some(u64::from_le_bytes(seed));
    }
    // Idle connections to the node, reused across block fetches.
    let pool: Arc<std::sync::Mutex<Vec<Client>>> = Arc::default();
    let fetch_block = move |key| {
        let pool = pool.clone();
        async move {
            let idle = pool.lock().ok().and_then(|mut p| p.pop());
            let mut client = match idle {
                Some(c) => c,
                None => Client::connect(node, BLOCK_TIMEOUT).await?,
            };
            let block = client.get(key).await?;
            if let Ok(mut p) = pool.lock() {
                p.push(client);
            }
            Ok::<_, ClientError>(block)
        }
    };
    Ok(content::fetch_to_writer(uri, &opts, fetch_block, writer, on_progress).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_that_could_not_be_fetched_has_the_kind_of_its_cause() {
        let missing = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: Box::new(ClientError::Network(Failure::DataNotFound)),
        });
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let down = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: Box::new(ClientError::Closed),
        });
        assert_eq!(down.kind(), ErrorKind::NodeDown);
        let other = TransferError::Content(ContentError::BlockUnavailable {
            key: "k".into(),
            source: "not a client error".into(),
        });
        assert_eq!(other.kind(), ErrorKind::Local);
        let bad = TransferError::Content(ContentError::HashMismatch);
        assert_eq!(bad.kind(), ErrorKind::BadData);
        assert!(bad.kind().peer_at_fault());
        let client = TransferError::Client(ClientError::Network(Failure::NoPeers));
        assert_eq!(client.kind(), ErrorKind::NoPeers);
    }
}
