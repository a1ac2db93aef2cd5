//! Whole files over a node's client API: split and insert, fetch and
//! reassemble. Used by `veil put`/`veil get` and the testnet workload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::content::{self, ContentError};
use crate::error::{ErrorKind, HasKind};
use crate::keys::Chk;

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

/// Split `data`, insert every block through the node at `node` with at most
/// `concurrency` blocks in flight (the root last, so the URI only resolves
/// once everything is in), and return the URI. `on_block` is called after
/// each block with (done, total).
pub async fn put_file(
    node: SocketAddr,
    data: &[u8],
    concurrency: usize,
    on_block: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Result<Chk, TransferError> {
    let split = content::split(data)?;
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

/// Fetch the file named by `uri` through the node at `node`, verifying every
/// block, the length and the whole-file hash.
pub async fn get_file(
    node: SocketAddr,
    uri: &Chk,
    concurrency: usize,
) -> Result<Vec<u8>, TransferError> {
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
    Ok(content::fetch(uri, concurrency.clamp(1, 64), fetch_block).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Failure;

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
