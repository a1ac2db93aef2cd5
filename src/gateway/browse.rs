//! `GET /<URI>[/path]`: files and directories.

use std::sync::Arc;

use axum::extract::{Query, State as AxumState};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::jobs::Stage;
use super::pages::{error_for, error_page, index_page, Problem};
use super::rewrite::rewrite_html;
use super::State;
use crate::client::site::{resolve_chk, target, Address, AddressError, Key, Resolved};
use crate::client::transfer::{get_options, get_to_writer};
use crate::content::FetchOptions;
use crate::error::HasKind;
use crate::keys::{Chk, Edition, UskUri};

/// Blocks fetched at once for one file.
const CONCURRENCY: usize = 32;

/// A file's bytes as a response: HTML is rewritten, everything gets its
/// MIME type (never sniffed: the safety headers say `nosniff`).
pub fn serve_bytes(mime: &str, bytes: &[u8]) -> Response {
    let essence = mime.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("text/html")
        || essence.eq_ignore_ascii_case("application/xhtml+xml")
    {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8".to_string())],
            rewrite_html(bytes),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, mime.to_string())], bytes.to_vec()).into_response()
}

#[derive(serde::Deserialize)]
pub struct GoQuery {
    uri: Option<String>,
}

/// The home page's box: `/go?uri=CHK@…` → `/CHK@…`.
pub async fn go(Query(q): Query<GoQuery>) -> Response {
    let text = q.uri.unwrap_or_default();
    let text = text.trim();
    let text = text.strip_prefix("freenet:").unwrap_or(text);
    match text.parse::<Address>() {
        Ok(_) => Redirect::to(&format!("/{}", text.trim_start_matches('/'))).into_response(),
        Err(e) => bad_uri(&e),
    }
}

fn bad_uri(e: &AddressError) -> Response {
    error_page(StatusCode::BAD_REQUEST, Problem::BadUri, &e.to_string())
}

fn options(state: &State) -> FetchOptions {
    FetchOptions {
        max_len: state.config.max_size,
        ..get_options(CONCURRENCY)
    }
}

/// Everything that is not one of the gateway's own pages.
pub async fn browse(AxumState(state): AxumState<State>, uri: Uri) -> Response {
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    let addr: Address = match path.parse() {
        Ok(a) => a,
        Err(e) => return bad_uri(&e),
    };
    let opts = options(&state);
    let node = state.config.node.clone();
    let known = match &addr.key {
        Key::Usk(usk) if usk.edition == Edition::Latest => state.editions.get(usk),
        _ => None,
    };
    let looked = tokio::time::timeout(state.config.timeout, async {
        let (chk, edition) = target(&node, &addr.key, known).await?;
        if let (Key::Usk(usk), Some(n)) = (&addr.key, edition) {
            state.editions.remember(usk, n);
            if usk.edition == Edition::Latest {
                return Ok(Err(usk.at(Edition::Number(n))));
            }
        }
        resolve_chk(&node, &chk, &addr.path, &opts).await.map(Ok)
    })
    .await;
    let resolved = match looked {
        Ok(Ok(Ok(r))) => r,
        // `-1`: to the newest edition found, so the address bar, the links
        // and a bookmark name what is shown; a 303 (not cached), as `-1`
        // moves on.
        Ok(Ok(Err(edition))) => {
            return Redirect::to(&edition_location(&edition, &addr)).into_response()
        }
        Ok(Err(e)) => return error_for(&e),
        Err(_) => {
            return error_page(
                StatusCode::GATEWAY_TIMEOUT,
                Problem::TimedOut,
                &format!(
                    "{} did not resolve within {:?}; the network may be slow: try again.",
                    addr.to_uri(),
                    state.config.timeout
                ),
            )
        }
    };
    match resolved {
        Resolved::Folder { dir, folder } => {
            if !addr.trailing_slash {
                // Relative links in the folder's pages need the '/'.
                return Redirect::permanent(&format!("/{}/", addr.to_uri())).into_response();
            }
            let index = match folder.is_empty() {
                true => "index.html".to_string(),
                false => format!("{folder}/index.html"),
            };
            match dir.get(&index) {
                Some(e) => {
                    let (uri, mime, len) = (e.uri.clone(), e.mime.clone(), e.length);
                    file(&state, &addr.to_uri(), uri, mime, Some(len), &opts).await
                }
                None => index_page(&addr.key.to_uri(), &dir, &folder),
            }
        }
        Resolved::File {
            bytes: Some(bytes),
            mime,
            ..
        } => serve_bytes(
            mime.as_deref().unwrap_or("application/octet-stream"),
            &bytes,
        ),
        Resolved::File {
            uri, length, mime, ..
        } => {
            let mime = mime.unwrap_or_else(|| "application/octet-stream".into());
            file(&state, &addr.to_uri(), uri, mime, length, &opts).await
        }
    }
}

/// Where `/USK@…/-1/path` goes once edition `usk` is found: the same path
/// (each part percent-encoded, the trailing '/' kept) under that edition.
fn edition_location(usk: &UskUri, addr: &Address) -> String {
    let mut out = format!("/{usk}");
    for part in addr.path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(&super::pages::encode(part));
    }
    if addr.trailing_slash {
        out.push('/');
    }
    out
}

/// Serve a file: at once when small, else behind a progress page.
async fn file(
    state: &State,
    what: &str,
    uri: Chk,
    mime: String,
    length: Option<u64>,
    opts: &FetchOptions,
) -> Response {
    let node = state.config.node.clone();
    if length.is_some_and(|l| l <= state.config.inline_limit) {
        let mut bytes = Vec::new();
        let got = tokio::time::timeout(
            state.config.timeout,
            get_to_writer(&node, &uri, opts, &mut bytes, |_| {}),
        )
        .await;
        return match got {
            Ok(Ok(_)) => serve_bytes(&mime, &bytes),
            Ok(Err(e)) => error_for(&e),
            Err(_) => error_page(
                StatusCode::GATEWAY_TIMEOUT,
                Problem::TimedOut,
                &format!("{what} did not arrive within {:?}", state.config.timeout),
            ),
        };
    }
    let Some((id, handle)) = state.jobs.start(what.to_string(), "blocks") else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Problem::Busy,
            "Too many downloads and inserts are running; try again when one has finished.",
        );
    };
    let opts = *opts;
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let shown = handle.clone();
        let got = get_to_writer(&node, &uri, &opts, &mut bytes, move |p| {
            shown.progress(p.blocks_done, p.blocks_known)
        })
        .await;
        handle.set(match got {
            Ok(_) => Stage::Fetched {
                mime,
                bytes: Arc::new(bytes),
            },
            Err(e) => Stage::Failed {
                problem: Problem::of(e.kind()).1,
                detail: e.to_string(),
            },
        });
    });
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/progress/{id}"))],
    )
        .into_response()
}
