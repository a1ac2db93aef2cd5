//! Signed subspace keys (SSK): blocks only the holder of a private key can
//! put under a name, which anyone holding the public key and the crypto key
//! can find and read.
//!
//! A publisher holds an ed25519 key pair and a random 32-byte crypto key
//! `C`. A document name `n` (for a USK edition, `site-N`) becomes
//!
//! ```text
//! name    = SHA-256("veil/ssk/name/v1"  || C || n)
//! routing = SHA-256("veil/ssk/route/v1" || SHA-256(pubkey) || name)
//! k       = SHA-256("veil/ssk/data/v1"  || C || name)
//! nonce   = SHA-256("veil/ssk/nonce/v1" || k || padded)[..12]
//! ct      = ChaCha20-Poly1305(k, nonce, padded)    padded = len || data || zeros
//! sig     = ed25519(private, "veil/ssk/sig/v1" || routing || nonce || ct)
//! block   = pubkey(32) || name(32) || nonce(12) || sig(64) || ct
//! ```
//!
//! A node sees the public key, the hashed name and the ciphertext: it can
//! recompute the routing key and check the signature (so it knows the block
//! is valid and which key pair signed it), but without `C` it learns neither
//! the name nor the content. The nonce is derived from the key and the
//! plaintext, so two different plaintexts under one name never share a
//! nonce. See `docs/protocol.md`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{decode32, unpad, Block, KeyError, RoutingKey};

/// Plaintext bytes one signed block carries: room for a redirect URI.
pub const SSK_DATA_LEN: usize = 1020;
const SSK_PADDED_LEN: usize = 4 + SSK_DATA_LEN;
const PUBKEY_LEN: usize = 32;
const NAME_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const SIG_LEN: usize = 64;
const HEADER_LEN: usize = PUBKEY_LEN + NAME_LEN + NONCE_LEN + SIG_LEN;
/// Every signed block is exactly this many bytes (a CHK block is longer).
pub const SSK_BLOCK_LEN: usize = HEADER_LEN + SSK_PADDED_LEN + 16;
/// The longest document name accepted.
pub const MAX_DOCNAME_LEN: usize = 256;

/// The symmetric key of a subspace, carried in both URIs.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CryptoKey([u8; 32]);

impl CryptoKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CryptoKey {
        CryptoKey(bytes)
    }

    pub(crate) fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn from_base64(text: &str) -> Result<CryptoKey, KeyError> {
        decode32(text, "crypto key").map(CryptoKey)
    }
}

impl fmt::Debug for CryptoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CryptoKey(<redacted>)")
    }
}

/// What anyone may know of a subspace: its public key and crypto key.
#[derive(Clone, PartialEq, Eq)]
pub struct SskPublic {
    pub(crate) public: VerifyingKey,
    pub(crate) crypto: CryptoKey,
}

/// What only the publisher holds: the signing key (and the crypto key).
#[derive(Clone)]
pub struct SskPrivate {
    pub(crate) signing: SigningKey,
    pub(crate) crypto: CryptoKey,
}

impl fmt::Debug for SskPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SskPrivate(<redacted>)")
    }
}

impl fmt::Debug for SskPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SskPublic({})",
            URL_SAFE_NO_PAD.encode(self.public.as_bytes())
        )
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn name_hash(crypto: &CryptoKey, docname: &str) -> [u8; 32] {
    hash(&[b"veil/ssk/name/v1", &crypto.0, docname.as_bytes()])
}

fn routing_of(pubkey: &[u8], name: &[u8]) -> RoutingKey {
    RoutingKey(hash(&[b"veil/ssk/route/v1", &hash(&[pubkey]), name]))
}

fn data_key(crypto: &CryptoKey, name: &[u8; 32]) -> [u8; 32] {
    hash(&[b"veil/ssk/data/v1", &crypto.0, name])
}

fn signed_message(routing: &RoutingKey, nonce: &[u8], ct: &[u8]) -> Vec<u8> {
    let parts: [&[u8]; 4] = [b"veil/ssk/sig/v1", &routing.0, nonce, ct];
    parts.concat()
}

fn check_docname(docname: &str) -> Result<(), KeyError> {
    if docname.len() > MAX_DOCNAME_LEN || docname.chars().any(char::is_control) {
        return Err(KeyError::BadDocName);
    }
    Ok(())
}

/// The parts of a signed block's bytes.
pub(crate) struct Parts<'a> {
    pub pubkey: &'a [u8],
    pub name: &'a [u8],
    pub nonce: &'a [u8],
    pub sig: &'a [u8],
    pub ct: &'a [u8],
}

/// Split a signed block's bytes (exactly [`SSK_BLOCK_LEN`]) into its parts.
pub(crate) fn parts(bytes: &[u8]) -> Result<Parts<'_>, KeyError> {
    if bytes.len() != SSK_BLOCK_LEN {
        return Err(KeyError::BadBlockLength(bytes.len()));
    }
    let (pubkey, rest) = bytes.split_at(PUBKEY_LEN);
    let (name, rest) = rest.split_at(NAME_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (sig, ct) = rest.split_at(SIG_LEN);
    Ok(Parts {
        pubkey,
        name,
        nonce,
        sig,
        ct,
    })
}

/// The routing key a signed block claims: from its public key and hashed
/// name. Claims nothing about the signature.
pub(crate) fn claimed_routing_key(bytes: &[u8]) -> Result<RoutingKey, KeyError> {
    let p = parts(bytes)?;
    Ok(routing_of(p.pubkey, p.name))
}

/// Does this signed block belong under `key`, signed by the key pair the
/// routing key names? The one check every node makes before it caches,
/// stores or forwards a signed block (through [`Block::verify`]).
pub(crate) fn verify(bytes: &[u8], key: &RoutingKey) -> Result<(), KeyError> {
    let p = parts(bytes)?;
    if routing_of(p.pubkey, p.name) != *key {
        return Err(KeyError::KeyMismatch);
    }
    let pubkey: [u8; 32] = p.pubkey.try_into().map_err(|_| KeyError::BadSignature)?;
    let public = VerifyingKey::from_bytes(&pubkey).map_err(|_| KeyError::BadSignature)?;
    let sig = Signature::from_slice(p.sig).map_err(|_| KeyError::BadSignature)?;
    public
        .verify_strict(&signed_message(key, p.nonce, p.ct), &sig)
        .map_err(|_| KeyError::BadSignature)
}

impl SskPrivate {
    /// A key pair from a 32-byte ed25519 seed and a crypto key (both from
    /// the caller's randomness: `veil keygen` uses the OS generator).
    pub fn from_seed(seed: [u8; 32], crypto: [u8; 32]) -> SskPrivate {
        SskPrivate {
            signing: SigningKey::from_bytes(&seed),
            crypto: CryptoKey(crypto),
        }
    }

    /// The public half.
    pub fn public(&self) -> SskPublic {
        SskPublic {
            public: self.signing.verifying_key(),
            crypto: self.crypto.clone(),
        }
    }

    /// Encrypt and sign up to [`SSK_DATA_LEN`] bytes under `docname`.
    pub fn sign(&self, docname: &str, data: &[u8]) -> Result<(RoutingKey, Block), KeyError> {
        check_docname(docname)?;
        if data.len() > SSK_DATA_LEN {
            return Err(KeyError::DataTooLong(data.len()));
        }
        let pubkey = self.signing.verifying_key().to_bytes();
        let name = name_hash(&self.crypto, docname);
        let routing = routing_of(&pubkey, &name);
        let mut k = data_key(&self.crypto, &name);
        let mut padded = vec![0u8; SSK_PADDED_LEN];
        // SSK_DATA_LEN fits in u32, checked above.
        padded[..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
        padded[4..4 + data.len()].copy_from_slice(data);
        let nonce_full = hash(&[b"veil/ssk/nonce/v1", &k, &padded]);
        let nonce = &nonce_full[..NONCE_LEN];
        let ct = ChaCha20Poly1305::new(Key::from_slice(&k))
            .encrypt(Nonce::from_slice(nonce), padded.as_slice())
            .map_err(|_| KeyError::DecryptFailed)?;
        padded.zeroize();
        k.zeroize();
        let sig = self
            .signing
            .sign(&signed_message(&routing, nonce, &ct))
            .to_bytes();
        let parts: [&[u8]; 5] = [&pubkey, &name, nonce, &sig, &ct];
        let bytes = parts.concat();
        Ok((routing, Block::from_bytes(bytes)?))
    }

    /// The private seed, base64url (the insert URI's first part).
    pub(crate) fn seed_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
    }
}

impl SskPublic {
    /// Where the block named `docname` lives.
    pub fn routing_key(&self, docname: &str) -> RoutingKey {
        routing_of(self.public.as_bytes(), &name_hash(&self.crypto, docname))
    }

    /// Verify `block` as this subspace's `docname` and open it.
    pub fn decode(&self, docname: &str, block: &Block) -> Result<Vec<u8>, KeyError> {
        check_docname(docname)?;
        block.verify(&self.routing_key(docname))?;
        let p = parts(block.as_bytes())?;
        let name: [u8; 32] = p.name.try_into().map_err(|_| KeyError::BadPadding)?;
        if name != name_hash(&self.crypto, docname) {
            return Err(KeyError::KeyMismatch);
        }
        let mut k = data_key(&self.crypto, &name);
        let opened = ChaCha20Poly1305::new(Key::from_slice(&k))
            .decrypt(Nonce::from_slice(p.nonce), p.ct)
            .map_err(|_| KeyError::DecryptFailed);
        k.zeroize();
        let mut padded = opened?;
        let data = unpad(&padded, SSK_DATA_LEN);
        padded.zeroize();
        data
    }

    /// The public key, base64url (the request URI's first part).
    pub(crate) fn public_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public.as_bytes())
    }

    pub(crate) fn from_parts(public: [u8; 32], crypto: CryptoKey) -> Result<SskPublic, KeyError> {
        let public =
            VerifyingKey::from_bytes(&public).map_err(|_| KeyError::UriEncoding("public key"))?;
        Ok(SskPublic { public, crypto })
    }
}

#[cfg(test)]
#[path = "ssk_tests.rs"]
mod tests;
