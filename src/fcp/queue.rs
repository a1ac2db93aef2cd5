//! Requests that outlive their connection: `Persistence=reboot` or
//! `forever`, or `Global=true` (Freenet's global queue).
//!
//! Such a request runs on its own, not in its connection's task set: its
//! messages go to every connection of the same client (`ClientHello`'s
//! `Name`) and, for a global one, to every connection that sent
//! `WatchGlobal`; the messages that say how it stands (`URIGenerated`,
//! `PutSuccessful`, `DataFound`, …) are kept, so `ListPersistentRequests`
//! can list it and them. A `forever` request is written to
//! `NODE_DIR/fcp/` (its message, a direct payload beside it, and its
//! outcome) and started again when the node starts, until
//! `RemoveRequest` removes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;
use tracing::warn;

use super::connection::{Body, Outbox};
use super::frame::Message;

/// Most requests kept on the queue (beyond it, new ones are refused).
pub const MAX_QUEUED: usize = 1024;
/// Largest record file read back.
const MAX_RECORD: u64 = 1 << 20;

/// Where a job's messages go.
#[derive(Clone)]
pub enum Reporter {
    /// The connection that asked (`Persistence=connection`).
    Conn(Outbox),
    /// The queue, which keeps the outcome and tells the listeners.
    Queue(Arc<Queue>, Key),
}

impl Reporter {
    pub async fn send(&self, msg: Message) {
        match self {
            Reporter::Conn(out) => {
                out.send(msg).await;
            }
            Reporter::Queue(q, key) => q.deliver(key, msg, None).await,
        }
    }

    pub async fn send_data(&self, msg: Message, body: Body) {
        match self {
            Reporter::Conn(out) => {
                out.send_data(msg, body).await;
            }
            Reporter::Queue(q, key) => q.deliver(key, msg, Some(body)).await,
        }
    }

    /// A progress message: dropped rather than waited for.
    pub fn offer(&self, msg: Message) {
        match self {
            Reporter::Conn(out) => out.offer(msg),
            Reporter::Queue(q, key) => q.offer(key, msg),
        }
    }
}

/// A queued request: global (any client may watch it) or a client's own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub global: bool,
    /// The client's `Name` (empty for a global request).
    pub client: String,
    pub identifier: String,
}

impl Key {
    /// A file name for the record: a hash, so no name reaches the path.
    fn stem(&self) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::new()
            .chain_update([self.global as u8])
            .chain_update(self.client.as_bytes())
            .chain_update([0])
            .chain_update(self.identifier.as_bytes())
            .finalize();
        d[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A message as a record keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stored {
    pub name: String,
    pub fields: Vec<(String, String)>,
}

impl From<&Message> for Stored {
    fn from(m: &Message) -> Stored {
        Stored {
            name: m.name.clone(),
            fields: m.fields.clone(),
        }
    }
}

impl From<&Stored> for Message {
    fn from(s: &Stored) -> Message {
        Message {
            name: s.name.clone(),
            fields: s.fields.clone(),
            data_len: None,
        }
    }
}

/// One request on the queue, as written to disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    /// The request message (`ClientPut`, `ClientGet`).
    pub request: Stored,
    /// Written to disk and started again after a restart.
    pub forever: bool,
    /// The messages that say how it stands, latest last.
    pub state: Vec<Stored>,
    /// Whether it has ended (successfully or not).
    pub finished: bool,
}

struct Entry {
    record: Record,
    abort: Option<AbortHandle>,
}

struct Listener {
    client: String,
    watch_global: bool,
    out: Outbox,
    conn: u64,
}

/// The queue of one FCP server.
pub struct Queue {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// The node is stopping: failures now are interruptions.
    closing: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<Key, Entry>,
    listeners: Vec<Listener>,
}

/// Messages that say how a request stands (kept for listing).
fn is_state(name: &str) -> bool {
    matches!(
        name,
        "URIGenerated" | "PutSuccessful" | "PutFailed" | "DataFound" | "GetFailed"
    )
}

fn is_final(name: &str) -> bool {
    matches!(
        name,
        "PutSuccessful" | "PutFailed" | "DataFound" | "GetFailed"
    )
}

impl Queue {
    /// The queue kept in `dir`, with every `forever` request found there.
    /// The unfinished ones are for the caller to start again.
    pub fn load(dir: &Path) -> (Arc<Queue>, Vec<Record>) {
        let mut inner = Inner::default();
        let mut unfinished = Vec::new();
        for item in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = item.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let read = std::fs::metadata(&path)
                .ok()
                .filter(|m| m.len() <= MAX_RECORD)
                .and_then(|_| std::fs::read(&path).ok())
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            let Some(record) = read else {
                warn!(path = %path.display(), "unreadable FCP request record, skipped");
                continue;
            };
            if inner.entries.len() >= MAX_QUEUED {
                break;
            }
            let mut record = record;
            if !record.finished {
                record.state.clear();
                unfinished.push(record.clone());
            }
            inner.entries.insert(
                record.key.clone(),
                Entry {
                    record,
                    abort: None,
                },
            );
        }
        let queue = Arc::new(Queue {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            closing: Default::default(),
        });
        (queue, unfinished)
    }

    /// Where a `forever` request's direct payload is kept.
    pub fn payload_path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.data", key.stem()))
    }

    fn record_path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.stem()))
    }

    fn save(&self, record: &Record) {
        if !record.forever {
            return;
        }
        let path = self.record_path(&record.key);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = path.with_extension("json.new");
            std::fs::write(
                &tmp,
                serde_json::to_vec(record).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            warn!(path = %path.display(), error = %e, "cannot write an FCP request record");
        }
    }

    /// Whether `key` is queued.
    pub fn contains(&self, key: &Key) -> bool {
        self.inner
            .lock()
            .map(|i| i.entries.contains_key(key))
            .unwrap_or(false)
    }

    /// Queue a new request (false if the queue is full or it is there).
    pub fn add(&self, record: Record) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.entries.len() >= MAX_QUEUED || inner.entries.contains_key(&record.key) {
            return false;
        }
        self.save(&record);
        let key = record.key.clone();
        inner.entries.insert(
            key,
            Entry {
                record,
                abort: None,
            },
        );
        true
    }

    /// Remember how to stop the job running `key`.
    pub fn running(&self, key: &Key, abort: AbortHandle) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(e) = inner.entries.get_mut(key) {
                e.abort = Some(abort);
            }
        }
    }

    /// Remove `key`: stop its job, forget it, delete its files. False if
    /// it was not queued.
    pub fn remove(&self, key: &Key) -> bool {
        let entry = self
            .inner
            .lock()
            .ok()
            .and_then(|mut i| i.entries.remove(key));
        let Some(entry) = entry else {
            return false;
        };
        if let Some(a) = entry.abort {
            a.abort();
        }
        let _ = std::fs::remove_file(self.record_path(key));
        let _ = std::fs::remove_file(self.payload_path(key));
        true
    }

    /// A connection of client `client` wants the messages of its requests.
    pub fn listen(&self, conn: u64, client: &str, out: Outbox) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .listeners
                .retain(|l| !l.out.is_closed() && l.conn != conn);
            inner.listeners.push(Listener {
                client: client.to_string(),
                watch_global: false,
                out,
                conn,
            });
        }
    }

    /// Connection `conn` ends: it gets no more messages (and its queue's
    /// sender is let go, so its writer can finish).
    pub fn forget(&self, conn: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.listeners.retain(|l| l.conn != conn);
        }
    }

    /// `WatchGlobal`: whether connection `conn` gets global requests' messages.
    pub fn watch_global(&self, conn: u64, on: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            for l in inner.listeners.iter_mut().filter(|l| l.conn == conn) {
                l.watch_global = on;
            }
        }
    }

    /// The connections `key`'s messages go to.
    fn audience(&self, key: &Key) -> Vec<Outbox> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner.listeners.retain(|l| !l.out.is_closed());
        inner
            .listeners
            .iter()
            .filter(|l| (key.global && l.watch_global) || (!key.global && l.client == key.client))
            .map(|l| l.out.clone())
            .collect()
    }

    /// The node is stopping: a request failing from now on was
    /// interrupted, not finished.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A job's message: kept if it says how the request stands, and sent
    /// to the audience (a payload only to the first of them). A failure
    /// because the node went away (its client API closed: Freenet's
    /// internal error) or while it stops is passed on but not kept: the
    /// request is not finished, and starts again with the node.
    async fn deliver(&self, key: &Key, msg: Message, body: Option<Body>) {
        let interrupted = self.closing.load(std::sync::atomic::Ordering::Relaxed)
            && matches!(msg.name.as_str(), "PutFailed" | "GetFailed")
            || matches!(
                (msg.name.as_str(), msg.get("Code")),
                ("PutFailed", Some("3")) | ("GetFailed", Some("17"))
            );
        if is_state(&msg.name) && !interrupted {
            if let Ok(mut inner) = self.inner.lock() {
                if let Some(e) = inner.entries.get_mut(key) {
                    e.record.state.retain(|s| s.name != msg.name);
                    e.record.state.push(Stored::from(&msg));
                    if is_final(&msg.name) {
                        e.record.finished = true;
                        e.abort = None;
                    }
                    self.save(&e.record);
                }
            }
        }
        let audience = self.audience(key);
        let mut body = body;
        for out in audience {
            match body.take() {
                Some(b) => {
                    out.send_data(msg.clone(), b).await;
                }
                None if msg.data_len.is_none() => {
                    out.send(msg.clone()).await;
                }
                None => {}
            }
        }
    }

    fn offer(&self, key: &Key, msg: Message) {
        for out in self.audience(key) {
            out.offer(msg.clone());
        }
    }

    /// The requests `client` sees (its own, and the global ones), each as
    /// its `Persistent*` message and the messages saying how it stands.
    pub fn list(&self, client: &str) -> Vec<Message> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, e) in &inner.entries {
            if !key.global && key.client != client {
                continue;
            }
            out.push(persistent_message(&e.record));
            out.extend(e.record.state.iter().map(Message::from));
        }
        out
    }

    /// The messages saying how `key` stands (`GetRequestStatus`).
    pub fn status(&self, key: &Key) -> Option<Vec<Message>> {
        let inner = self.inner.lock().ok()?;
        let e = inner.entries.get(key)?;
        let mut out = vec![persistent_message(&e.record)];
        out.extend(e.record.state.iter().map(Message::from));
        Some(out)
    }
}

/// `PersistentPut` / `PersistentGet` for a record.
fn persistent_message(r: &Record) -> Message {
    let req = Message::from(&r.request);
    let name = match req.name.as_str() {
        "ClientGet" => "PersistentGet",
        "ClientPutComplexDir" | "ClientPutDiskDir" => "PersistentPutDir",
        _ => "PersistentPut",
    };
    let mut m = Message::new(name)
        .with("Identifier", &r.key.identifier)
        .with("Global", r.key.global)
        .with("Persistence", if r.forever { "forever" } else { "reboot" })
        .with("Started", true);
    for k in [
        "URI",
        "UploadFrom",
        "ReturnType",
        "Filename",
        "TargetURI",
        "Metadata.ContentType",
        "Verbosity",
        "PriorityClass",
        "MaxRetries",
        "ClientToken",
    ] {
        if let Some(v) = req.get(k) {
            m = m.with(k, v);
        }
    }
    if !r.key.global {
        m = m.with("ClientName", &r.key.client);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forever_requests_are_read_back_and_reboot_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (q, unfinished) = Queue::load(dir.path());
        assert!(unfinished.is_empty());
        let record = |id: &str, forever| Record {
            key: Key {
                global: true,
                client: String::new(),
                identifier: id.into(),
            },
            request: Stored::from(&Message::new("ClientPut").with("URI", "CHK@")),
            forever,
            state: Vec::new(),
            finished: false,
        };
        assert!(q.add(record("kept", true)));
        assert!(q.add(record("lost", false)));
        assert!(
            !q.add(record("kept", true)),
            "a second one with the same key"
        );
        assert_eq!(q.list("anyone").len(), 2);
        let (q2, unfinished) = Queue::load(dir.path());
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].key.identifier, "kept");
        let listed = q2.list("someone");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "PersistentPut");
        assert_eq!(listed[0].get("URI"), Some("CHK@"));
        assert!(q2.remove(&unfinished[0].key));
        assert!(Queue::load(dir.path()).1.is_empty());
    }
}
