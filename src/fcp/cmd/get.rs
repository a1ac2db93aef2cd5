//! `ClientGet` → `DataFound` then `AllData` (`ReturnType=direct`), the
//! file written (`disk`, after `TestDDARequest` for its directory), or
//! `DataFound` alone (`none`); or `GetFailed` with Freenet's code.
//!
//! The URI is resolved as `veil get` resolves it ([`site::target`],
//! [`site::resolve_chk`]): an `SSK@` document or `USK@` edition to its
//! CHK, a path into a directory to its file. A directory asked for without
//! a path gives its `index.html`, as Freenet's default document. Every
//! block is verified and the file decrypted here, in this process: the
//! node only ever sees routing keys and encrypted blocks.

use std::path::Path;
use tokio::io::AsyncWriteExt;

use super::codes::{self, fetch_failed};
use super::{field, now_ms, progress, refuse, wants_progress, Job, Refusal};
use crate::client::site::{self, Address, Resolved};
use crate::client::transfer;
use crate::content::dir::mime_for;
use crate::content::FetchOptions;
use crate::fcp::connection::{spool_file, Body};
use crate::fcp::frame::Message;
use crate::keys::Chk;

/// Blocks in flight per fetch, as `veil get`'s default.
pub const CONCURRENCY: usize = 128;

/// Serve one `ClientGet`; always ends in `DataFound` (and `AllData`),
/// `GetFailed`, or a `ProtocolError` naming `id`.
pub async fn run(job: Job, msg: Message) {
    let (id, global) = (job.id.clone(), job.global);
    if let Err(r) = get(&job, &msg, &id, global).await {
        refuse(&job.out, "GetFailed", &id, global, r).await;
    }
}

fn failed(e: site::SiteError) -> Refusal {
    Refusal::Failed(codes::of_fetch(&e))
}

/// What the URI names, once resolved.
struct Found {
    chk: Chk,
    mime: String,
    /// The bytes, when resolving already fetched them (a short file).
    bytes: Option<Vec<u8>>,
}

async fn get(job: &Job, msg: &Message, id: &str, global: bool) -> Result<(), Refusal> {
    let uri = super::keys::strip(field(msg, "URI")?);
    let addr: Address = uri.parse().map_err(|e| {
        Refusal::Failed(fetch_failed(
            codes::FETCH_INVALID_URI,
            format!("{uri}: {e}"),
        ))
    })?;
    let mut opts = transfer::get_options(CONCURRENCY);
    if let Some(max) = msg.get("MaxSize") {
        opts.max_len = max
            .trim()
            .parse()
            .map_err(|_| Refusal::protocol(codes::ERROR_PARSING_NUMBER, "MaxSize"))?;
    }
    let return_type = msg.get("ReturnType").unwrap_or("direct");
    let disk = match return_type {
        "direct" | "none" => None,
        "disk" => {
            let path = Path::new(field(msg, "Filename")?).to_path_buf();
            if !path.is_absolute() {
                return Err(Refusal::invalid("Filename", "must be an absolute path"));
            }
            if !job.access.may_write(&path) {
                return Err(Refusal::protocol(
                    codes::DIRECT_DISK_ACCESS_DENIED,
                    format!(
                        "{}: run TestDDARequest for its directory first",
                        path.display()
                    ),
                ));
            }
            if path.exists() {
                return Err(Refusal::protocol(
                    codes::DISK_TARGET_EXISTS,
                    path.display().to_string(),
                ));
            }
            Some(path)
        }
        other => return Err(Refusal::invalid("ReturnType", format!("{other:?}"))),
    };
    let node = job.server.config.node.clone();
    let found = resolve(&node, &addr, &opts).await?;
    let started = now_ms();
    let report = wants_progress(msg).then(|| (job.out.clone(), id.to_string()));
    let on_progress = move |p: crate::content::Progress| {
        if let Some((out, id)) = &report {
            let finalized = p.segments_total > 0;
            progress(out, id, p.blocks_known, p.blocks_done, 0, finalized);
        }
    };
    let found_msg = |len: u64| {
        Message::new("DataFound")
            .with("Identifier", id)
            .with("Global", global)
            .with("Metadata.ContentType", &found.mime)
            .with("DataLength", len)
            .with("StartupTime", started)
            .with("CompletionTime", now_ms())
    };
    if let Some(path) = disk {
        let len = match &found.bytes {
            Some(b) => {
                tokio::fs::write(&path, b).await.map_err(|e| {
                    Refusal::protocol(
                        codes::COULD_NOT_CREATE_FILE,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                b.len() as u64
            }
            None => {
                transfer::get_to_path(&node, &found.chk, &opts, &path, on_progress)
                    .await
                    .map_err(|e| failed(e.into()))?
                    .len
            }
        };
        job.out.send(found_msg(len)).await;
        return Ok(());
    }
    let body = match found.bytes.clone() {
        Some(b) => Body::Bytes(b),
        None => {
            let spool = spool_file(&job.server.config.spool).map_err(|e| {
                Refusal::Failed(fetch_failed(codes::FETCH_INTERNAL_ERROR, e.to_string()))
            })?;
            let mut out = tokio::fs::File::from_std(spool);
            let len = transfer::get_to_writer(&node, &found.chk, &opts, &mut out, on_progress)
                .await
                .map_err(|e| failed(e.into()))?;
            let internal = |e: std::io::Error| {
                Refusal::Failed(fetch_failed(codes::FETCH_INTERNAL_ERROR, e.to_string()))
            };
            out.flush().await.map_err(internal)?;
            Body::File {
                file: out.into_std().await,
                len,
            }
        }
    };
    let len = match &body {
        Body::Bytes(b) => b.len() as u64,
        Body::File { len, .. } => *len,
    };
    job.out.send(found_msg(len)).await;
    if return_type == "none" {
        return Ok(());
    }
    let all = Message::new("AllData")
        .with("Identifier", id)
        .with("Global", global)
        .with("StartupTime", started)
        .with("CompletionTime", now_ms())
        .with("Metadata.ContentType", &found.mime);
    job.out.send_data(all, body).await;
    Ok(())
}

/// The file an address names: its CHK, MIME type, and its bytes if
/// resolving fetched them already.
async fn resolve(
    node: &crate::client::Endpoint,
    addr: &Address,
    opts: &FetchOptions,
) -> Result<Found, Refusal> {
    let (chk, _) = site::target(node, &addr.key, None).await.map_err(failed)?;
    let guessed = |path: &str| match path.is_empty() {
        true => "application/octet-stream".to_string(),
        false => mime_for(path),
    };
    match site::resolve_chk(node, &chk, &addr.path, opts)
        .await
        .map_err(failed)?
    {
        Resolved::File {
            uri, mime, bytes, ..
        } => Ok(Found {
            chk: uri,
            mime: mime.unwrap_or_else(|| guessed(&addr.path)),
            bytes,
        }),
        Resolved::Folder { dir, folder } => {
            let index = match folder.is_empty() {
                true => "index.html".to_string(),
                false => format!("{folder}/index.html"),
            };
            // A one-file directory (Freenet's single-file manifest) gives
            // its file; a site its index.html.
            let entry = match dir.entries() {
                [only] if folder.is_empty() => Some(only),
                _ => dir.get(&index),
            };
            match entry {
                Some(e) => Ok(Found {
                    chk: e.uri.clone(),
                    mime: e.mime.clone(),
                    bytes: None,
                }),
                None => Err(Refusal::Failed(fetch_failed(
                    codes::FETCH_NOT_ENOUGH_PATH_COMPONENTS,
                    format!(
                        "{} is a directory without index.html: add a path",
                        addr.to_uri()
                    ),
                ))),
            }
        }
    }
}
