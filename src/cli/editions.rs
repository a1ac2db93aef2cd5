//! The edition cache file of `veil put --usk`, `veil update` and `veil get`
//! of `USK@…/-1`: the newest edition of each site seen through each node,
//! where the next search starts (`--usk-cache`).

use std::path::PathBuf;

use veil::client::Endpoint;
use veil::content::usk::EditionCache;
use veil::keys::UskUri;

/// The cache file in use: `--usk-cache`, or the default one.
pub struct Editions {
    cache: Option<EditionCache>,
    node: String,
}

impl Editions {
    /// The cache for `node` at `given` (default: $XDG_CACHE_HOME or
    /// ~/.cache, veil/usk-editions.json).
    pub fn open(given: Option<PathBuf>, node: &Endpoint) -> Editions {
        let path = given.or_else(EditionCache::default_path);
        Editions {
            cache: path.as_deref().map(EditionCache::load),
            node: node.to_string(),
        }
    }

    /// The newest edition of `site` seen through this node.
    pub fn known(&self, site: &UskUri) -> Option<u64> {
        self.cache.as_ref().and_then(|c| c.get(&self.node, site))
    }

    /// Remember an edition seen; a cache that cannot be written is only noted.
    pub fn remember(&mut self, site: &UskUri, edition: u64) {
        if let Some(Err(e)) = self
            .cache
            .as_mut()
            .map(|c| c.remember(&self.node, site, edition))
        {
            eprintln!("note: {e}");
        }
    }
}
