//! Content keys: convergent encryption of fixed-size blocks (CHK), signed
//! subspace keys ([`ssk`]), their URIs ([`uri`]) and locations on the key
//! circle.
//!
//! A block holds at most [`BLOCK_DATA_LEN`] bytes of plaintext. It is laid out
//! as `len (u32, big-endian) || data || zero padding` to a fixed
//! [`PADDED_LEN`], sealed with ChaCha20-Poly1305 under
//! `k = SHA-256("veil/chk/v1" || data)` with an all-zero nonce (each key seals
//! exactly one plaintext, so a nonce never repeats under a key), giving a
//! ciphertext of exactly [`BLOCK_LEN`] bytes. The routing key is
//! `SHA-256(ciphertext)`. See `docs/protocol.md` for what this does and does
//! not hide.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub mod ssk;
pub mod uri;

pub use ssk::{CryptoKey, SskPrivate, SskPublic, SSK_BLOCK_LEN, SSK_DATA_LEN};
pub use uri::{Edition, KskUri, SskInsertUri, SskUri, UskUri};

/// Plaintext bytes one block carries.
pub const BLOCK_DATA_LEN: usize = 32 * 1024;
/// Length header + data capacity: the sealed plaintext is always this long.
pub const PADDED_LEN: usize = 4 + BLOCK_DATA_LEN;
/// ChaCha20-Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Every encrypted block is exactly this many bytes.
pub const BLOCK_LEN: usize = PADDED_LEN + TAG_LEN;

const DATA_DOMAIN: &[u8] = b"veil/chk/v1";
const MANIFEST_DOMAIN: &[u8] = b"veil/chk-manifest/v1";

/// What a block's plaintext is. The kind is bound into the decryption key
/// (a different hash domain), so it cannot be changed without changing the
/// key, and no node without the key can tell the kinds apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// File content.
    Data,
    /// A manifest describing other blocks.
    Manifest,
}

impl BlockKind {
    fn domain(self) -> &'static [u8] {
        match self {
            BlockKind::Data => DATA_DOMAIN,
            BlockKind::Manifest => MANIFEST_DOMAIN,
        }
    }
}

fn derive_key(kind: BlockKind, data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.domain());
    hasher.update(data);
    hasher.finalize().into()
}

/// Errors from building, parsing or opening content keys and blocks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("block data is {0} bytes; a block carries at most {BLOCK_DATA_LEN}")]
    DataTooLong(usize),
    #[error("encrypted block is {0} bytes; blocks are exactly {BLOCK_LEN}")]
    BadBlockLength(usize),
    #[error("block does not match its routing key")]
    KeyMismatch,
    #[error("block does not decrypt under this decryption key")]
    DecryptFailed,
    #[error("decrypted block has a malformed length header or padding")]
    BadPadding,
    #[error("URI must look like CHK@<routing key>,<decryption key>")]
    UriSyntax,
    #[error("URI part is not 32 bytes of base64url: {0}")]
    UriEncoding(&'static str),
    #[error("signed block's signature does not verify")]
    BadSignature,
    #[error("document or site name is too long, empty where it must not be, or has a control character or '/'")]
    BadDocName,
    #[error("URI must look like SSK@<key>,<crypto key>/<name> or USK@<key>,<crypto key>/<site>/<edition>")]
    SskUriSyntax,
    #[error("this is a request URI; inserting needs the insert URI, SSK@<private key>,<crypto key>,insert/..., as `veil keygen` printed it")]
    RequestNotInsert,
    #[error("this is an insert URI (keep it secret); the request URI to share is {0}")]
    InsertNotRequest(String),
}

/// SHA-256 of an encrypted block: what nodes route on and verify against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingKey(pub [u8; 32]);

impl RoutingKey {
    /// The key's place on the circle: its first 8 bytes, big-endian, as a
    /// fraction of 2^64.
    pub fn location(&self) -> Location {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        Location(u64::from_be_bytes(head))
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode32(text, "routing key").map(RoutingKey)
    }
}

impl fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingKey({})", self.to_base64())
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for RoutingKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoutingKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_byte_string(d, "32 bytes", |b| b.try_into().ok().map(RoutingKey))
    }
}

/// The symmetric key that opens a block. Only URIs carry it; it never appears
/// in a routing message or a log line.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DecryptionKey([u8; 32]);

impl DecryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> DecryptionKey {
        DecryptionKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecryptionKey(<redacted>)")
    }
}

/// A position on the circle [0, 1), held as a 64-bit fixed-point fraction so
/// that distances are exact and every platform agrees on them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Location(pub u64);

impl Location {
    /// From a fraction in [0, 1); values outside wrap around.
    pub fn from_f64(x: f64) -> Location {
        let frac = x.rem_euclid(1.0);
        // 2^64 as f64; the cast saturates at u64::MAX for frac just below 1.
        Location((frac * 18_446_744_073_709_551_616.0) as u64)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }

    /// Shortest way round the circle between two locations, as a fraction of
    /// the circle (at most one half).
    pub fn distance(self, other: Location) -> u64 {
        let a = self.0.wrapping_sub(other.0);
        let b = other.0.wrapping_sub(self.0);
        a.min(b)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_f64())
    }
}

/// An encrypted block: a content-hash block of exactly [`BLOCK_LEN`] bytes,
/// or a signed block of exactly [`SSK_BLOCK_LEN`] bytes. Holding one proves
/// nothing: check it against a routing key with [`Block::verify`], the one
/// check for both kinds.
///
/// The bytes are shared: a clone (for the cache, the reply and the client
/// at once) copies no payload. A content-hash block's SHA-256 is computed
/// once, the first time any clone asks for it, and kept with the bytes, so
/// verifying a block and then keying it in the cache and the store hashes
/// it once per node.
#[derive(Clone)]
pub struct Block(Arc<Shared>);

struct Shared {
    bytes: Vec<u8>,
    /// The SHA-256 of `bytes`, once computed.
    hash: OnceLock<[u8; 32]>,
}

impl PartialEq for Block {
    fn eq(&self, other: &Block) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Block {}

impl Block {
    fn new(bytes: Vec<u8>) -> Block {
        Block(Arc::new(Shared {
            bytes,
            hash: OnceLock::new(),
        }))
    }

    /// Wrap ciphertext received from somewhere; only the length is checked.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Block, KeyError> {
        if bytes.len() != BLOCK_LEN && bytes.len() != SSK_BLOCK_LEN {
            return Err(KeyError::BadBlockLength(bytes.len()));
        }
        Ok(Block::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// A short stand-in block for the simulator (`sim::engine`), whose
    /// routing key is still the SHA-256 of its bytes, so the routing core
    /// verifies and routes it exactly as a real one. A million real 32 KiB
    /// blocks would not fit in memory; nothing outside the crate can make one,
    /// and the wire ([`Block::from_bytes`]) still refuses any other length.
    pub(crate) fn stand_in(content: &[u8]) -> Block {
        Block::new(content.to_vec())
    }

    /// Is this a signed (SSK) block?
    pub fn is_signed(&self) -> bool {
        self.as_bytes().len() == SSK_BLOCK_LEN
    }

    /// The SHA-256 of the bytes, computed at most once.
    fn digest(&self) -> [u8; 32] {
        *self
            .0
            .hash
            .get_or_init(|| Sha256::digest(self.as_bytes()).into())
    }

    /// The routing key this block is for: a content-hash block's SHA-256, or
    /// the key a signed block's public key and hashed name give (which only
    /// [`Block::verify`] checks against the signature).
    pub fn routing_key(&self) -> RoutingKey {
        match ssk::claimed_routing_key(self.as_bytes()) {
            Ok(key) if self.is_signed() => key,
            _ => RoutingKey(self.digest()),
        }
    }

    /// Does this block belong under `key`? For a content-hash block: does it
    /// hash to `key`; for a signed block: do its public key and hashed name
    /// give `key`, and does its signature verify. Every node calls this
    /// before it caches, stores or forwards a block.
    pub fn verify(&self, key: &RoutingKey) -> Result<(), KeyError> {
        if self.is_signed() {
            return ssk::verify(self.as_bytes(), key);
        }
        if self.routing_key() == *key {
            Ok(())
        } else {
            Err(KeyError::KeyMismatch)
        }
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({})", self.routing_key())
    }
}

impl Serialize for Block {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_byte_string(d, "an encrypted block", |b| Block::from_bytes(b).ok())
    }
}

/// Deserialize a byte string and make a `T` of it; bytes `make` refuses
/// are reported as a wrong length, expecting `what`.
pub(crate) fn from_byte_string<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    make: impl FnOnce(Vec<u8>) -> Option<T>,
) -> Result<T, D::Error> {
    let bytes = d.deserialize_byte_buf(BytesVisitor)?;
    let len = bytes.len();
    make(bytes).ok_or_else(|| serde::de::Error::invalid_length(len, &what))
}

struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// A content-hash key: where a block lives and how to open it.
#[derive(Clone, PartialEq, Eq)]
pub struct Chk {
    pub routing: RoutingKey,
    pub decryption: DecryptionKey,
}

impl Chk {
    /// Encrypt up to [`BLOCK_DATA_LEN`] bytes of file data into a block and
    /// its key. The same data always gives the same block and key
    /// (convergence).
    pub fn encode(data: &[u8]) -> Result<(Chk, Block), KeyError> {
        Chk::encode_kind(BlockKind::Data, data)
    }

    /// Encrypt a block of the given kind.
    pub fn encode_kind(kind: BlockKind, data: &[u8]) -> Result<(Chk, Block), KeyError> {
        if data.len() > BLOCK_DATA_LEN {
            return Err(KeyError::DataTooLong(data.len()));
        }
        let decryption = DecryptionKey(derive_key(kind, data));
        let block = Chk::seal_under(&decryption, data)?;
        let routing = block.routing_key();
        Ok((
            Chk {
                routing,
                decryption,
            },
            block,
        ))
    }

    /// Verify `block` against the routing key, open it, and check that the
    /// plaintext really derives this decryption key. Data blocks only.
    pub fn decode(&self, block: &Block) -> Result<Vec<u8>, KeyError> {
        match self.decode_any(block)? {
            (BlockKind::Data, data) => Ok(data),
            (BlockKind::Manifest, _) => Err(KeyError::DecryptFailed),
        }
    }

    /// Open a block of either kind and say which kind it is.
    pub fn decode_any(&self, block: &Block) -> Result<(BlockKind, Vec<u8>), KeyError> {
        block.verify(&self.routing)?;
        let data = Chk::open_under(&self.decryption, block)?;
        for kind in [BlockKind::Data, BlockKind::Manifest] {
            if self.made_from(kind, &data) {
                return Ok((kind, data));
            }
        }
        Err(KeyError::DecryptFailed)
    }

    /// Whether this key was made from `data` of `kind`: its decryption key
    /// is the SHA-256 of the kind's domain and the plaintext (convergence),
    /// so a match proves the plaintext without sealing it again. Used to
    /// check a block rebuilt from others (Reed-Solomon) against its CHK.
    pub fn made_from(&self, kind: BlockKind, data: &[u8]) -> bool {
        data.len() <= BLOCK_DATA_LEN && derive_key(kind, data) == self.decryption.0
    }

    /// Seal up to [`BLOCK_DATA_LEN`] bytes under `key` with the all-zero
    /// nonce: `len || data || zeros`, ChaCha20-Poly1305. Safe only when
    /// `key` is used for this one plaintext, as a convergent key (and a
    /// key derived from one and a copy number: `content::copies`) is.
    pub fn seal_under(key: &DecryptionKey, data: &[u8]) -> Result<Block, KeyError> {
        if data.len() > BLOCK_DATA_LEN {
            return Err(KeyError::DataTooLong(data.len()));
        }
        let mut padded = vec![0u8; PADDED_LEN];
        // BLOCK_DATA_LEN fits in u32, checked above.
        padded[..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
        padded[4..4 + data.len()].copy_from_slice(data);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
        let sealed = cipher
            .encrypt(Nonce::from_slice(&[0u8; 12]), padded.as_slice())
            .map_err(|_| KeyError::DecryptFailed)?;
        padded.zeroize();
        Ok(Block::new(sealed))
    }

    /// Open a content-hash block sealed by [`Chk::seal_under`] with `key`
    /// (authenticated, unpadded). Checks neither the routing key nor that
    /// the plaintext derives `key`: callers do.
    pub fn open_under(key: &DecryptionKey, block: &Block) -> Result<Vec<u8>, KeyError> {
        if block.is_signed() {
            return Err(KeyError::BadBlockLength(block.as_bytes().len()));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
        // One copy of the ciphertext, opened and unpadded in place: no
        // second buffer, and no plaintext left behind to wipe.
        let bytes = block.as_bytes();
        let sealed = bytes
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(KeyError::DecryptFailed)?;
        let (body, tag) = bytes.split_at(sealed);
        let mut data = body.to_vec();
        let opened = cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&[0u8; 12]),
                &[],
                &mut data,
                Tag::from_slice(tag),
            )
            .map_err(|_| KeyError::DecryptFailed)
            .and_then(|()| unpad_in_place(&mut data, BLOCK_DATA_LEN));
        if opened.is_err() {
            data.zeroize();
        }
        opened.map(|()| data)
    }

    /// `CHK@<routing key>,<decryption key>`, both base64url without padding.
    pub fn to_uri(&self) -> String {
        format!(
            "CHK@{},{}",
            self.routing.to_base64(),
            URL_SAFE_NO_PAD.encode(self.decryption.0)
        )
    }
}

/// `len (u32) || data || zeros` of exactly `4 + cap` bytes: the data.
fn unpad(padded: &[u8], cap: usize) -> Result<Vec<u8>, KeyError> {
    if padded.len() != 4 + cap {
        return Err(KeyError::BadPadding);
    }
    let mut head = [0u8; 4];
    head.copy_from_slice(&padded[..4]);
    let len = u32::from_be_bytes(head) as usize;
    if len > cap {
        return Err(KeyError::BadPadding);
    }
    if padded[4 + len..].iter().any(|&b| b != 0) {
        return Err(KeyError::BadPadding);
    }
    Ok(padded[4..4 + len].to_vec())
}

/// As [`unpad`], in place: `padded` becomes the data. The bytes it no
/// longer holds are zeroed.
fn unpad_in_place(padded: &mut Vec<u8>, cap: usize) -> Result<(), KeyError> {
    let (head, rest) = padded
        .split_first_chunk::<4>()
        .filter(|_| padded.len() == 4 + cap)
        .ok_or(KeyError::BadPadding)?;
    let len = u32::from_be_bytes(*head) as usize;
    if len > cap || rest[len..].iter().any(|&b| b != 0) {
        return Err(KeyError::BadPadding);
    }
    padded.copy_within(4..4 + len, 0);
    padded[len..].zeroize();
    padded.truncate(len);
    Ok(())
}

fn decode32(text: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    // 32 bytes are 43 base64url characters; refuse anything longer before decoding.
    if text.len() != 43 {
        return Err(KeyError::UriEncoding(what));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyError::UriEncoding(what))?;
    bytes.try_into().map_err(|_| KeyError::UriEncoding(what))
}

impl FromStr for Chk {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Chk, KeyError> {
        let s = s.trim();
        let rest = s.strip_prefix("CHK@").ok_or(KeyError::UriSyntax)?;
        let (routing, decryption) = rest.split_once(',').ok_or(KeyError::UriSyntax)?;
        Ok(Chk {
            routing: RoutingKey::from_base64(routing)?,
            decryption: DecryptionKey(decode32(decryption, "decryption key")?),
        })
    }
}

impl fmt::Debug for Chk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chk({}, <redacted>)", self.routing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_convergence() {
        for len in [0usize, 1, 100, BLOCK_DATA_LEN] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (chk, block) = Chk::encode(&data).unwrap();
            assert_eq!(block.as_bytes().len(), BLOCK_LEN);
            assert_eq!(chk.decode(&block).unwrap(), data);
            let (chk2, block2) = Chk::encode(&data).unwrap();
            assert_eq!(chk.routing, chk2.routing);
            assert_eq!(block, block2);
        }
        assert_eq!(
            Chk::encode(&vec![0; BLOCK_DATA_LEN + 1]).unwrap_err(),
            KeyError::DataTooLong(BLOCK_DATA_LEN + 1)
        );
    }

    #[test]
    fn kinds_are_bound_to_the_key() {
        let (data_chk, data_block) = Chk::encode(b"same bytes").unwrap();
        let (man_chk, man_block) = Chk::encode_kind(BlockKind::Manifest, b"same bytes").unwrap();
        assert_ne!(data_chk.routing, man_chk.routing);
        assert_eq!(data_chk.decode_any(&data_block).unwrap().0, BlockKind::Data);
        assert_eq!(
            man_chk.decode_any(&man_block).unwrap().0,
            BlockKind::Manifest
        );
        assert_eq!(man_chk.decode(&man_block), Err(KeyError::DecryptFailed));
    }

    #[test]
    fn tampered_block_is_rejected() {
        let (chk, block) = Chk::encode(b"hello").unwrap();
        let mut bytes = block.as_bytes().to_vec();
        bytes[10] ^= 1;
        let bad = Block::from_bytes(bytes).unwrap();
        assert_eq!(bad.verify(&chk.routing), Err(KeyError::KeyMismatch));
        assert_eq!(chk.decode(&bad), Err(KeyError::KeyMismatch));
    }

    #[test]
    fn uri_round_trip_and_errors() {
        let (chk, _) = Chk::encode(b"uri").unwrap();
        let uri = chk.to_uri();
        let parsed: Chk = uri.parse().unwrap();
        assert_eq!(parsed, chk);
        assert_eq!("SSK@x,y".parse::<Chk>(), Err(KeyError::UriSyntax));
        assert_eq!("CHK@abc".parse::<Chk>(), Err(KeyError::UriSyntax));
        assert!(matches!(
            "CHK@abc,def".parse::<Chk>(),
            Err(KeyError::UriEncoding(_))
        ));
        // Debug output never shows the decryption key.
        let shown = format!("{chk:?}");
        assert!(!shown.contains(&uri[48..]));
    }

    #[test]
    fn circle_distance_wraps() {
        let a = Location::from_f64(0.95);
        let b = Location::from_f64(0.05);
        let d = Location(a.distance(b)).as_f64();
        assert!((d - 0.10).abs() < 1e-9, "{d}");
        assert_eq!(a.distance(b), b.distance(a));
        assert_eq!(a.distance(a), 0);
    }
}
