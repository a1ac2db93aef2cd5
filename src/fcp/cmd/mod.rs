//! One file per FCP command. [`dispatch`] answers the quick ones at once
//! and starts a job for each request that talks to the network (`ClientPut`,
//! `ClientGet`): one job per message, served by the same client-layer calls
//! as the CLI. A job reports through the connection's [`Outbox`] and always
//! ends in a message naming its `Identifier`.

pub mod codes;
pub mod dda;
pub mod get;
pub mod hello;
pub mod keys;
pub mod persistent;
pub mod put;
pub mod putdir;
pub mod subscribe;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::{AbortHandle, JoinSet};

use super::connection::{Outbox, Payload};
use super::frame::Message;
use super::queue::Reporter;
use super::{Server, MAX_JOBS_PER_CONNECTION};
use codes::Failed;
use dda::Access;

/// Numbers connections, for the queue's listeners.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// What one request's job works with.
pub struct Job {
    pub server: Arc<Server>,
    /// Where its messages go.
    pub out: Reporter,
    /// What it may read and write on disk.
    pub access: Access,
    pub id: String,
    pub global: bool,
}

/// What one connection's commands share.
pub struct Conn {
    pub server: Arc<Server>,
    pub out: Outbox,
    /// `ConnectionIdentifier` of `NodeHello` (also the salt of `FileHash`).
    pub id: String,
    /// This connection's number (the queue's listeners).
    pub num: u64,
    /// The client's `Name` from `ClientHello`.
    pub name: Mutex<String>,
    hello: AtomicBool,
    /// Directories this client proved it can read or write.
    pub dda: Mutex<dda::Grants>,
    /// Requests running, by `Identifier`.
    jobs: Mutex<HashMap<String, AbortHandle>>,
}

impl Conn {
    pub fn new(server: Arc<Server>, out: Outbox) -> Conn {
        Conn {
            server,
            out,
            id: format!("{:032x}", rand::random::<u128>()),
            num: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
            name: Mutex::new(String::new()),
            hello: AtomicBool::new(false),
            dda: Mutex::new(dda::Grants::default()),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Stop the request `identifier`; false if there is none.
    pub fn cancel(&self, identifier: &str) -> bool {
        let handle = self.jobs.lock().ok().and_then(|mut j| j.remove(identifier));
        match handle {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    /// The client's name.
    pub fn client(&self) -> String {
        self.name.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// A job for request `id` of this connection, reporting to it.
    pub fn job(self: &Arc<Self>, id: String, global: bool) -> Job {
        Job {
            server: self.server.clone(),
            out: Reporter::Conn(self.out.clone()),
            access: self
                .dda
                .lock()
                .map(|g| g.access(&self.id))
                .unwrap_or_default(),
            id,
            global,
        }
    }

    fn finished(&self, identifier: &str) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(identifier);
        }
    }
}

/// Whether the connection goes on after a message.
pub enum Flow {
    Continue,
    Close,
}

/// A `ProtocolError` message.
pub fn protocol_error(code: u32, extra: &str, identifier: Option<&str>, fatal: bool) -> Message {
    Message::new("ProtocolError")
        .with("Code", code)
        .with("CodeDescription", codes::protocol_text(code))
        .with("ExtraDescription", extra)
        .with("Fatal", fatal)
        .with("Global", false)
        .with_opt("Identifier", identifier)
}

/// A request's fault, before or while it runs: a ProtocolError, or the
/// request's own failure message.
#[derive(Debug)]
pub enum Refusal {
    Protocol { code: u32, extra: String },
    Failed(Failed),
}

impl Refusal {
    pub fn protocol(code: u32, extra: impl Into<String>) -> Refusal {
        Refusal::Protocol {
            code,
            extra: extra.into(),
        }
    }

    pub fn missing(field: &str) -> Refusal {
        Refusal::protocol(codes::MISSING_FIELD, format!("{field} is required"))
    }

    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Refusal {
        Refusal::protocol(codes::INVALID_FIELD, format!("{field}: {why}"))
    }
}

/// A required field.
pub fn field<'a>(msg: &'a Message, key: &str) -> Result<&'a str, Refusal> {
    msg.get(key).ok_or_else(|| Refusal::missing(key))
}

/// A boolean field (default when absent).
pub fn flag(msg: &Message, key: &str, default: bool) -> Result<bool, Refusal> {
    msg.flag(key, default)
        .ok_or_else(|| Refusal::invalid(key, "expected true or false"))
}

/// Answer one message. Network requests become jobs in `jobs`.
pub async fn dispatch(
    conn: &Arc<Conn>,
    msg: Message,
    payload: Option<Payload>,
    jobs: &mut JoinSet<()>,
) -> Flow {
    let id = msg.identifier().map(str::to_string);
    if !conn.hello.load(Ordering::Relaxed) && msg.name != "ClientHello" {
        let e = protocol_error(
            codes::CLIENT_HELLO_MUST_BE_FIRST,
            &format!("got {} first", msg.name),
            id.as_deref(),
            true,
        );
        conn.out.send(e).await;
        return Flow::Close;
    }
    match msg.name.as_str() {
        "ClientHello" => {
            if conn.hello.swap(true, Ordering::Relaxed) {
                let e = protocol_error(codes::NO_LATE_CLIENT_HELLOS, "", id.as_deref(), false);
                conn.out.send(e).await;
            } else {
                let name = msg.get("Name").unwrap_or_default().to_string();
                conn.server.queue.listen(conn.num, &name, conn.out.clone());
                if let Ok(mut n) = conn.name.lock() {
                    *n = name;
                }
                conn.out.send(hello::node_hello(conn, &msg)).await;
            }
        }
        "Disconnect" => return Flow::Close,
        "Void" => {}
        "GetNode" => {
            conn.out.send(hello::node_data(conn, &msg)).await;
        }
        "WatchGlobal" => {
            let on = msg.flag("Enabled", true).unwrap_or(true);
            conn.server.queue.watch_global(conn.num, on);
        }
        "ListPersistentRequests" => persistent::list(conn).await,
        "GetRequestStatus" => persistent::status(conn, &msg).await,
        "RemoveRequest" | "RemovePersistentRequest" => persistent::remove(conn, &msg).await,
        "GenerateSSK" => {
            conn.out.send(keys::generate_ssk(&msg)).await;
        }
        "TestDDARequest" => {
            let reply = dda::request(conn, &msg).await;
            conn.out.send(reply).await;
        }
        "TestDDAResponse" => {
            let reply = dda::response(conn, &msg).await;
            conn.out.send(reply).await;
        }
        "SubscribeUSK" => {
            let conn2 = conn.clone();
            start(conn, jobs, id, false, move |id| {
                subscribe::run(conn2.job(id, false), msg)
            })
            .await;
        }
        "UnsubscribeUSK" => {
            if !id.as_deref().is_some_and(|i| conn.cancel(i)) {
                let e = protocol_error(codes::NO_SUCH_IDENTIFIER, "", id.as_deref(), false);
                conn.out.send(e).await;
            }
        }
        "ClientPut" | "ClientGet" | "ClientPutComplexDir" | "ClientPutDiskDir" => {
            let global = msg.flag("Global", false).unwrap_or(false);
            let persistence = msg.get("Persistence").unwrap_or("connection");
            if global || persistence != "connection" {
                persistent::queue(conn, msg, payload).await;
            } else {
                let conn2 = conn.clone();
                start(conn, jobs, id, global, move |id| {
                    run(conn2.job(id, global), msg, payload)
                })
                .await;
            }
        }
        other => {
            let e = protocol_error(
                codes::INVALID_MESSAGE,
                &format!("{other} is not a message veil knows (docs/fcp.md lists them)"),
                id.as_deref(),
                false,
            );
            conn.out.send(e).await;
        }
    }
    Flow::Continue
}

/// Serve a `ClientPut`, `ClientPutComplexDir`, `ClientPutDiskDir` or
/// `ClientGet`.
pub async fn run(job: Job, msg: Message, payload: Option<Payload>) {
    match msg.name.as_str() {
        "ClientPut" => put::run(job, msg, payload).await,
        "ClientPutComplexDir" | "ClientPutDiskDir" => putdir::run(job, msg, payload).await,
        _ => get::run(job, msg).await,
    }
}

/// Start the request `msg` as a job, unless its `Identifier` is missing or
/// already running, or the connection has too many running.
async fn start<F, Fut>(
    conn: &Arc<Conn>,
    jobs: &mut JoinSet<()>,
    id: Option<String>,
    global: bool,
    job: F,
) where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(id) = id else {
        let e = protocol_error(codes::MISSING_FIELD, "Identifier is required", None, false);
        conn.out.send(e).await;
        return;
    };
    let refusal = {
        let Ok(mut running) = conn.jobs.lock() else {
            return;
        };
        if running.contains_key(&id) {
            Some(
                Message::new("IdentifierCollision")
                    .with("Identifier", &id)
                    .with("Global", global),
            )
        } else if running.len() >= MAX_JOBS_PER_CONNECTION {
            Some(protocol_error(
                codes::INTERNAL_ERROR,
                &format!("at most {MAX_JOBS_PER_CONNECTION} requests at once per connection"),
                Some(&id),
                false,
            ))
        } else {
            let fut = job(id.clone());
            let conn2 = conn.clone();
            let id2 = id.clone();
            let handle = jobs.spawn(async move {
                fut.await;
                conn2.finished(&id2);
            });
            running.insert(id, handle);
            None
        }
    };
    if let Some(r) = refusal {
        conn.out.send(r).await;
    }
}

/// Send a refusal as the request's failure: a ProtocolError, or
/// `failed_name` (`PutFailed`, `GetFailed`) with Freenet's code.
pub async fn refuse(out: &Reporter, failed_name: &str, id: &str, global: bool, r: Refusal) {
    let msg = match r {
        Refusal::Protocol { code, extra } => protocol_error(code, &extra, Some(id), false),
        Refusal::Failed(f) => Message::new(failed_name)
            .with("Identifier", id)
            .with("Code", f.code)
            .with("ShortCodeDescription", f.short)
            .with("CodeDescription", &f.long)
            .with("Fatal", f.fatal)
            .with("Global", global),
    };
    out.send(msg).await;
}

/// `SimpleProgress` for `id` (sent only if the client asked for progress,
/// bit 0 of `Verbosity`, and never blocking the job).
pub fn progress(out: &Reporter, id: &str, total: u64, done: u64, failed: u64, finalized: bool) {
    out.offer(
        Message::new("SimpleProgress")
            .with("Identifier", id)
            .with("Total", total)
            .with("Required", total)
            .with("Failed", failed)
            .with("FatallyFailed", 0)
            .with("Succeeded", done)
            .with("LastProgress", now_ms())
            .with("FinalizedTotal", finalized)
            .with("Global", false),
    );
}

/// Milliseconds since the Unix epoch (FCP's time fields).
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Whether the client asked for progress messages.
pub fn wants_progress(msg: &Message) -> bool {
    msg.get("Verbosity")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|v| v & 1 == 1)
}
