//! Persistent and global requests ([`crate::fcp::queue`]): queueing a
//! `ClientPut`/`ClientGet` with `Persistence=reboot|forever` or
//! `Global=true`, `ListPersistentRequests`, `GetRequestStatus`,
//! `RemoveRequest`, and starting `forever` requests again when the node
//! starts.

use std::sync::Arc;
use std::time::Duration;

use super::{codes, protocol_error, run, Conn, Job};
use crate::client::Client;
use crate::fcp::connection::Payload;
use crate::fcp::frame::Message;
use crate::fcp::queue::{Key, Record, Reporter, Stored};
use crate::fcp::Server;

use super::dda::Access;

/// The queue key `msg` names for this connection.
fn key(conn: &Conn, msg: &Message, id: &str) -> Key {
    let global = msg.flag("Global", false).unwrap_or(false);
    Key {
        global,
        client: if global { String::new() } else { conn.client() },
        identifier: id.to_string(),
    }
}

/// Queue a persistent or global request and start it.
pub async fn queue(conn: &Arc<Conn>, msg: Message, payload: Option<Payload>) {
    let Some(id) = msg.identifier().map(str::to_string) else {
        let e = protocol_error(codes::MISSING_FIELD, "Identifier is required", None, false);
        conn.out.send(e).await;
        return;
    };
    let key = key(conn, &msg, &id);
    let queue = conn.server.queue.clone();
    if queue.contains(&key) {
        let e = Message::new("IdentifierCollision")
            .with("Identifier", &id)
            .with("Global", key.global);
        conn.out.send(e).await;
        return;
    }
    let forever = msg.get("Persistence") == Some("forever");
    // A forever request's payload is kept beside its record, to be read
    // again after a restart.
    let payload = match (payload, forever) {
        (Some(p), true) => match keep(queue.payload_path(&key), p).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep a persistent request's payload");
                let text = format!("cannot keep the payload: {e}");
                let err = protocol_error(codes::INTERNAL_ERROR, &text, Some(&id), false);
                conn.out.send(err).await;
                return;
            }
        },
        (p, _) => p,
    };
    let record = Record {
        key: key.clone(),
        request: Stored::from(&msg),
        forever,
        state: Vec::new(),
        finished: false,
    };
    if !queue.add(record) {
        let text = "the queue is full: remove finished requests (RemoveRequest)";
        let err = protocol_error(codes::INTERNAL_ERROR, text, Some(&id), false);
        conn.out.send(err).await;
        return;
    }
    let access = conn
        .dda
        .lock()
        .map(|g| g.access(&conn.id))
        .unwrap_or_default();
    spawn(conn.server.clone(), key, msg, payload, access);
}

/// Copy a payload to `path` and open it there.
async fn keep(path: std::path::PathBuf, payload: Payload) -> std::io::Result<Payload> {
    tokio::task::spawn_blocking(move || {
        let (mut reader, len) = payload.into_reader();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(&path)?;
        std::io::copy(&mut reader, &mut file)?;
        file.sync_all()?;
        drop(file);
        Ok(Payload::File {
            file: std::fs::File::open(&path)?,
            len,
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Run a queued request's job, reporting to the queue.
fn spawn(server: Arc<Server>, key: Key, msg: Message, payload: Option<Payload>, access: Access) {
    let queue = server.queue.clone();
    let job = Job {
        server,
        out: Reporter::Queue(queue.clone(), key.clone()),
        access,
        id: key.identifier.clone(),
        global: key.global,
    };
    let handle = tokio::spawn(run(job, msg, payload));
    queue.running(&key, handle.abort_handle());
}

/// How long restarted requests wait for the node's first link.
const WAIT_FOR_PEERS: Duration = Duration::from_secs(60);

/// Start again the `forever` requests a restart interrupted, once the
/// node has a link (or [`WAIT_FOR_PEERS`] has passed): started at once,
/// they would fail for want of peers.
pub fn resume(server: &Arc<Server>, unfinished: Vec<Record>) {
    if unfinished.is_empty() {
        return;
    }
    let server = server.clone();
    tokio::spawn(async move {
        wait_for_peers(&server.config.node).await;
        restart(&server, unfinished);
    });
}

async fn wait_for_peers(node: &crate::client::Endpoint) {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PEERS;
    while tokio::time::Instant::now() < deadline {
        let status = async {
            let mut c = Client::connect(node, Duration::from_secs(5)).await.ok()?;
            c.status().await.ok()
        };
        if let Some(s) = status.await {
            if s.peers.iter().any(|p| p.connected) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn restart(server: &Arc<Server>, unfinished: Vec<Record>) {
    for record in unfinished {
        // Removed while waiting.
        if !server.queue.contains(&record.key) {
            continue;
        }
        let msg = Message::from(&record.request);
        // A payload kept beside the record (a direct put's).
        let path = server.queue.payload_path(&record.key);
        let payload = std::fs::File::open(&path)
            .and_then(|f| Ok((f.metadata()?.len(), f)))
            .ok()
            .map(|(len, file)| Payload::File { file, len });
        spawn(server.clone(), record.key, msg, payload, Access::trusted());
    }
}

/// `ListPersistentRequests`.
pub async fn list(conn: &Conn) {
    for m in conn.server.queue.list(&conn.client()) {
        conn.out.send(m).await;
    }
    conn.out
        .send(Message::new("EndListPersistentRequests"))
        .await;
}

/// `GetRequestStatus`: how a queued request stands.
pub async fn status(conn: &Conn, msg: &Message) {
    let id = msg.identifier().unwrap_or_default();
    match conn.server.queue.status(&key(conn, msg, id)) {
        Some(messages) => {
            for m in messages {
                conn.out.send(m).await;
            }
        }
        None => {
            let e = protocol_error(codes::NO_SUCH_IDENTIFIER, "", Some(id), false);
            conn.out.send(e).await;
        }
    }
}

/// `RemoveRequest` / `RemovePersistentRequest`: a queued request, or one
/// of this connection's.
pub async fn remove(conn: &Conn, msg: &Message) {
    let Some(id) = msg.identifier() else {
        let e = protocol_error(codes::MISSING_FIELD, "Identifier is required", None, false);
        conn.out.send(e).await;
        return;
    };
    let key = key(conn, msg, id);
    let reply = if conn.server.queue.remove(&key) || conn.cancel(id) {
        Message::new("PersistentRequestRemoved")
            .with("Identifier", id)
            .with("Global", key.global)
    } else {
        protocol_error(codes::NO_SUCH_IDENTIFIER, "", Some(id), false)
    };
    conn.out.send(reply).await;
}
