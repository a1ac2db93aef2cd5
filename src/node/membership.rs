//! Runtime membership: befriending and dropping peers while the node runs
//! (`veil add-peer` / `veil remove-peer` through the client API). Each change
//! is written to `node.toml` first, then takes effect: the handshake
//! allow-list, the dialler of the friendship (the side with the smaller key
//! dials), and the router task's peer table (a removed peer's link closes).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use super::links::{dial_peer, LinkContext};
use super::Input;
use crate::config::{NodeConfig, PeerConfig};
use crate::identity::PeerKey;

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("a peer with key {0} is already configured")]
    Known(PeerKey),
    #[error("no peer with key {0} is configured")]
    Unknown(PeerKey),
    #[error("that is this node's own key")]
    Own,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the node is shutting down")]
    Stopping,
}

/// The node's friends, as the running node sees them.
pub(super) struct Membership {
    dir: PathBuf,
    own: PeerKey,
    ctx: Arc<LinkContext>,
    input: mpsc::Sender<Input>,
    shutdown: watch::Receiver<bool>,
    /// The dialler of each friendship this side dials.
    dialers: Mutex<HashMap<PeerKey, JoinHandle<()>>>,
}

impl Membership {
    pub(super) fn new(
        dir: PathBuf,
        own: PeerKey,
        ctx: Arc<LinkContext>,
        input: mpsc::Sender<Input>,
        shutdown: watch::Receiver<bool>,
    ) -> Membership {
        Membership {
            dir,
            own,
            ctx,
            input,
            shutdown,
            dialers: Mutex::new(HashMap::new()),
        }
    }

    /// Dial `peer` (with back-off, for as long as it is a friend) if this
    /// side of the friendship dials: the one with the smaller key.
    pub(super) fn dial(&self, peer: &PeerConfig) {
        if self.own >= peer.public_key {
            return;
        }
        let task = tokio::spawn(dial_peer(
            peer.address,
            peer.public_key,
            self.ctx.clone(),
            self.shutdown.clone(),
        ));
        let mut dialers = self.dialers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = dialers.insert(peer.public_key, task) {
            old.abort();
        }
    }

    /// Befriend `peer`: write it to `node.toml`, allow its handshake, tell
    /// the router task, and dial it if this side dials.
    pub(super) async fn add(&self, peer: PeerConfig) -> Result<(), MembershipError> {
        let key = peer.public_key;
        if key == self.own {
            return Err(MembershipError::Own);
        }
        NodeConfig::update(&self.dir, |config| {
            if config.peers.iter().any(|p| p.public_key == key) {
                return Err(MembershipError::Known(key));
            }
            config.peers.push(peer.clone());
            Ok(())
        })?;
        self.ctx.allow(key, Some(peer.address.ip()));
        self.input
            .send(Input::PeerAdded { peer: peer.clone() })
            .await
            .map_err(|_| MembershipError::Stopping)?;
        self.dial(&peer);
        info!(peer = %key, address = %peer.address, "peer added");
        Ok(())
    }

    /// Drop the friend with `key`: remove it from `node.toml`, refuse its
    /// handshakes, stop dialling it, and close its link.
    pub(super) async fn remove(&self, key: PeerKey) -> Result<(), MembershipError> {
        NodeConfig::update(&self.dir, |config| {
            let before = config.peers.len();
            config.peers.retain(|p| p.public_key != key);
            if config.peers.len() == before {
                return Err(MembershipError::Unknown(key));
            }
            Ok(())
        })?;
        self.ctx.allow(key, None);
        let dialer = self
            .dialers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        if let Some(task) = dialer {
            task.abort();
        }
        self.input
            .send(Input::PeerRemoved { peer: key })
            .await
            .map_err(|_| MembershipError::Stopping)?;
        info!(peer = %key, "peer removed");
        Ok(())
    }

    /// Stop every dialler (the node is stopping).
    pub(super) fn stop(&self) {
        let mut dialers = self.dialers.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, task) in dialers.drain() {
            task.abort();
        }
    }
}
