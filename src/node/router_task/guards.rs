//! Tunnel guards kept across restarts: `guards.json` in the node's
//! directory (mode 0600), rewritten whenever the router's guards change.
//!
//! A guard is kept for `tunnel.guard_ms` (60 days by default) so that the
//! predecessor attack gains only when a guard colludes; a node that drew
//! new guards at every restart would hand colluders a new draw each time.
//! The file names the guards (friends' public keys, which the node's
//! `node.toml` names too) and until when each is kept, as Unix
//! milliseconds; a missing or unreadable file means no guards yet.
//!
//! ```json
//! {"version":1,"guards":[{"peer":"<base64url key>","until_unix_ms":1796669037993}]}
//! ```

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::RouterTask;
use crate::identity::PeerKey;

/// The file's name in the node's directory.
pub const GUARDS_FILE: &str = "guards.json";

/// Bytes read at most (a handful of guards fit in a few hundred).
const MAX_LEN: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct GuardsFile {
    version: crate::formats::Version<1>,
    guards: Vec<SavedGuard>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SavedGuard {
    peer: PeerKey,
    until_unix_ms: u64,
}

/// Where the guards are saved, and what was saved last.
#[derive(Debug, Default)]
pub(super) struct SavedGuards {
    file: Option<PathBuf>,
    last: Vec<PeerKey>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The guards in `path` with the milliseconds each is still kept for
/// (none if the file is missing, too long or malformed).
fn load(path: &Path) -> Vec<(PeerKey, u64)> {
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_LEN => std::fs::read_to_string(path).ok(),
        Ok(_) => None,
        Err(_) => return Vec::new(),
    };
    let Some(file) = text.and_then(|t| serde_json::from_str::<GuardsFile>(&t).ok()) else {
        warn!(path = %path.display(), "unreadable guards file; choosing new guards");
        return Vec::new();
    };
    let now = unix_ms();
    file.guards
        .into_iter()
        .filter(|g| g.until_unix_ms > now)
        .map(|g| (g.peer, g.until_unix_ms - now))
        .collect()
}

/// Write `guards` (milliseconds left each) to `path` via a temporary file
/// renamed into place, mode 0600.
fn save(path: &Path, guards: &[(PeerKey, u64)]) -> std::io::Result<()> {
    let now = unix_ms();
    let file = GuardsFile {
        version: Default::default(),
        guards: guards
            .iter()
            .map(|(peer, left)| SavedGuard {
                peer: *peer,
                until_unix_ms: now.saturating_add(*left),
            })
            .collect(),
    };
    let tmp = path.with_extension("json.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let text = serde_json::to_string(&file).map_err(std::io::Error::other)?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl RouterTask {
    /// Take back the guards saved in `dir`, and save there from now on.
    pub(crate) fn keep_guards_in(&mut self, dir: &Path) {
        let path = dir.join(GUARDS_FILE);
        let guards = load(&path);
        self.saved_guards.last = guards.iter().map(|(p, _)| *p).collect();
        let now = self.now();
        self.router.restore_guards(now, guards);
        self.saved_guards.file = Some(path);
    }

    /// Save the guards if they changed since they were last saved.
    pub(super) fn save_guards_if_changed(&mut self) {
        let Some(path) = &self.saved_guards.file else {
            return;
        };
        let now = self.now();
        if self
            .router
            .guard_peers(now)
            .eq(self.saved_guards.last.iter())
        {
            return;
        }
        let guards = self.router.guards(now);
        match save(path, &guards) {
            Ok(()) => self.saved_guards.last = guards.into_iter().map(|(p, _)| p).collect(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot save the tunnel guards");
                // Not again at every wake: the next change tries again.
                self.saved_guards.last = guards.into_iter().map(|(p, _)| p).collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn guards_round_trip_private_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GUARDS_FILE);
        assert!(load(&path).is_empty(), "no file, no guards");
        let (a, b) = (PeerKey([1; 32]), PeerKey([2; 32]));
        save(&path, &[(a, 3_600_000), (b, 0)]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(&path);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].0, a);
        assert!(back[0].1 > 3_500_000 && back[0].1 <= 3_600_000);
        std::fs::write(&path, "{not json").unwrap();
        assert!(load(&path).is_empty());
    }
}
