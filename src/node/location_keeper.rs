//! A swapping node keeps its location across restarts.
//!
//! With `swap = true` the router task moves the node's location when a swap
//! succeeds (the shared location the hellos announce). Every few seconds,
//! and once more when the node stops, the keeper writes a moved location
//! into `node.toml` as `location = …` (only that key is edited; the rest
//! of the file stays as the operator wrote it), so that a restarted node
//! resumes where the swaps left it instead of at its key's location.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::keys::Location;

/// How often a moved location is written.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The location as the router moves it, and as `node.toml` last had it.
struct Locations {
    dir: PathBuf,
    current: Arc<AtomicU64>,
    saved: AtomicU64,
}

impl Locations {
    /// Write the current location if it moved since the last write.
    fn save_if_moved(&self) {
        let now = self.current.load(Ordering::Relaxed);
        if now == self.saved.load(Ordering::Relaxed) {
            return;
        }
        let location = Location(now);
        match NodeConfig::save_location(&self.dir, location.as_f64()) {
            Ok(()) => {
                self.saved.store(now, Ordering::Relaxed);
                info!(%location, "swapped location written to node.toml");
            }
            Err(e) => warn!(error = %e, "cannot write the swapped location"),
        }
    }
}

/// The task that writes the location; [`LocationKeeper::finish`] writes
/// it a last time.
pub(super) struct LocationKeeper {
    locations: Arc<Locations>,
    task: JoinHandle<()>,
}

impl LocationKeeper {
    /// Keep `current` (now equal to what `node.toml` gives) in `dir`'s
    /// `node.toml`.
    pub(super) fn spawn(dir: PathBuf, current: Arc<AtomicU64>) -> LocationKeeper {
        let saved = AtomicU64::new(current.load(Ordering::Relaxed));
        let locations = Arc::new(Locations {
            dir,
            current,
            saved,
        });
        let l = locations.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAVE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let l = l.clone();
                let _ = tokio::task::spawn_blocking(move || l.save_if_moved()).await;
            }
        });
        LocationKeeper { locations, task }
    }

    /// The node stops: write the location one last time.
    pub(super) async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        let l = self.locations;
        let _ = tokio::task::spawn_blocking(move || l.save_if_moved()).await;
    }
}
