//! FCPv2, the Freenet Client Protocol, served by the node: Freenet's own
//! tools (`fcpput`, `fcpget`, `fcpgenkey`, site managers, the `fcp3`
//! library) work against a veil node unchanged. `docs/fcp.md` lists every
//! message and field, and how veil's keys map onto Freenet's.
//!
//! ```text
//! frame.rs        sans-IO: Name=Value lines, EndMessage / Data + DataLength
//! connection.rs   one client: its buffer, its writer task, its requests
//! queue.rs        persistent and global requests: outlive connections
//!                 and (Persistence=forever) restarts
//! cmd/            one file per command, each calling the client layer
//!   mod.rs          dispatch, the per-connection context, ProtocolError
//!   codes.rs        Freenet's failure codes (FetchException, InsertException)
//!   hello.rs        ClientHello, GetNode, WatchGlobal, the lists
//!   keys.rs         GenerateSSK; FCP URIs as veil keys
//!   dda.rs          TestDDARequest / TestDDAResponse (disk access)
//!   persistent.rs   queueing, ListPersistentRequests, RemoveRequest
//!   put.rs          ClientPut
//!   get.rs          ClientGet
//! ```
//!
//! The server runs in the node's process but reaches the node only through
//! the client layer ([`crate::client`]) over the node's own client API, as
//! `veil put`/`veil get` do: one job per FCP message, served by the same
//! library calls as the CLI. Files are split, encrypted and decrypted here,
//! on the client's side of the node.

pub mod cmd;
pub mod connection;
pub mod frame;
pub mod queue;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::client::Endpoint;

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests one connection may have running at once.
pub const MAX_JOBS_PER_CONNECTION: usize = 32;
/// Largest payload (`DataLength`) accepted from a client; larger files go
/// through `UploadFrom=disk`.
pub const MAX_DATA: u64 = 1 << 30;
/// A message whose header or payload stops arriving for this long closes
/// its connection.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection with no request running that sends nothing for this long
/// is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Writing one piece of a message to a client may take this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages queued for one client's writer.
pub const OUTBOX: usize = 64;
/// Wait after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the FCP server needs to know.
#[derive(Clone, Debug)]
pub struct FcpConfig {
    /// Where to listen (`fcp = "127.0.0.1:9481"` in node.toml).
    pub addr: SocketAddr,
    /// The node's client API: every request goes through it.
    pub node: Endpoint,
    /// A directory for payloads being received (spooled, unlinked at once).
    pub spool: PathBuf,
    /// Where `Persistence=forever` requests are kept.
    pub state: PathBuf,
    /// The node's public key, shown by `GetNode`.
    pub identity: String,
    /// Testnet mode, shown by `NodeHello`.
    pub testnet: bool,
}

/// What the server shares with every connection.
pub struct Server {
    pub config: FcpConfig,
    pub queue: Arc<queue::Queue>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum FcpError {
    #[error("cannot listen for FCP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the FCP listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, FcpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| FcpError::Bind { addr, source })
}

/// Serve FCP clients on `listener` until `shutdown` turns true. Each
/// connection is its own task; a misbehaving one is closed without
/// disturbing the others.
pub async fn serve(listener: TcpListener, config: FcpConfig, mut shutdown: watch::Receiver<bool>) {
    let (queue, unfinished) = queue::Queue::load(&config.state);
    let server = Arc::new(Server { config, queue });
    cmd::persistent::resume(&server, unfinished);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => {
                server.queue.close();
                return;
            }
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => {
                server.queue.close();
                return;
            }
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                debug!(%peer, "FCP client connected");
                let server = server.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    connection::run(stream, server, shutdown).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "FCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
