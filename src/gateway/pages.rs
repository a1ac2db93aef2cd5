//! The gateway's own pages: plain HTML, no script, one inline style sheet.

use axum::extract::{Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::State;
use crate::client::Client;
use crate::content::dir::Directory;
use crate::error::{ErrorKind, HasKind};

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
    nav a{margin-right:1em}table{border-collapse:collapse}td,th{padding:.2em .8em;\
    text-align:left;border-bottom:1px solid #ddd}code{word-break:break-all}\
    .warn{background:#fee;padding:1em;border:1px solid #c00}";

/// Escape text for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a path component or query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{} - veil</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/\">veil</a>\
         <a href=\"/insert\">Insert</a><a href=\"/status\">Status</a></nav>\
         <h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    )
}

/// What went wrong, for an error page's title.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    NotFound,
    TimedOut,
    Collision,
    BadUri,
    BadData,
    NodeDown,
    Busy,
    Refused,
    Failed,
}

impl Problem {
    pub fn title(self) -> &'static str {
        match self {
            Problem::NotFound => "Not found",
            Problem::TimedOut => "Timed out",
            Problem::Collision => "Collision",
            Problem::BadUri => "Bad URI",
            Problem::BadData => "Bad data",
            Problem::NodeDown => "Node unreachable",
            Problem::Busy => "Busy",
            Problem::Refused => "Refused",
            Problem::Failed => "Failed",
        }
    }

    /// The problem and HTTP status for an error of this kind.
    pub fn of(kind: ErrorKind) -> (StatusCode, Problem) {
        match kind {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, Problem::NotFound),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, Problem::TimedOut),
            ErrorKind::BadData => (StatusCode::BAD_GATEWAY, Problem::BadData),
            ErrorKind::NodeDown | ErrorKind::NoPeers => {
                (StatusCode::BAD_GATEWAY, Problem::NodeDown)
            }
            ErrorKind::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, Problem::Busy),
            ErrorKind::Refused => (StatusCode::FORBIDDEN, Problem::Refused),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, Problem::Failed),
        }
    }
}

/// A human-readable error page.
pub fn error_page(status: StatusCode, problem: Problem, detail: &str) -> Response {
    let body = format!(
        "<p class=\"warn\" id=\"problem\" data-problem=\"{problem:?}\">{}</p>\
         <p><a href=\"/\">Back to the gateway's home page</a></p>",
        escape(detail)
    );
    (status, Html(page(problem.title(), &body))).into_response()
}

/// An error page for any typed error.
pub fn error_for(e: &(impl HasKind + std::fmt::Display)) -> Response {
    let (status, problem) = Problem::of(e.kind());
    error_page(status, problem, &e.to_string())
}

pub async fn home() -> Html<String> {
    Html(page(
        "veil gateway",
        "<p>Browse veil content by its URI: files, and directories (freesites) with \
         their pages and images. Nothing you open here leaves your machine except through \
         your node: pages cannot run scripts or load anything from the Internet, and links \
         that leave veil stop at a warning page.</p>\
         <form action=\"/go\" method=\"get\"><input name=\"uri\" size=\"80\" \
         placeholder=\"CHK@..., SSK@.../name or USK@.../site/-1\"> <button type=\"submit\">Open</button></form>\
         <p><a href=\"/insert\">Insert a file or a site</a> \u{b7} \
         <a href=\"/status\">Node status</a></p>",
    ))
}

#[derive(serde::Deserialize)]
pub struct ExternalQuery {
    url: Option<String>,
}

/// Where a link that leaves veil lands: its address as text, not a link.
pub async fn external(Query(q): Query<ExternalQuery>) -> Html<String> {
    let url = q.url.unwrap_or_default();
    Html(page(
        "This link leaves veil",
        &format!(
            "<p class=\"warn\" id=\"leaving\">The page you came from links to an address \
             outside veil:</p><p><code id=\"external-url\">{}</code></p><p>Opening it would \
             connect your browser straight to that site, which would learn your IP address \
             and perhaps what you were reading. The gateway does not follow it. If you trust \
             it, copy the address into a browser you do not mind being seen with.</p>",
            escape(&url)
        ),
    ))
}

pub(crate) async fn status(AxumState(state): AxumState<State>) -> Response {
    let node = state.config.node.clone();
    let status = async {
        Client::connect(&node, std::time::Duration::from_secs(10))
            .await?
            .status()
            .await
    };
    let s = match status.await {
        Ok(s) => s,
        Err(e) => return error_for(&e),
    };
    let mut body = format!(
        "<p>Node <code>{}</code> at location {:.6}, listening on {}{}.</p>\
         <h2>Peers ({} of {} connected)</h2><table id=\"peers\"><tr><th>state</th>\
         <th>name</th><th>address</th><th>key</th></tr>",
        escape(&s.public_key),
        s.location,
        escape(&s.listen),
        if s.testnet { " (testnet)" } else { "" },
        s.peers.iter().filter(|p| p.connected).count(),
        s.peers.len()
    );
    for p in &s.peers {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            if p.connected { "up" } else { "down" },
            escape(p.name.as_deref().unwrap_or("-")),
            escape(&p.address),
            escape(&p.public_key)
        ));
    }
    let u = &s.usage;
    let st = &s.stats;
    body.push_str(&format!(
        "</table><h2>Storage</h2><table id=\"usage\"><tr><th></th><th>blocks</th><th>bytes</th>\
         <th>limit</th></tr><tr><td>store</td><td>{}</td><td>{}</td><td>{}</td></tr>\
         <tr><td>cache</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <h2>Counters</h2><table id=\"counters\"><tr><td>requests received</td><td>{}</td></tr>\
         <tr><td>requests originated</td><td>{}</td></tr><tr><td>answered from store</td>\
         <td>{}</td></tr><tr><td>loops rejected</td><td>{}</td></tr><tr><td>overloads sent</td>\
         <td>{}</td></tr><tr><td>timeouts</td><td>{}</td></tr><tr><td>in flight</td><td>{}</td>\
         </tr></table>",
        u.store_blocks,
        u.store_bytes,
        u.store_limit,
        u.cache_blocks,
        u.cache_bytes,
        u.cache_limit,
        st.requests_received,
        st.requests_originated,
        st.answered_from_store,
        st.loops_rejected,
        st.overloads_sent,
        st.timeouts,
        s.pending
    ));
    Html(page("Node status", &body)).into_response()
}

/// An index page for `folder` of a directory at `key_uri`. Links are
/// relative to the folder (whose URL ends in `/`).
pub fn index_page(key_uri: &str, dir: &Directory, folder: &str) -> Response {
    let listing = dir.list(folder);
    let title = match folder.is_empty() {
        true => "Directory".to_string(),
        false => format!("Directory {folder}/"),
    };
    let mut body = format!(
        "<p>In <code>{}</code></p><table id=\"index\"><tr><th>name</th><th>type</th>\
         <th>bytes</th></tr>",
        escape(key_uri)
    );
    if !folder.is_empty() {
        body.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>");
    }
    for f in &listing.folders {
        body.push_str(&format!(
            "<tr><td><a href=\"{}/\">{}/</a></td><td>folder</td><td></td></tr>",
            encode(f),
            escape(f)
        ));
    }
    for e in &listing.files {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        body.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            encode(name),
            escape(name),
            escape(&e.mime),
            e.length
        ));
    }
    body.push_str("</table>");
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page(&title, &body)),
    )
        .into_response()
}
