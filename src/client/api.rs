//! The local client API: how `veil put`, `veil get` and `veil status` talk
//! to a running node.
//!
//! A connection to the node's client API (a Unix socket in the node
//! directory by default, or a TCP address with a cookie: see [`endpoint`])
//! carries requests and responses one at a time, each framed as a 4-byte
//! big-endian length followed by that many bytes of CBOR. Frames above
//! [`MAX_CLIENT_FRAME`] are refused before allocation. The node only ever
//! sees encrypted blocks: files are split and encrypted by the client, so
//! decryption keys never reach the node.
//!
//! # Failures
//!
//! A request the network could not carry out is answered with the routing
//! core's own [`Failure`] ([`ClientResponse::NetworkFailed`]); the client
//! turns it into [`ClientError::Network`]. Every [`ClientError`] says what
//! kind of failure it was through [`HasKind::kind`], so callers (the CLI,
//! the testnet workload) can tell apart data not found within the search
//! budget, a timeout, a node that is down, no connected peers and overload
//! without reading error text.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::config::PeerConfig;
use crate::error::{ErrorKind, HasKind};
use crate::identity::PeerKey;
use crate::keys::{Block, RoutingKey};
use crate::routing::{ClientOutcome, Failure};

use super::endpoint::{self, Endpoint};
use super::status::NodeStatus;

/// Largest client frame: one block plus room for the envelope.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// A request to the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Fetch the block with this routing key from the network.
    Get { key: RoutingKey },
    /// Insert this (already encrypted) block into the network.
    Insert { block: Block },
    /// Report peers, store usage and counters.
    Status,
    /// Testnet only: put a block straight into this node's store.
    Place { block: Block },
    /// Testnet only: pause (`on = false`) or resume this node's swap
    /// attempts; answered with the status.
    Swapping { on: bool },
    /// Testnet only: route from now on by these rules; answered with the
    /// status.
    Routing {
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
    },
    /// Befriend a peer now, and write it to `node.toml`.
    AddPeer { peer: PeerConfig },
    /// Drop a friend now (closing its link), and from `node.toml`.
    RemovePeer { public_key: PeerKey },
}

/// The node's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientResponse {
    Found {
        block: Block,
    },
    Inserted,
    Placed,
    /// An `AddPeer` or `RemovePeer` took effect and is in `node.toml`.
    PeersChanged,
    Status(Box<NodeStatus>),
    /// The node would not or could not serve the request (a bad request, a
    /// refused operation, the node shutting down); the text says why.
    Failed {
        reason: String,
    },
    /// The network could not carry out the request: the routing core's answer.
    NetworkFailed(Failure),
}

impl From<ClientOutcome> for ClientResponse {
    fn from(outcome: ClientOutcome) -> Self {
        match outcome {
            ClientOutcome::Found(block) => ClientResponse::Found { block },
            ClientOutcome::Inserted => ClientResponse::Inserted,
            ClientOutcome::Failed(failure) => ClientResponse::NetworkFailed(failure),
        }
    }
}

impl From<Failure> for ClientResponse {
    fn from(failure: Failure) -> Self {
        ClientResponse::NetworkFailed(failure)
    }
}

/// What to do about data that was not found.
const NOT_FOUND_ADVICE: &str = "check the URI; the node that inserted it may be offline or not \
    connected to this network: retry later, or raise router.max_htl in node.toml to search further";

/// A routing failure in plain words, with what the user can do about it.
pub fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::DataNotFound => format!(
            "data not found within the search budget (hops-to-live): \
             no node the search reached holds it; {NOT_FOUND_ADVICE}"
        ),
        Failure::RouteNotFound => format!(
            "data not found within the search budget (hops-to-live): \
             every node the search could reach was asked and none holds it; {NOT_FOUND_ADVICE}"
        ),
        Failure::Timeout => {
            "a peer did not answer in time; the network may be slow or busy: retry later".into()
        }
        Failure::Overloaded => {
            "the node or its peers are overloaded (too many requests in flight): retry later".into()
        }
        Failure::Collision => "collision: a different block is already published under this \
                               signed key (name or edition); the original is kept: \
                               publish under another name or edition"
            .into(),
        Failure::BadBlock => "the node refused the block: it does not verify (a signed \
                              block with a bad signature or the wrong key)"
            .into(),
        Failure::NotStored => "the insert failed further along its path: a node could not \
                               store the block (a full or failing disk) or lost its next hop; \
                               nothing was acknowledged: retry later"
            .into(),
        Failure::NoPeers => "the node has no connected peers: check its [[peers]] entries \
                             and that those nodes are running (veil status)"
            .into(),
    }
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to node at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the node's client cookie {}: {source}", .path.display())]
    Cookie {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_CLIENT_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("cannot encode a frame: {0}")]
    Encode(#[source] ciborium::ser::Error<std::io::Error>),
    #[error("malformed frame: {0}")]
    Malformed(#[source] ciborium::de::Error<std::io::Error>),
    #[error("the node closed the connection")]
    Closed,
    #[error("the node did not answer within {0:?}")]
    Timeout(Duration),
    /// The network could not carry out the request.
    #[error("{}", failure_text(*.0))]
    Network(Failure),
    /// The node refused the request; its words.
    #[error("{0}")]
    Refused(String),
    #[error("the node returned a block that does not match its key")]
    BadBlock,
    #[error("unexpected answer from the node")]
    Unexpected,
}

impl HasKind for ClientError {
    fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Closed => {
                ErrorKind::NodeDown
            }
            ClientError::Timeout(_) => ErrorKind::Timeout,
            ClientError::Network(failure) => ErrorKind::from(*failure),
            ClientError::Refused(_) => ErrorKind::Refused,
            ClientError::BadBlock => ErrorKind::BadData,
            ClientError::FrameTooLarge(_) | ClientError::Malformed(_) | ClientError::Unexpected => {
                ErrorKind::Protocol
            }
            ClientError::Encode(_) | ClientError::Cookie { .. } => ErrorKind::Local,
        }
    }
}

/// Write one length-prefixed CBOR frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), ClientError> {
    // Length and value in one buffer, one write: the length is filled in
    // once the value is encoded behind it.
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&[0u8; 4]);
    ciborium::ser::into_writer(value, &mut bytes).map_err(ClientError::Encode)?;
    let len = bytes.len() - 4;
    if len > MAX_CLIENT_FRAME {
        return Err(ClientError::FrameTooLarge(len));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    // A frame may exceed what Shadow takes in one write (crate::link::MAX_WRITE).
    for chunk in bytes.chunks(crate::link::MAX_WRITE) {
        w.write_all(chunk).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Read one frame; `Ok(None)` on a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, ClientError> {
    let mut len = [0u8; 4];
    // End of stream before a frame starts is clean; inside the header it is not.
    let got = r.read(&mut len).await?;
    if got == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[got..]).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_CLIENT_FRAME {
        return Err(ClientError::FrameTooLarge(len));
    }
    // Read into the frame's own buffer, never zero-filled first and never
    // past the frame's end.
    let mut buf = Vec::with_capacity(len);
    let mut body = r.take(len as u64);
    while buf.len() < len {
        if body.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    let decoded = if len <= crate::message::SMALL_DECODE {
        ciborium::de::from_reader_with_recursion_limit(buf.as_slice(), 16)
    } else {
        // A frame carrying a block: its bytes are copied out in one piece.
        crate::message::with_block_scratch(|scratch| {
            ciborium::de::from_reader_with_buffer(buf.as_slice(), scratch)
        })
    };
    Ok(Some(decoded.map_err(ClientError::Malformed)?))
}

/// A byte stream of the client API: a Unix socket or a TCP connection.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// A connection to a node's client API.
pub struct Client {
    stream: Box<dyn Conn>,
    timeout: Duration,
}

impl Client {
    /// Connect to the node at `endpoint` (over TCP, sending its cookie
    /// first). Each request waits at most `timeout`.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Client, ClientError> {
        let connect_err = |source| ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let opened = async {
            let stream: Box<dyn Conn> = match endpoint {
                Endpoint::Unix { path } => {
                    Box::new(UnixStream::connect(path).await.map_err(connect_err)?)
                }
                Endpoint::Tcp { addr, cookie } => {
                    let bytes =
                        endpoint::read_cookie(cookie).map_err(|source| ClientError::Cookie {
                            path: cookie.clone(),
                            source,
                        })?;
                    let mut stream = TcpStream::connect(addr).await.map_err(connect_err)?;
                    stream.set_nodelay(true)?;
                    stream.write_all(&bytes).await?;
                    Box::new(stream)
                }
            };
            Ok::<_, ClientError>(stream)
        };
        let stream = tokio::time::timeout(timeout, opened)
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        Ok(Client { stream, timeout })
    }

    async fn call(&mut self, req: &ClientRequest) -> Result<ClientResponse, ClientError> {
        let timeout = self.timeout;
        let exchange = async {
            write_frame(&mut self.stream, req).await?;
            read_frame::<_, ClientResponse>(&mut self.stream)
                .await?
                .ok_or(ClientError::Closed)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(ClientResponse::Failed { reason })) => Err(ClientError::Refused(reason)),
            Ok(Ok(ClientResponse::NetworkFailed(failure))) => Err(ClientError::Network(failure)),
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Fetch one block from the network.
    pub async fn get(&mut self, key: RoutingKey) -> Result<Block, ClientError> {
        match self.call(&ClientRequest::Get { key }).await? {
            ClientResponse::Found { block } if block.verify(&key).is_ok() => Ok(block),
            ClientResponse::Found { .. } => Err(ClientError::BadBlock),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Insert one block.
    pub async fn insert(&mut self, block: Block) -> Result<(), ClientError> {
        match self.call(&ClientRequest::Insert { block }).await? {
            ClientResponse::Inserted => Ok(()),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Testnet only: place a block in the node's store.
    pub async fn place(&mut self, block: Block) -> Result<(), ClientError> {
        match self.call(&ClientRequest::Place { block }).await? {
            ClientResponse::Placed => Ok(()),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Testnet only: pause or resume the node's swap attempts.
    pub async fn set_swapping(&mut self, on: bool) -> Result<NodeStatus, ClientError> {
        match self.call(&ClientRequest::Swapping { on }).await? {
            ClientResponse::Status(s) => Ok(*s),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Testnet only: route from now on by these rules.
    pub async fn set_routing(
        &mut self,
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
    ) -> Result<NodeStatus, ClientError> {
        match self
            .call(&ClientRequest::Routing {
                lookahead,
                htl_rule,
            })
            .await?
        {
            ClientResponse::Status(s) => Ok(*s),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Befriend `peer` on the running node (and in its `node.toml`).
    pub async fn add_peer(&mut self, peer: PeerConfig) -> Result<(), ClientError> {
        match self.call(&ClientRequest::AddPeer { peer }).await? {
            ClientResponse::PeersChanged => Ok(()),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Drop the friend with `public_key` from the running node (and its
    /// `node.toml`).
    pub async fn remove_peer(&mut self, public_key: PeerKey) -> Result<(), ClientError> {
        match self.call(&ClientRequest::RemovePeer { public_key }).await? {
            ClientResponse::PeersChanged => Ok(()),
            _ => Err(ClientError::Unexpected),
        }
    }

    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        match self.call(&ClientRequest::Status).await? {
            ClientResponse::Status(s) => Ok(*s),
            _ => Err(ClientError::Unexpected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_crosses_the_wire_typed_and_keeps_its_kind() {
        let all = [
            (Failure::DataNotFound, ErrorKind::NotFound),
            (Failure::RouteNotFound, ErrorKind::NotFound),
            (Failure::Timeout, ErrorKind::Timeout),
            (Failure::Overloaded, ErrorKind::Overloaded),
            (Failure::NoPeers, ErrorKind::NoPeers),
            (Failure::NotStored, ErrorKind::Refused),
        ];
        for (failure, kind) in all {
            let mut wire = Vec::new();
            write_frame(
                &mut wire,
                &ClientResponse::from(ClientOutcome::Failed(failure)),
            )
            .await
            .unwrap();
            let back: ClientResponse = read_frame(&mut wire.as_slice()).await.unwrap().unwrap();
            let ClientResponse::NetworkFailed(got) = back else {
                panic!("{failure:?} came back as {back:?}");
            };
            assert_eq!(got, failure);
            let err = ClientError::Network(got);
            assert_eq!(err.kind(), kind);
            assert!(!err.kind().peer_at_fault());
        }
    }

    #[test]
    fn not_found_says_so_in_plain_words_with_what_to_do() {
        for failure in [Failure::DataNotFound, Failure::RouteNotFound] {
            let text = ClientError::Network(failure).to_string();
            let says = |words: &str| text.contains(words);
            assert!(text.starts_with("data not found within the search budget"));
            assert!(says("(hops-to-live)") && says("check the URI"), "{text}");
            assert!(says("router.max_htl") && !says("\n"), "{text}");
        }
        assert_eq!(ClientError::BadBlock.kind(), ErrorKind::BadData);
        assert!(ClientError::BadBlock.kind().peer_at_fault());
        assert_eq!(ClientError::Closed.kind(), ErrorKind::NodeDown);
    }
}
