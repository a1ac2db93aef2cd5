//! `ClientPutComplexDir` and `ClientPutDiskDir` → `URIGenerated`,
//! `PutSuccessful` / `PutFailed`: a freesite.
//!
//! Each file becomes a CHK as a `ClientPut` makes one ([`put::chk_for`]),
//! or, with `UploadFrom=redirect`, is the CHK its `TargetURI` names; the
//! files are listed, with their MIME types, in a veil directory document
//! (`docs/protocol.md`, "Directories"), itself inserted last; its CHK is
//! the URI, or is signed under the `SSK@`/`USK@` insert URI
//! ([`put::publish`]). `DefaultName` is `index.html` for veil: a directory
//! fetched without a path gives its `index.html`.
//!
//! `ClientPutComplexDir` names its files `Files.0.Name`, `Files.1.Name`, …;
//! the payloads of its `direct` files follow the message one after another
//! (the frame sums their `Files.N.DataLength`). `ClientPutDiskDir` names a
//! directory (`Filename`) whose files the node reads after `TestDDARequest`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::keys;
use super::put::{self, chk_for, failed};
use super::{field, flag, now_ms, refuse, Job, Refusal};
use crate::client::site::{self, Address, SiteError};
use crate::content::dir::{check_path, mime_for, DirEntry, Directory, MAX_DIR_ENTRIES};
use crate::error::{ErrorKind, HasKind};
use crate::fcp::connection::Payload;
use crate::fcp::frame::Message;

/// Serve one `ClientPutComplexDir` or `ClientPutDiskDir`.
pub async fn run(job: Job, msg: Message, payload: Option<Payload>) {
    let (id, global) = (job.id.clone(), job.global);
    let started = now_ms();
    match put_dir(&job, &msg, payload).await {
        Ok(uri) => put::succeeded(&job.out, &id, global, &uri, started).await,
        Err(r) => refuse(&job.out, "PutFailed", &id, global, r).await,
    }
}

/// Where one file of the directory comes from.
enum From {
    /// `len` bytes at `offset` of the message's payload.
    Direct {
        offset: u64,
        len: u64,
    },
    Disk(PathBuf),
    Redirect(String),
}

struct File {
    name: String,
    mime: Option<String>,
    from: From,
}

/// The files a `ClientPutComplexDir` lists, in order.
fn complex_files(msg: &Message) -> Result<Vec<File>, Refusal> {
    let mut files = Vec::new();
    let mut offset = 0u64;
    for n in 0.. {
        let Some(name) = msg.get(&format!("Files.{n}.Name")) else {
            break;
        };
        if n >= MAX_DIR_ENTRIES {
            return Err(Refusal::invalid(
                "Files",
                format!("more than {MAX_DIR_ENTRIES}"),
            ));
        }
        let key = |k: &str| format!("Files.{n}.{k}");
        let upload_from = msg.get(&key("UploadFrom")).unwrap_or("direct");
        let from = match upload_from.to_ascii_lowercase().as_str() {
            "direct" => {
                let len_key = key("DataLength");
                let len: u64 = field(msg, &len_key)?
                    .trim()
                    .parse()
                    .map_err(|_| Refusal::invalid(&len_key, "not a number"))?;
                let from = From::Direct { offset, len };
                offset += len;
                from
            }
            "disk" => From::Disk(PathBuf::from(field(msg, &key("Filename"))?)),
            "redirect" => From::Redirect(field(msg, &key("TargetURI"))?.to_string()),
            other => return Err(Refusal::invalid(&key("UploadFrom"), format!("{other:?}"))),
        };
        files.push(File {
            name: name.to_string(),
            mime: msg
                .get(&key("Metadata.ContentType"))
                .filter(|m| !m.trim().is_empty())
                .map(str::to_string),
            from,
        });
    }
    Ok(files)
}

/// The files under a `ClientPutDiskDir`'s directory.
fn disk_files(job: &Job, msg: &Message) -> Result<Vec<File>, Refusal> {
    let root = PathBuf::from(field(msg, "Filename")?);
    if !root.is_absolute() || !job.access.may_read(&root.join("x")) {
        return Err(Refusal::protocol(
            super::codes::DIRECT_DISK_ACCESS_DENIED,
            format!("{}: run TestDDARequest for it first", root.display()),
        ));
    }
    let walked = site::walk(&root).map_err(failed)?;
    if walked.len() > MAX_DIR_ENTRIES {
        return Err(Refusal::invalid(
            "Filename",
            format!("more than {MAX_DIR_ENTRIES} files"),
        ));
    }
    Ok(walked
        .into_iter()
        .map(|(name, path)| File {
            name,
            mime: None,
            from: From::Disk(path),
        })
        .collect())
}

async fn put_dir(job: &Job, msg: &Message, payload: Option<Payload>) -> Result<String, Refusal> {
    let target = keys::parse_insert(field(msg, "URI")?)?;
    let chk_only = flag(msg, "GetCHKOnly", false)?;
    let files = match msg.name.as_str() {
        "ClientPutDiskDir" => disk_files(job, msg)?,
        _ => complex_files(msg)?,
    };
    let node = job.server.config.node.clone();
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        check_path(&file.name).map_err(|e| Refusal::invalid("Files.N.Name", e))?;
        let (uri, length, found_mime) = match &file.from {
            From::Direct { offset, len } => {
                let reader = slice(payload.as_ref(), *offset, *len)
                    .map_err(|e| Refusal::invalid("Data", e))?;
                let uri = chk_for(&node, reader, *len, chk_only, None)
                    .await
                    .map_err(failed)?;
                (uri, *len, None)
            }
            From::Disk(path) => {
                if !path.is_absolute() || !job.access.may_read(path) {
                    return Err(Refusal::protocol(
                        super::codes::DIRECT_DISK_ACCESS_DENIED,
                        format!(
                            "{}: run TestDDARequest for its directory first",
                            path.display()
                        ),
                    ));
                }
                let (reader, len) = open(path)?;
                let uri = chk_for(&node, reader, len, chk_only, None)
                    .await
                    .map_err(failed)?;
                (uri, len, None)
            }
            From::Redirect(to) => redirect(&node, to).await?,
        };
        entries.push(DirEntry {
            mime: file
                .mime
                .or(found_mime)
                .unwrap_or_else(|| mime_for(&file.name)),
            path: file.name,
            uri,
            length,
        });
    }
    let doc = Directory::new(entries)
        .map_err(|e| failed(SiteError::Dir(e)))?
        .encode();
    let len = doc.len() as u64;
    let dir = chk_for(
        &node,
        Box::new(std::io::Cursor::new(doc)),
        len,
        chk_only,
        None,
    )
    .await
    .map_err(failed)?;
    put::publish(&node, target, dir, chk_only).await
}

/// `len` bytes at `offset` of the payload, as a reader of their own.
fn slice(
    payload: Option<&Payload>,
    offset: u64,
    len: u64,
) -> std::io::Result<Box<dyn Read + Send>> {
    let short = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "payload too short");
    match payload {
        Some(Payload::Memory(v)) => {
            let end = offset.checked_add(len).ok_or_else(short)?;
            let bytes = v.get(offset as usize..end as usize).ok_or_else(short)?;
            Ok(Box::new(std::io::Cursor::new(bytes.to_vec())))
        }
        Some(Payload::File { file, len: total }) => {
            if offset.checked_add(len).is_none_or(|end| end > *total) {
                return Err(short());
            }
            let mut f = file.try_clone()?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(Box::new(std::io::BufReader::with_capacity(
                1 << 16,
                f.take(len),
            )))
        }
        None if len == 0 => Ok(Box::new(std::io::empty())),
        None => Err(short()),
    }
}

/// A file to insert, and its length.
fn open(path: &Path) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
    let not_found = |e: std::io::Error| {
        Refusal::protocol(
            super::codes::FILE_NOT_FOUND,
            format!("{}: {e}", path.display()),
        )
    };
    let f = std::fs::File::open(path).map_err(not_found)?;
    let len = f.metadata().map_err(not_found)?.len();
    Ok((Box::new(std::io::BufReader::with_capacity(1 << 16, f)), len))
}

/// How long, doubling from a second, a redirect's target not found is
/// asked again.
const REDIRECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(64);

async fn resolve(
    node: &crate::client::Endpoint,
    addr: &Address,
) -> Result<site::Resolved, SiteError> {
    let opts = crate::client::transfer::get_options(put::CONCURRENCY);
    let (chk, _) = site::target(node, &addr.key, None).await?;
    site::resolve_chk(node, &chk, &addr.path, &opts).await
}

/// A redirect's target: its CHK, length and MIME type where known.
async fn redirect(
    node: &crate::client::Endpoint,
    to: &str,
) -> Result<(crate::keys::Chk, u64, Option<String>), Refusal> {
    let to = keys::strip(to);
    let addr: Address = to.parse().map_err(|e| {
        Refusal::protocol(
            super::codes::URI_PARSE_ERROR,
            format!("TargetURI {to}: {e}"),
        )
    })?;
    // A site manager inserts its files on the queue and the directory at
    // once: a target not found yet is asked again while those may run.
    let mut wait = std::time::Duration::from_secs(1);
    let resolved = loop {
        match resolve(node, &addr).await {
            Err(e) if e.kind() == ErrorKind::NotFound && wait < REDIRECT_PATIENCE => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => break other.map_err(failed)?,
        }
    };
    match resolved {
        site::Resolved::File {
            uri, length, mime, ..
        } => Ok((uri, length.unwrap_or(0), mime)),
        // A one-file directory (a CHK@…/<name> of Freenet's tools) without
        // its path: the file in it.
        site::Resolved::Folder { dir, .. } => match dir.entries() {
            [only] => Ok((only.uri.clone(), only.length, Some(only.mime.clone()))),
            _ => Err(failed(SiteError::NotADirectory(
                to.to_string(),
                String::new(),
            ))),
        },
    }
}
