//! Direct disk access: `TestDDARequest` / `TestDDAResponse`.
//!
//! Before the node reads a file a client names (`UploadFrom=disk`) or
//! writes one (`ReturnType=disk`), the client proves it shares the
//! directory with the node: the node writes a random token into a file
//! there for the client to read back (read access), or asks the client to
//! write a token that the node then reads (write access). Grants last as
//! long as the connection. A `ClientPut` from disk may instead carry
//! `FileHash`, the base64 SHA-256 of `ConnectionIdentifier-Identifier-`
//! followed by the file's bytes, which proves the client read the file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{codes, protocol_error, Conn};
use crate::fcp::frame::Message;

/// Tests waiting for their response, per connection.
const MAX_PENDING: usize = 16;
/// Directories granted, per connection and kind.
const MAX_GRANTS: usize = 256;

/// What one connection may read and write.
#[derive(Default)]
pub struct Grants {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    pending: HashMap<PathBuf, Pending>,
}

struct Pending {
    /// The file the node wrote, and its token.
    read: Option<(PathBuf, String)>,
    /// The file the client is to write, and the token it must hold.
    write: Option<(PathBuf, String)>,
}

impl Grants {
    /// What a job started now may touch.
    pub fn access(&self, conn_id: &str) -> Access {
        Access {
            conn_id: conn_id.to_string(),
            read: self.read.clone(),
            write: self.write.clone(),
            trusted: false,
        }
    }
}

/// What one job may read and write on disk: the directories granted when
/// it started (a job started again after a restart was checked when it
/// was first started: `trusted`).
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The connection's `ConnectionIdentifier` (for `FileHash`).
    pub conn_id: String,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    pub trusted: bool,
}

impl Access {
    /// Access checked before: a request started again after a restart.
    pub fn trusted() -> Access {
        Access {
            trusted: true,
            ..Access::default()
        }
    }

    /// Whether the client proved it can read the directory holding `file`.
    pub fn may_read(&self, file: &Path) -> bool {
        self.trusted || within(&self.read, file)
    }

    /// Whether the client proved it can write the directory of `file`.
    pub fn may_write(&self, file: &Path) -> bool {
        self.trusted || within(&self.write, file)
    }
}

fn within(dirs: &[PathBuf], file: &Path) -> bool {
    let Some(parent) = file.parent().and_then(|p| p.canonicalize().ok()) else {
        return false;
    };
    dirs.iter().any(|d| parent.starts_with(d))
}

fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn directory(msg: &Message) -> Result<PathBuf, Message> {
    let id = msg.identifier();
    let Some(dir) = msg.get("Directory") else {
        return Err(protocol_error(
            codes::MISSING_FIELD,
            "Directory is required",
            id,
            false,
        ));
    };
    Path::new(dir)
        .canonicalize()
        .map_err(|e| protocol_error(codes::FILE_NOT_FOUND, &format!("{dir}: {e}"), id, false))
}

/// `TestDDARequest`: set the test up, answer `TestDDAReply`.
pub async fn request(conn: &Conn, msg: &Message) -> Message {
    let id = msg.identifier();
    let dir = match directory(msg) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let want_read = msg.flag("WantReadDirectory", false).unwrap_or(false);
    let want_write = msg.flag("WantWriteDirectory", false).unwrap_or(false);
    let mut pending = Pending {
        read: None,
        write: None,
    };
    let mut reply = Message::new("TestDDAReply")
        .with_opt("Identifier", id)
        .with("Directory", dir.display());
    if want_read {
        let path = dir.join(format!("DDACheck-{}.tmp", token()));
        let content = token();
        if let Err(e) = std::fs::write(&path, &content) {
            let text = format!("{}: {e}", path.display());
            return protocol_error(codes::COULD_NOT_CREATE_FILE, &text, id, false);
        }
        reply = reply.with("ReadFilename", path.display());
        pending.read = Some((path, content));
    }
    if want_write {
        let path = dir.join(format!("DDACheck-{}.tmp", token()));
        let content = token();
        reply = reply
            .with("WriteFilename", path.display())
            .with("ContentToWrite", &content);
        pending.write = Some((path, content));
    }
    if let Ok(mut g) = conn.dda.lock() {
        if g.pending.len() >= MAX_PENDING && !g.pending.contains_key(&dir) {
            return protocol_error(
                codes::INTERNAL_ERROR,
                "too many TestDDA in flight",
                id,
                false,
            );
        }
        if let Some(old) = g.pending.insert(dir, pending) {
            old.clean();
        }
    }
    reply
}

impl Pending {
    fn clean(&self) {
        if let Some((path, _)) = &self.read {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `TestDDAResponse`: check the client's answer, answer `TestDDAComplete`.
pub async fn response(conn: &Conn, msg: &Message) -> Message {
    let id = msg.identifier();
    let dir = match directory(msg) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let pending = conn
        .dda
        .lock()
        .ok()
        .and_then(|mut g| g.pending.remove(&dir));
    let Some(pending) = pending else {
        let text = format!("no TestDDARequest for {}", dir.display());
        return protocol_error(codes::INVALID_FIELD, &text, id, false);
    };
    pending.clean();
    let read_ok = pending
        .read
        .as_ref()
        .is_some_and(|(_, token)| msg.get("ReadContent").map(str::trim) == Some(token.as_str()));
    let write_ok = pending.write.as_ref().is_some_and(|(path, token)| {
        read_small(path).as_deref().map(str::trim) == Some(token.as_str())
    });
    if let Ok(mut g) = conn.dda.lock() {
        if read_ok && g.read.len() < MAX_GRANTS {
            g.read.push(dir.clone());
        }
        if write_ok && g.write.len() < MAX_GRANTS {
            g.write.push(dir.clone());
        }
    }
    Message::new("TestDDAComplete")
        .with_opt("Identifier", id)
        .with("Directory", dir.display())
        .with("ReadDirectoryAllowed", read_ok)
        .with("WriteDirectoryAllowed", write_ok)
}

/// At most 1 KiB of a file, as text.
fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1024)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Whether `hash` (base64) is the SHA-256 of `conn_id-identifier-` and
/// the bytes of `file`. Blocking: it reads the whole file.
pub fn file_hash_matches(conn_id: &str, identifier: &str, file: &Path, hash: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(hash.trim()) else {
        return false;
    };
    let Ok(mut f) = std::fs::File::open(file) else {
        return false;
    };
    let mut h = Sha256::new();
    h.update(conn_id.as_bytes());
    h.update(b"-");
    h.update(identifier.as_bytes());
    h.update(b"-");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    h.finalize().as_slice() == expected.as_slice()
}
