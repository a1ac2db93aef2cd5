//! `/insert`: upload a file, or a directory as a tar archive.

use std::io::Read;

use axum::extract::{Multipart, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::jobs::Stage;
use super::pages::{error_page, page, Problem};
use super::State;
use crate::client::site::{put_files, Source};
use crate::client::transfer::put_file_with;
use crate::content::dir::{check_path, MAX_DIR_ENTRIES};
use crate::content::SplitOptions;
use crate::error::HasKind;

/// Blocks inserted at once.
const CONCURRENCY: usize = 32;

pub async fn form() -> Html<String> {
    Html(page(
        "Insert",
        "<form id=\"insert\" action=\"/insert\" method=\"post\" enctype=\"multipart/form-data\">\
         <p><label><input type=\"radio\" name=\"kind\" value=\"file\" checked> one file</label>\
         <label><input type=\"radio\" name=\"kind\" value=\"tar\"> a directory, as a .tar \
         archive (a freesite: put an <code>index.html</code> at its top)</label></p>\
         <p><input type=\"file\" name=\"file\" id=\"file\"></p>\
         <p><button type=\"submit\" id=\"submit\">Insert</button></p></form>\
         <p>The file is split and encrypted here, then inserted through your node. \
         The next page shows the progress and, at the end, the URI to share.</p>",
    ))
}

/// The files of a tar archive: regular files only, paths checked as a
/// directory's are (no absolute paths, no `..`). Bounded: at most
/// [`MAX_DIR_ENTRIES`] files, each no larger than the archive.
pub fn untar(archive: &[u8]) -> Result<Vec<(String, Source)>, String> {
    let mut files = Vec::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad tar entry: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| format!("bad tar path: {e}"))?;
        let path = path.to_string_lossy().to_string();
        let path = path.trim_start_matches("./").to_string();
        check_path(&path).map_err(|e| e.to_string())?;
        if files.len() == MAX_DIR_ENTRIES {
            return Err(format!("more than {MAX_DIR_ENTRIES} files"));
        }
        let size = entry.size();
        if size > archive.len() as u64 {
            return Err(format!(
                "{path}: claims {size} bytes, more than the archive"
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{path}: {e}"))?;
        files.push((path, Source::Memory(data)));
    }
    if files.is_empty() {
        return Err("the archive holds no files".into());
    }
    Ok(files)
}

fn refused(detail: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, Problem::Failed, detail)
}

pub async fn upload(AxumState(state): AxumState<State>, mut form: Multipart) -> Response {
    let mut kind = "file".to_string();
    let mut upload: Option<(String, Vec<u8>)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return refused(&format!("the upload did not arrive whole: {e}")),
        };
        match field.name() {
            Some("kind") => kind = field.text().await.unwrap_or_default(),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload").to_string();
                match field.bytes().await {
                    Ok(b) => upload = Some((name, b.to_vec())),
                    Err(e) => return refused(&format!("the upload did not arrive whole: {e}")),
                }
            }
            _ => {}
        }
    }
    let Some((name, data)) = upload else {
        return refused("no file was chosen");
    };
    let tree = match kind.as_str() {
        "tar" => match untar(&data) {
            Ok(files) => Some(files),
            Err(e) => return refused(&format!("{name}: {e}")),
        },
        _ => None,
    };
    let unit = if tree.is_some() { "files" } else { "blocks" };
    let Some((id, handle)) = state.jobs.start(name, unit) else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Problem::Busy,
            "Too many downloads and inserts are running; try again when one has finished.",
        );
    };
    let node = state.config.node.clone();
    tokio::spawn(async move {
        let split = SplitOptions::default();
        let shown = handle.clone();
        let done = match tree {
            Some(files) => put_files(&node, files, CONCURRENCY, &split, move |d, t, _| {
                shown.progress(d as u64, t as u64)
            })
            .await
            .map(|(uri, _)| format!("{}/", uri.to_uri()))
            .map_err(|e| (e.kind(), e.to_string())),
            None => put_file_with(&node, &data, CONCURRENCY, &split, move |d, t| {
                shown.progress(d as u64, t as u64)
            })
            .await
            .map(|uri| uri.to_uri())
            .map_err(|e| (e.kind(), e.to_string())),
        };
        handle.set(match done {
            Ok(uri) => Stage::Inserted { uri },
            Err((kind, detail)) => Stage::Failed {
                problem: Problem::of(kind).1,
                detail,
            },
        });
    });
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/progress/{id}"))],
    )
        .into_response()
}
