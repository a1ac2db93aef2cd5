//! The local client API: one task per client connection, each request
//! handed to the router task and answered when the core is done with it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::membership::Membership;
use super::{Input, NodeError, ACCEPT_BACKOFF};
use crate::client::endpoint::{self, Cookie, COOKIE_LEN};
use crate::client::{
    read_frame, write_frame, ClientError, ClientRequest, ClientResponse, Conn, Endpoint,
};
use crate::config::NodeConfig;
use crate::routing::{ClientOutcome, Failure};

const SHUTTING_DOWN: &str = "node is shutting down";

/// Connections being refused at once (told "full" and closed); beyond
/// these a connection is dropped without an answer.
const REFUSALS: usize = 16;

/// Bytes read (and dropped) from a refused connection before it is closed,
/// so that the client reads the refusal instead of a reset.
const REFUSAL_DRAIN: u64 = 2 * crate::client::MAX_CLIENT_FRAME as u64;

/// The client API's settings, from `node.toml`.
#[derive(Clone)]
pub(super) struct ClientApi {
    testnet: bool,
    membership: Arc<Membership>,
    max_connections: usize,
    request_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
}

impl ClientApi {
    pub(super) fn new(config: &NodeConfig, membership: Arc<Membership>) -> ClientApi {
        let rt = &config.runtime;
        ClientApi {
            testnet: config.testnet,
            membership,
            max_connections: rt.client_max_connections,
            request_timeout: Duration::from_secs(rt.client_request_timeout_secs),
            idle_timeout: Duration::from_secs(rt.client_idle_timeout_secs),
            write_timeout: Duration::from_secs(rt.client_write_timeout_secs),
        }
    }
}

/// The bound client API: a Unix socket (with the user id allowed to use
/// it) or a TCP listener (with the cookie a client must send first).
pub(super) enum ClientListener {
    Unix {
        listener: UnixListener,
        uid: u32,
    },
    Tcp {
        listener: TcpListener,
        cookie: Cookie,
    },
}

impl ClientListener {
    /// Bind what `node.toml` asks for in `dir`: the Unix socket (a stale
    /// socket file is replaced; the new one is made mode 0600), or the TCP
    /// address with a fresh cookie file.
    pub(super) async fn bind(
        dir: &Path,
        config: &NodeConfig,
    ) -> Result<(ClientListener, Endpoint), NodeError> {
        match config.client {
            None => {
                let path = dir.join(endpoint::CLIENT_SOCKET);
                let err = |source| NodeError::ClientApi {
                    path: path.clone(),
                    source,
                };
                let (listener, uid) = bind_unix(&path).map_err(err)?;
                Ok((
                    ClientListener::Unix { listener, uid },
                    Endpoint::Unix { path },
                ))
            }
            Some(addr) => {
                let cookie_path = dir.join(endpoint::COOKIE_FILE);
                let (listener, bound) = super::bind(addr).await?;
                let cookie = endpoint::write_fresh_cookie(&cookie_path).map_err(|source| {
                    NodeError::ClientApi {
                        path: cookie_path.clone(),
                        source,
                    }
                })?;
                let endpoint = Endpoint::Tcp {
                    addr: bound,
                    cookie: cookie_path,
                };
                Ok((ClientListener::Tcp { listener, cookie }, endpoint))
            }
        }
    }

    /// The next connection and who it is from (for log lines). A Unix
    /// connection from another user is refused (logged) here.
    async fn accept(&self) -> std::io::Result<Option<(Box<dyn Conn>, String)>> {
        match self {
            ClientListener::Unix { listener, uid } => {
                let (stream, _) = listener.accept().await?;
                let cred = stream.peer_cred()?;
                if cred.uid() != *uid {
                    warn!(
                        uid = cred.uid(),
                        pid = ?cred.pid(),
                        "client connection from another user refused"
                    );
                    return Ok(None);
                }
                Ok(Some((Box::new(stream), format!("uid {}", cred.uid()))))
            }
            ClientListener::Tcp { listener, .. } => {
                let (stream, addr) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Some((Box::new(stream), addr.to_string())))
            }
        }
    }

    /// Over TCP: read the client's cookie and compare it in constant time.
    async fn authenticate(
        &self,
        conn: &mut Box<dyn Conn>,
        who: &str,
        wait: Duration,
    ) -> Result<(), ()> {
        let ClientListener::Tcp { cookie, .. } = self else {
            return Ok(());
        };
        let mut got = [0u8; COOKIE_LEN];
        let read = tokio::time::timeout(wait, conn.read_exact(&mut got)).await;
        if matches!(read, Ok(Ok(_))) && bool::from(got.ct_eq(cookie)) {
            return Ok(());
        }
        warn!(client = %who, "client connection without the right cookie refused");
        Err(())
    }
}

/// Bind the Unix socket at `path`, mode 0600, and return it with the user
/// id that may connect (the socket file's owner: this process's user).
fn bind_unix(path: &Path) -> std::io::Result<(UnixListener, u32)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        // The store's lock already refused a second node on this directory,
        // so a socket here is a stale one.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let uid = std::fs::metadata(path)?.uid();
    Ok((listener, uid))
}

/// Remove the client socket when the node stops (a TCP endpoint leaves
/// its cookie: it is replaced at the next start).
pub(super) fn remove_socket(endpoint: &Endpoint) {
    if let Endpoint::Unix { path } = endpoint {
        let _ = std::fs::remove_file(path);
    }
}

pub(super) async fn serve_clients(
    listener: ClientListener,
    input: mpsc::Sender<Input>,
    api: ClientApi,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = Arc::new(listener);
    let slots = Arc::new(Semaphore::new(api.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let (conn, who) = match accepted {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "client accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (listener, input, api) = (listener.clone(), input.clone(), api.clone());
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut conn = conn;
                    if listener
                        .authenticate(&mut conn, &who, api.write_timeout)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Err(e) = serve_client(conn, input, api).await {
                        debug!(client = %who, error = %e, "client connection ended with an error");
                    }
                });
            }
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse_full(conn, who, listener, api, permit));
                }
                Err(_) => debug!(client = %who, "client API full; connection dropped"),
            },
        }
    }
}

/// Answer a connection beyond `client_max_connections` with an error at
/// once, and close it.
async fn refuse_full(
    mut conn: Box<dyn Conn>,
    who: String,
    listener: Arc<ClientListener>,
    api: ClientApi,
    _permit: OwnedSemaphorePermit,
) {
    if listener
        .authenticate(&mut conn, &who, api.write_timeout)
        .await
        .is_err()
    {
        return;
    }
    debug!(client = %who, max = api.max_connections, "client API full; connection refused");
    let reason = format!(
        "the node's client API is full ({} connections): retry later, or raise \
         runtime.client_max_connections",
        api.max_connections
    );
    let refuse = async {
        write_frame(&mut conn, &failed(&reason)).await?;
        conn.shutdown().await?;
        // Take what the client already sent, so it reads the refusal
        // rather than a reset.
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut (&mut conn).take(REFUSAL_DRAIN), &mut sink).await?;
        Ok::<_, ClientError>(())
    };
    let _ = tokio::time::timeout(api.write_timeout, refuse).await;
}

async fn serve_client(
    mut stream: Box<dyn Conn>,
    input: mpsc::Sender<Input>,
    api: ClientApi,
) -> Result<(), ClientError> {
    loop {
        let request: ClientRequest =
            match tokio::time::timeout(api.idle_timeout, read_frame(&mut stream)).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) | Err(_) => return Ok(()),
                Ok(Err(e)) => {
                    let bad = failed(&format!("bad request: {e}"));
                    let _ = tokio::time::timeout(api.write_timeout, write_frame(&mut stream, &bad))
                        .await;
                    return Err(e);
                }
            };
        let response = answer(request, &input, &api).await;
        tokio::time::timeout(api.write_timeout, write_frame(&mut stream, &response))
            .await
            .map_err(|_| ClientError::Timeout(api.write_timeout))??;
    }
}

fn failed(reason: &str) -> ClientResponse {
    ClientResponse::Failed {
        reason: reason.to_string(),
    }
}

/// Hand a request to the router task and wait for its reply.
async fn ask<T>(
    input: &mpsc::Sender<Input>,
    request: impl FnOnce(oneshot::Sender<T>) -> Input,
    timeout: Option<Duration>,
) -> Result<T, ClientResponse> {
    let (reply, rx) = oneshot::channel();
    if input.send(request(reply)).await.is_err() {
        return Err(failed(SHUTTING_DOWN));
    }
    let answered = match timeout {
        Some(t) => tokio::time::timeout(t, rx)
            .await
            .map_err(|_| ClientResponse::from(Failure::Timeout))?,
        None => rx.await,
    };
    answered.map_err(|_| failed(SHUTTING_DOWN))
}

async fn answer(
    request: ClientRequest,
    input: &mpsc::Sender<Input>,
    api: &ClientApi,
) -> ClientResponse {
    let routed = Some(api.request_timeout);
    let outcome = match request {
        ClientRequest::Get { key } => {
            ask(input, |reply| Input::ClientGet { key, reply }, routed).await
        }
        ClientRequest::Insert { block } => {
            ask(input, |reply| Input::ClientPut { block, reply }, routed).await
        }
        ClientRequest::Place { block } => {
            if !api.testnet {
                return failed("place is refused: the node is not in testnet mode");
            }
            return match ask(input, |reply| Input::Place { block, reply }, None).await {
                Ok(Ok(())) => ClientResponse::Placed,
                Ok(Err(e)) => failed(&e.to_string()),
                Err(response) => response,
            };
        }
        ClientRequest::Swapping { on } => {
            if !api.testnet {
                return failed("swapping is refused: the node is not in testnet mode");
            }
            return match ask(input, |reply| Input::SetSwapping { on, reply }, None).await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(response) => response,
            };
        }
        ClientRequest::Routing {
            lookahead,
            htl_rule,
        } => {
            if !api.testnet {
                return failed("routing rules are refused: the node is not in testnet mode");
            }
            let set = |reply| Input::SetRouting {
                lookahead,
                htl_rule,
                reply,
            };
            return match ask(input, set, None).await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(response) => response,
            };
        }
        ClientRequest::AddPeer { peer } => {
            return match api.membership.add(peer).await {
                Ok(()) => ClientResponse::PeersChanged,
                Err(e) => failed(&e.to_string()),
            };
        }
        ClientRequest::RemovePeer { public_key } => {
            return match api.membership.remove(public_key).await {
                Ok(()) => ClientResponse::PeersChanged,
                Err(e) => failed(&e.to_string()),
            };
        }
        ClientRequest::Status => {
            return match ask(input, |reply| Input::Status { reply }, None).await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(response) => response,
            };
        }
    };
    match outcome {
        Ok(ClientOutcome::Found(block)) => ClientResponse::Found { block },
        Ok(ClientOutcome::Inserted) => ClientResponse::Inserted,
        Ok(other) => other.into(),
        Err(response) => response,
    }
}
