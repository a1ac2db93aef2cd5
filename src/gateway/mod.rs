//! The browser gateway (`veil gateway`): a local web UI in the spirit of
//! Freenet's FProxy, on axum.
//!
//! # Pages
//!
//! - `/`: home, with a box to open a URI;
//! - `/<URI>[/path]`: browse a file or a directory ([`browse`]), under a
//!   `CHK@`, `SSK@…/name` or `USK@…/site/N` key; `USK@…/site/-1/path`
//!   redirects (303, never cached) to the same path under the newest edition found
//!   (probed from the newest this gateway has seen). A folder
//!   serves its `index.html` when it has one, else an index page; a file
//!   larger than [`GatewayConfig::inline_limit`] is fetched in the
//!   background behind a progress page (`/progress/<id>`), then served from
//!   `/result/<id>`;
//! - `/insert`: upload a file, or a directory as a tar archive; progress,
//!   then the resulting URI;
//! - `/status`: the node's peers, store and cache usage, counters;
//! - `/external?url=`: the warning page every link leaving veil goes to.
//!
//! # Safety
//!
//! One request from the browser to anywhere but the gateway tells that
//! site who is reading. So ([`safety`]): every response carries a
//! Content-Security-Policy that forbids scripts and every load from
//! another origin, `nosniff` and `no-referrer`; every HTML page fetched
//! from veil is rewritten ([`rewrite`]) so links and sources that leave the
//! gateway point at the warning page, and scripts, event handlers, `<base>`
//! and `<meta http-equiv>` are removed; the listen address must be
//! loopback unless `--public`, requests must name a loopback host (against
//! DNS rebinding), and a form post from another origin is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::keys::{Edition, UskUri};

mod browse;
mod insert;
mod jobs;
pub mod pages;
pub mod rewrite;
pub mod safety;

/// How the gateway runs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The node's client API.
    pub node: crate::client::Endpoint,
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// Accept a non-loopback listen address and any Host header.
    pub public: bool,
    /// Files up to this size are served at once; larger ones behind a
    /// progress page.
    pub inline_limit: u64,
    /// The largest file the gateway fetches or accepts for insertion.
    pub max_size: u64,
    /// How long resolving an address (the directory, a small file) may take.
    pub timeout: Duration,
}

impl GatewayConfig {
    pub fn new(node: crate::client::Endpoint, listen: SocketAddr) -> GatewayConfig {
        GatewayConfig {
            node,
            listen,
            public: false,
            inline_limit: 1 << 20,
            max_size: 256 << 20,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "gateway address {0} is not loopback: anyone who can reach it could browse and insert \
         through your node; pass --public to allow it"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the gateway stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// What every handler shares.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub jobs: jobs::Jobs,
    pub editions: Editions,
}

/// Most sites whose newest edition the gateway remembers (then it starts
/// over).
const MAX_EDITIONS: usize = 1024;

/// Per site, the newest edition this gateway has found or served, where
/// the next `USK@…/-1` starts probing; in memory only.
#[derive(Default)]
pub(crate) struct Editions(std::sync::Mutex<HashMap<String, u64>>);

impl Editions {
    fn site(usk: &UskUri) -> String {
        usk.at(Edition::Latest).to_string()
    }

    pub fn get(&self, usk: &UskUri) -> Option<u64> {
        let map = self.0.lock().ok()?;
        map.get(&Self::site(usk)).copied()
    }

    pub fn remember(&self, usk: &UskUri, edition: u64) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= MAX_EDITIONS {
            map.clear();
        }
        let newest = map.entry(Self::site(usk)).or_insert(edition);
        *newest = (*newest).max(edition);
    }
}

pub(crate) type State = Arc<Shared>;

/// The gateway's routes, for a server or a test.
pub fn app(config: GatewayConfig) -> Router {
    let limit = usize::try_from(config.max_size)
        .unwrap_or(usize::MAX)
        .saturating_add(64 << 10);
    let state: State = Arc::new(Shared {
        config,
        jobs: jobs::Jobs::default(),
        editions: Editions::default(),
    });
    Router::new()
        .route("/", get(pages::home))
        .route("/status", get(pages::status))
        .route("/external", get(pages::external))
        .route("/go", get(browse::go))
        .route("/insert", get(insert::form).post(insert::upload))
        .route("/progress/{id}", get(jobs::progress))
        .route("/result/{id}", get(jobs::result))
        .fallback(browse::browse)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            safety::guard,
        ))
        .with_state(state)
}

/// Bind the listen address (loopback only unless `public`).
pub async fn bind(config: &GatewayConfig) -> Result<tokio::net::TcpListener, GatewayError> {
    if !config.public && !config.listen.ip().is_loopback() {
        return Err(GatewayError::NotLoopback(config.listen));
    }
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serve on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), GatewayError> {
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    };
    axum::serve(listener, app(config))
        .with_graceful_shutdown(stop)
        .await
        .map_err(GatewayError::Serve)
}
