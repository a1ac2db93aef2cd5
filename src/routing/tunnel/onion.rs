//! The cryptography of tunnel cells: one key agreement per hop, and the
//! layers that keep a cell opaque to every hop but the one it is sealed for.
//! Composed from reviewed primitives only (x25519-dalek, HKDF-SHA256,
//! ChaCha20, ChaCha20-Poly1305); `docs/protocol.md`, "Tunnels", walks
//! through the same steps.
//!
//! 1. **Key agreement.** For each hop the originator draws a fresh X25519
//!    pair `(e, E)`; the hop draws `(h, H)` when the build reaches it. Both
//!    compute `s = X25519(e, H) = X25519(h, E)`; an `s` that is not
//!    contributory (a low-order share) is refused.
//! 2. **Keys.** `HKDF-SHA256(salt = "veil/tunnel/v1", ikm = s, info = E ‖ H)`
//!    gives 128 bytes: forward stream, forward seal, backward stream and
//!    backward seal keys, 32 bytes each.
//! 3. **Counters.** Each hop counts the cells it handles in each direction
//!    (relayed or its own), and the originator keeps the same counts for
//!    every hop. The count is the nonce: `0⁴ ‖ count as u64 little-endian`,
//!    never reused under one key. Links deliver in order, so the counts
//!    never disagree.
//! 4. **Forward.** To send plaintext to hop `t`, the originator seals it
//!    with ChaCha20-Poly1305 under hop `t`'s forward seal key, then XORs the
//!    ChaCha20 keystream of every hop `t, t-1, …, 1` over the whole cell.
//!    Each hop XORs its own keystream off and tries to open the result with
//!    its seal key: the hop the cell is for succeeds; any other passes the
//!    cell on (the last hop, with no one to pass it to, drops the tunnel).
//! 5. **Backward.** A hop seals its own plaintext under its backward seal
//!    key; each hop it passes on the way back XORs its backward keystream
//!    over it. The originator tries its hops in order, opening or stripping
//!    one layer each time.
//!
//! So no two hops see the same bytes of a cell, no relay can read or
//! recognise what it carries, and a cell altered on the way fails to open.

use std::fmt;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::message::cell::CELL_TAG_LEN;
use crate::message::Ephemeral;

const SALT: &[u8] = b"veil/tunnel/v1";

/// Why a key agreement or a cell failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OnionError {
    #[error("the hop's key-agreement share is a low-order point")]
    NotContributory,
    #[error("a cell is shorter than its tag")]
    Short,
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct Keys {
    fwd_stream: [u8; 32],
    fwd_seal: [u8; 32],
    back_stream: [u8; 32],
    back_seal: [u8; 32],
}

/// One hop's keys and counters: a hop keeps one for its tunnel, the
/// originator one for each hop of its own.
pub struct HopCrypto {
    keys: Keys,
    fwd: u64,
    back: u64,
}

impl fmt::Debug for HopCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HopCrypto")
            .field("fwd", &self.fwd)
            .field("back", &self.back)
            .finish_non_exhaustive()
    }
}

/// The originator's half of one hop's key agreement, until the hop answers.
pub struct Handshake {
    secret: StaticSecret,
    public: Ephemeral,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// A fresh key pair from the caller's random source.
    pub fn start(rng: &mut dyn RngCore) -> Handshake {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public = Ephemeral(PublicKey::from(&secret).to_bytes());
        Handshake { secret, public }
    }

    /// The share to send.
    pub fn public(&self) -> Ephemeral {
        self.public
    }

    /// The hop answered with its share: the keys of that hop.
    pub fn finish(self, theirs: Ephemeral) -> Result<HopCrypto, OnionError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(theirs.0));
        if !shared.was_contributory() {
            return Err(OnionError::NotContributory);
        }
        Ok(HopCrypto::derive(shared.as_bytes(), &self.public, &theirs))
    }
}

/// A hop received a build with the originator's share: its keys, and the
/// share to answer with.
pub fn accept(
    rng: &mut dyn RngCore,
    theirs: Ephemeral,
) -> Result<(HopCrypto, Ephemeral), OnionError> {
    let mine = Handshake::start(rng);
    let shared = mine.secret.diffie_hellman(&PublicKey::from(theirs.0));
    if !shared.was_contributory() {
        return Err(OnionError::NotContributory);
    }
    let keys = HopCrypto::derive(shared.as_bytes(), &theirs, &mine.public);
    Ok((keys, mine.public))
}

fn nonce(count: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&count.to_le_bytes());
    n
}

/// XOR the ChaCha20 keystream of `key` at `count` over `cell`.
fn stream(key: &[u8; 32], count: u64, cell: &mut [u8]) {
    let mut cipher = ChaCha20::new(key.into(), &nonce(count).into());
    cipher.apply_keystream(cell);
}

/// Seal the cell's body (all but its last 16 bytes) in place; the tag goes
/// in the last 16 bytes.
fn seal(key: &[u8; 32], count: u64, cell: &mut [u8]) -> Result<(), OnionError> {
    let split = cell
        .len()
        .checked_sub(CELL_TAG_LEN)
        .ok_or(OnionError::Short)?;
    let (body, tag) = cell.split_at_mut(split);
    let aead = ChaCha20Poly1305::new(Key::from_slice(key));
    let t = aead
        .encrypt_in_place_detached(Nonce::from_slice(&nonce(count)), b"", body)
        .map_err(|_| OnionError::Short)?;
    tag.copy_from_slice(&t);
    Ok(())
}

/// Open the cell in place if it is sealed under `key` at `count`; the
/// bytes are left as they were when it is not (the tag is checked before
/// anything is decrypted).
fn open(key: &[u8; 32], count: u64, cell: &mut [u8]) -> bool {
    let Some(split) = cell.len().checked_sub(CELL_TAG_LEN) else {
        return false;
    };
    let (body, tag) = cell.split_at_mut(split);
    let aead = ChaCha20Poly1305::new(Key::from_slice(key));
    aead.decrypt_in_place_detached(
        Nonce::from_slice(&nonce(count)),
        b"",
        body,
        Tag::from_slice(tag),
    )
    .is_ok()
}

impl HopCrypto {
    fn derive(shared: &[u8; 32], e: &Ephemeral, h: &Ephemeral) -> HopCrypto {
        let hk = Hkdf::<Sha256>::new(Some(SALT), shared);
        let mut info = [0u8; 64];
        info[..32].copy_from_slice(&e.0);
        info[32..].copy_from_slice(&h.0);
        let mut okm = [0u8; 128];
        // 128 bytes is far below HKDF-SHA256's limit of 255 * 32.
        if hk.expand(&info, &mut okm).is_err() {
            unreachable!("HKDF-SHA256 expands to 128 bytes");
        }
        let mut keys = Keys {
            fwd_stream: [0; 32],
            fwd_seal: [0; 32],
            back_stream: [0; 32],
            back_seal: [0; 32],
        };
        keys.fwd_stream.copy_from_slice(&okm[..32]);
        keys.fwd_seal.copy_from_slice(&okm[32..64]);
        keys.back_stream.copy_from_slice(&okm[64..96]);
        keys.back_seal.copy_from_slice(&okm[96..]);
        okm.zeroize();
        HopCrypto {
            keys,
            fwd: 0,
            back: 0,
        }
    }

    /// A hop: a cell from upstream loses this hop's layer. True when it was
    /// sealed for this hop (it is now plaintext); false when it is to be
    /// passed on as it now is.
    pub fn peel_forward(&mut self, cell: &mut [u8]) -> bool {
        stream(&self.keys.fwd_stream, self.fwd, cell);
        let mine = open(&self.keys.fwd_seal, self.fwd, cell);
        self.fwd += 1;
        mine
    }

    /// A hop: seal this hop's own plaintext for the originator.
    pub fn seal_backward(&mut self, cell: &mut [u8]) -> Result<(), OnionError> {
        let sealed = seal(&self.keys.back_seal, self.back, cell);
        self.back += 1;
        sealed
    }

    /// A hop: add this hop's layer to a cell on its way back.
    pub fn wrap_backward(&mut self, cell: &mut [u8]) {
        stream(&self.keys.back_stream, self.back, cell);
        self.back += 1;
    }
}

/// The originator: seal `cell` (plaintext, tag room at the end) for
/// `path[target]` and layer it for every hop up to it.
pub fn seal_forward(
    path: &mut [HopCrypto],
    target: usize,
    cell: &mut [u8],
) -> Result<(), OnionError> {
    let Some(hop) = path.get(target) else {
        return Err(OnionError::Short);
    };
    seal(&hop.keys.fwd_seal, hop.fwd, cell)?;
    for hop in path[..=target].iter_mut().rev() {
        stream(&hop.keys.fwd_stream, hop.fwd, cell);
        hop.fwd += 1;
    }
    Ok(())
}

/// The originator: open a cell that came back, in place. The index of the
/// hop that sealed it, or `None` when none did (the tunnel is corrupt).
pub fn open_backward(path: &mut [HopCrypto], cell: &mut [u8]) -> Option<usize> {
    for (i, hop) in path.iter_mut().enumerate() {
        if open(&hop.keys.back_seal, hop.back, cell) {
            hop.back += 1;
            return Some(i);
        }
        stream(&hop.keys.back_stream, hop.back, cell);
        hop.back += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// An originator and `n` hops that agreed keys.
    fn path(n: usize, seed: u64) -> (Vec<HopCrypto>, Vec<HopCrypto>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut mine = Vec::new();
        let mut hops = Vec::new();
        for _ in 0..n {
            let hs = Handshake::start(&mut rng);
            let (hop, share) = accept(&mut rng, hs.public()).unwrap();
            mine.push(hs.finish(share).unwrap());
            hops.push(hop);
        }
        (mine, hops)
    }

    #[test]
    fn a_cell_opens_only_at_its_hop_and_no_two_hops_see_the_same_bytes() {
        let (mut mine, mut hops) = path(4, 1);
        for target in [3, 0, 2, 1, 3] {
            let plain: Vec<u8> = (0..1024u32)
                .map(|i| (i * 7 + target as u32) as u8)
                .collect();
            let mut cell = plain.clone();
            seal_forward(&mut mine, target, &mut cell).unwrap();
            let mut seen = Vec::new();
            for (i, hop) in hops.iter_mut().enumerate().take(target + 1) {
                seen.push(cell.clone());
                let opened = hop.peel_forward(&mut cell);
                assert_eq!(opened, i == target, "hop {i} target {target}");
            }
            assert_eq!(cell[..1024 - CELL_TAG_LEN], plain[..1024 - CELL_TAG_LEN]);
            for a in 0..seen.len() {
                for b in a + 1..seen.len() {
                    let same = seen[a].iter().zip(&seen[b]).filter(|(x, y)| x == y).count();
                    assert!(same < 32, "hops {a} and {b} share {same} bytes");
                }
                assert_ne!(seen[a][..64], plain[..64]);
            }
        }
    }

    #[test]
    fn a_cell_back_from_any_hop_opens_at_the_originator() {
        let (mut mine, mut hops) = path(3, 2);
        for from in [2, 0, 1, 2, 2, 0] {
            let plain = vec![from as u8 + 1; 512];
            let mut cell = plain.clone();
            hops[from].seal_backward(&mut cell).unwrap();
            for hop in hops[..from].iter_mut().rev() {
                hop.wrap_backward(&mut cell);
            }
            assert_eq!(open_backward(&mut mine, &mut cell), Some(from));
            assert_eq!(cell[..512 - CELL_TAG_LEN], plain[..512 - CELL_TAG_LEN]);
        }
    }

    #[test]
    fn an_altered_cell_opens_nowhere_and_a_failed_open_changes_nothing() {
        let (mut mine, mut hops) = path(2, 3);
        let mut cell = vec![3u8; 256];
        seal_forward(&mut mine, 1, &mut cell).unwrap();
        cell[100] ^= 1;
        assert!(!hops[0].peel_forward(&mut cell));
        let before = cell.clone();
        assert!(!hops[1].peel_forward(&mut cell));
        // The exit's own layer came off; the failed open left the rest.
        assert_ne!(before, cell);
        let mut again = cell.clone();
        assert!(!open(&[9; 32], 0, &mut again));
        assert_eq!(again, cell);
    }

    #[test]
    fn a_low_order_share_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        assert_eq!(
            accept(&mut rng, Ephemeral([0; 32])).err(),
            Some(OnionError::NotContributory)
        );
        let hs = Handshake::start(&mut rng);
        assert_eq!(
            hs.finish(Ephemeral([0; 32])).err(),
            Some(OnionError::NotContributory)
        );
    }
}
