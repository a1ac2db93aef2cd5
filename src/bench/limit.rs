//! The path limit of `veil bench --chain`: what the cryptography of one
//! fetched byte costs on the chain's path in each mode, and so the most
//! the machine's cores allow through it.

use serde::Serialize;

use crate::routing::Anonymity;

/// AEAD passes per byte: a seal and an open on each of the 4 links, and
/// the client's open of the content (`Chk::decode_any`).
pub const AEAD_PASSES: f64 = 9.0;
/// SHA-256 passes per byte: holder, 3 relays and requester verify the
/// block; the client verifies it too, checks its plaintext against the
/// convergent key and hashes the whole file against the root's hash.
pub const HASH_PASSES: f64 = 8.0;

/// The cryptography one byte of a fetched block costs on the path, per
/// mode: passes of ChaCha20-Poly1305 (or of the pair apart: a tag check
/// and a keystream), of the ChaCha20 keystream alone, and of SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PathPasses {
    pub aead: f64,
    pub stream: f64,
    pub hash: f64,
}

impl PathPasses {
    /// The passes of `mode` on the chain. In `tunnel` the count is that
    /// of the shortest tunnel (`min_walk` hops, the exit at n3, next to
    /// the holder), so the limit is the highest any tunnel allows. Beyond
    /// the links' [`AEAD_PASSES`]: the exit seals the block's cell (one
    /// AEAD pass); each of the `min_walk - 1` relays adds its keystream
    /// (one ChaCha20 pass); the originator checks the tag of every hop in
    /// turn and strips its layer (`min_walk` AEAD passes). Relays cannot
    /// read the block, so only the holder, the exit and the requester
    /// verify it: 3 SHA-256 passes, and the client's 3.
    pub fn of(mode: Anonymity) -> PathPasses {
        match mode {
            Anonymity::Tunnel => {
                let hops = crate::routing::TunnelConfig::default().min_walk.max(1) as f64;
                PathPasses {
                    aead: AEAD_PASSES + 1.0 + hops,
                    stream: hops - 1.0,
                    hash: 6.0,
                }
            }
            Anonymity::None | Anonymity::Freenet => PathPasses {
                aead: AEAD_PASSES,
                stream: 0.0,
                hash: HASH_PASSES,
            },
        }
    }

    /// The path's limit on `cores` cores at these one-core speeds (MiB/s).
    pub fn limit(&self, cores: usize, aead: f64, stream: f64, sha: f64) -> f64 {
        cores as f64 / (self.aead / aead + self.stream / stream + self.hash / sha)
    }
}
