//! `ClientPut` → `URIGenerated`, `SimpleProgress`, `PutSuccessful` /
//! `PutFailed`.
//!
//! The content (`UploadFrom=direct`: the message's payload; `disk`: the
//! file `Filename`, after `TestDDARequest` or with `FileHash`; `redirect`:
//! the CHK that `TargetURI` names) is inserted as `veil put` inserts a file
//! ([`transfer::put_stream`]). With `TargetFilename` (for `disk`, the
//! file's name unless `TargetFilename` is empty; for `CHK@/<name>`, the
//! name) the file is wrapped in a
//! one-file directory, as Freenet wraps it in a manifest, and the URI is
//! `CHK@…/<name>`. Under an `SSK@` or `USK@` insert URI the content's CHK
//! is then signed into the document or edition ([`usk::publish_ssk`],
//! [`usk::publish`]).
//!
//! `GetCHKOnly=true` computes the same URI with the same splitter
//! ([`transfer::chk_of`]) and inserts nothing: convergent encryption makes
//! the URI a function of the content alone, so the two cannot differ.

use super::codes::{self, INSERT_INVALID_URI};
use super::keys::{self, InsertUri};
use super::{field, flag, now_ms, progress, refuse, wants_progress, Job, Refusal};
use crate::client::site::{self, Address, SiteError};
use crate::client::transfer::{self, TransferError};
use crate::client::usk;
use crate::content::dir::{check_path, mime_for, DirEntry, Directory};
use crate::content::SplitOptions;
use crate::fcp::connection::Payload;
use crate::fcp::frame::Message;
use crate::fcp::queue::Reporter;
use crate::keys::{Chk, Edition, UskUri};
use std::io::Read;
use std::path::Path;

/// Blocks in flight per insert, as `veil put`'s default.
pub const CONCURRENCY: usize = 128;

/// Serve one `ClientPut`; always ends in `PutSuccessful` or `PutFailed`
/// (or a `ProtocolError` naming `id`).
pub async fn run(job: Job, msg: Message, payload: Option<Payload>) {
    let (id, global) = (job.id.clone(), job.global);
    let started = now_ms();
    match put(&job, &msg, payload, &id).await {
        Ok(uri) => succeeded(&job.out, &id, global, &uri, started).await,
        Err(r) => refuse(&job.out, "PutFailed", &id, global, r).await,
    }
}

/// A put that ended with `uri`: `URIGenerated`, then `PutSuccessful` (a
/// file's put and a directory's alike).
pub(super) async fn succeeded(out: &Reporter, id: &str, global: bool, uri: &str, started: u128) {
    let generated = Message::new("URIGenerated")
        .with("Identifier", id)
        .with("URI", uri)
        .with("Global", global);
    out.send(generated).await;
    let done = Message::new("PutSuccessful")
        .with("Identifier", id)
        .with("URI", uri)
        .with("Global", global)
        .with("StartupTime", started)
        .with("CompletionTime", now_ms());
    out.send(done).await;
}

pub fn failed(e: SiteError) -> Refusal {
    Refusal::Failed(codes::of_insert(&e))
}

/// What the CHK is made of.
enum Content {
    Bytes(Box<dyn Read + Send>, u64),
    /// Already a CHK (`UploadFrom=redirect`).
    Chk(Chk),
}

async fn put(
    job: &Job,
    msg: &Message,
    payload: Option<Payload>,
    id: &str,
) -> Result<String, Refusal> {
    let target = keys::parse_insert(field(msg, "URI")?)?;
    let chk_only = flag(msg, "GetCHKOnly", false)?;
    let mime = msg
        .get("Metadata.ContentType")
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let node = job.server.config.node.clone();
    let upload_from = msg.get("UploadFrom").unwrap_or("direct");
    let mut default_name = None;
    let content = match upload_from {
        "direct" => {
            let payload = payload.ok_or_else(|| Refusal::missing("Data"))?;
            let (reader, len) = payload.into_reader();
            Content::Bytes(reader, len)
        }
        "disk" => {
            let path = Path::new(field(msg, "Filename")?).to_path_buf();
            if !path.is_absolute() {
                return Err(Refusal::invalid("Filename", "must be an absolute path"));
            }
            let granted = job.access.may_read(&path);
            let hashed = match msg.get("FileHash") {
                Some(hash) if !granted => {
                    let (cid, ident, p, h) = (
                        job.access.conn_id.clone(),
                        id.to_string(),
                        path.clone(),
                        hash.to_string(),
                    );
                    tokio::task::spawn_blocking(move || {
                        super::dda::file_hash_matches(&cid, &ident, &p, &h)
                    })
                    .await
                    .unwrap_or(false)
                }
                _ => false,
            };
            if !granted && !hashed {
                return Err(Refusal::protocol(
                    codes::DIRECT_DISK_ACCESS_DENIED,
                    format!(
                        "{}: run TestDDARequest for its directory first",
                        path.display()
                    ),
                ));
            }
            let file = std::fs::File::open(&path).map_err(|e| {
                Refusal::protocol(codes::FILE_NOT_FOUND, format!("{}: {e}", path.display()))
            })?;
            let len = file
                .metadata()
                .map_err(|e| {
                    Refusal::protocol(
                        codes::COULD_NOT_READ_FILE,
                        format!("{}: {e}", path.display()),
                    )
                })?
                .len();
            default_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string);
            let reader = std::io::BufReader::with_capacity(1 << 16, file);
            Content::Bytes(Box::new(reader), len)
        }
        "redirect" => {
            if matches!(target, InsertUri::Chk(_)) {
                return Err(Refusal::Failed(codes::insert_failed(
                    INSERT_INVALID_URI,
                    "a redirect is inserted under an SSK@ or USK@ insert URI, not CHK@",
                )));
            }
            let to = keys::strip(field(msg, "TargetURI")?);
            let addr: Address = to.parse().map_err(|e| {
                Refusal::protocol(codes::URI_PARSE_ERROR, format!("TargetURI {to}: {e}"))
            })?;
            Content::Chk(redirect_target(&node, &addr).await.map_err(failed)?)
        }
        other => return Err(Refusal::invalid("UploadFrom", format!("{other:?}"))),
    };
    let name = match (msg.get("TargetFilename"), &target) {
        (Some(""), _) => None,
        (Some(n), _) => Some(n.to_string()),
        (None, InsertUri::Chk(Some(n))) => Some(n.clone()),
        (None, _) => default_name,
    };
    if let Some(n) = &name {
        check_path(n).map_err(|e| Refusal::invalid("TargetFilename", e))?;
    }
    let report = wants_progress(msg).then(|| (job.out.clone(), id.to_string()));
    let chk = match content {
        Content::Chk(chk) => chk,
        Content::Bytes(reader, len) => {
            let file = chk_for(&node, reader, len, chk_only, report.clone())
                .await
                .map_err(failed)?;
            match (&target, name) {
                (InsertUri::Chk(_), Some(name)) => {
                    let uri = wrap(&node, file, len, &name, mime, chk_only, report)
                        .await
                        .map_err(failed)?;
                    return Ok(format!("{}/{name}", uri.to_uri()));
                }
                _ => file,
            }
        }
    };
    publish(&node, target, chk, chk_only).await
}

/// Put `chk` under `target`: a CHK is its own URI; an SSK document or
/// USK edition is signed to point at it (computed only, with `chk_only`).
pub async fn publish(
    node: &crate::client::Endpoint,
    target: InsertUri,
    chk: Chk,
    chk_only: bool,
) -> Result<String, Refusal> {
    match target {
        InsertUri::Chk(_) => Ok(chk.to_uri()),
        InsertUri::Ksk(ksk) if chk_only => Ok(ksk.to_string()),
        // The first insert under a name owns it: another collides.
        InsertUri::Ksk(ksk) => {
            usk::publish_ssk(node, &ksk.insert(), &chk)
                .await
                .map_err(failed)?;
            Ok(ksk.to_string())
        }
        InsertUri::Ssk(insert) if chk_only => Ok(insert.public().to_string()),
        InsertUri::Ssk(insert) => Ok(usk::publish_ssk(node, &insert, &chk)
            .await
            .map_err(failed)?
            .to_string()),
        InsertUri::Usk(insert, n) if chk_only => Ok(UskUri::of_insert(&insert, Edition::Number(n))
            .map_err(|e| failed(SiteError::InsertUri(e)))?
            .to_string()),
        InsertUri::Usk(insert, n) => {
            match usk::publish(node, &insert, n, &chk).await {
                Ok(uri) => Ok(uri.to_string()),
                // Freenet inserts a taken edition as the next free one.
                Err(SiteError::Collision(_)) => {
                    let next = usk::next_edition(node, &insert, Some(n))
                        .await
                        .map_err(failed)?;
                    let uri = usk::publish(node, &insert, next, &chk)
                        .await
                        .map_err(failed)?;
                    Ok(uri.to_string())
                }
                Err(e) => Err(failed(e)),
            }
        }
    }
}

/// The CHK of `len` bytes of `reader`: inserted, or only computed.
pub async fn chk_for(
    node: &crate::client::Endpoint,
    reader: Box<dyn Read + Send>,
    len: u64,
    chk_only: bool,
    report: Option<(Reporter, String)>,
) -> Result<Chk, SiteError> {
    let split = SplitOptions::default();
    if chk_only {
        let computed =
            tokio::task::spawn_blocking(move || transfer::chk_of(reader, len, &split)).await;
        return Ok(computed.map_err(TransferError::Worker)??);
    }
    let on_progress = move |p: transfer::PutProgress| {
        if let Some((out, id)) = &report {
            progress(
                out,
                id,
                p.blocks_total,
                p.blocks_done,
                p.blocks_failed,
                true,
            );
        }
    };
    Ok(transfer::put_stream(node, reader, len, CONCURRENCY, &split, on_progress).await?)
}

/// A one-file directory holding `file` as `name`: Freenet's single-file
/// manifest, so `CHK@…/<name>` names the file and its MIME type.
async fn wrap(
    node: &crate::client::Endpoint,
    file: Chk,
    length: u64,
    name: &str,
    mime: Option<&str>,
    chk_only: bool,
    report: Option<(Reporter, String)>,
) -> Result<Chk, SiteError> {
    let entry = DirEntry {
        path: name.to_string(),
        mime: mime.map_or_else(|| mime_for(name), str::to_string),
        uri: file,
        length,
    };
    let doc = Directory::new(vec![entry])?.encode();
    let len = doc.len() as u64;
    chk_for(
        node,
        Box::new(std::io::Cursor::new(doc)),
        len,
        chk_only,
        report,
    )
    .await
}

/// The CHK a redirect's `TargetURI` names (a path below a directory names
/// that file's CHK).
pub async fn redirect_target(
    node: &crate::client::Endpoint,
    addr: &Address,
) -> Result<Chk, SiteError> {
    let (chk, _) = site::target(node, &addr.key, None).await?;
    if addr.path.is_empty() {
        return Ok(chk);
    }
    let opts = transfer::get_options(CONCURRENCY);
    match site::resolve_chk(node, &chk, &addr.path, &opts).await? {
        site::Resolved::File { uri, .. } => Ok(uri),
        site::Resolved::Folder { folder, .. } => {
            Err(SiteError::NotADirectory(chk.to_uri(), folder))
        }
    }
}
