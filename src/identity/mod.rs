//! Node identities: an X25519 static key pair, its public half as a
//! [`PeerKey`], and the node's location on the key circle derived from it.
//!
//! A [`PeerKey`] is written as 43 characters of unpadded base64url, in
//! configuration, topology files and logs alike. The secret half lives in an
//! [`Identity`]; it is saved as base64url in a file of its own created with
//! mode 0600, and never appears in `Debug` output.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::keys::Location;

/// Characters in the unpadded base64url form of 32 bytes.
const KEY_TEXT_LEN: usize = 43;

/// A secret key file holds 43 characters and a newline; anything much longer
/// is not one, and is refused without reading it all.
const MAX_KEY_FILE_LEN: u64 = 256;

const LOCATION_DOMAIN: &[u8] = b"veil/location/v1";

/// Why text is not a [`PeerKey`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerKeyError {
    #[error(
        "peer key is {0} characters; it must be {KEY_TEXT_LEN} characters of unpadded base64url"
    )]
    BadLength(usize),
    #[error("peer key is not unpadded base64url")]
    BadEncoding,
}

/// Why an identity could not be saved or loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity file {} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot read identity file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("identity file {} is malformed: expected {KEY_TEXT_LEN} characters of unpadded base64url and a newline", .path.display())]
    Malformed { path: PathBuf },
    #[error("identity file {} already exists; refusing to overwrite it", .path.display())]
    AlreadyExists { path: PathBuf },
    #[error("cannot write identity file {}: {source}", .path.display())]
    Unwritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A node's X25519 static public key: what links authenticate and what
/// neighbours are known by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub [u8; 32]);

impl PeerKey {
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.to_base64())
    }
}

impl FromStr for PeerKey {
    type Err = PeerKeyError;

    /// Exactly 43 characters of unpadded base64url; no whitespace, no padding.
    fn from_str(s: &str) -> Result<PeerKey, PeerKeyError> {
        decode_key_text(s).map(PeerKey)
    }
}

/// Decode 43 characters of unpadded base64url into 32 bytes, checking the
/// length before decoding.
fn decode_key_text(s: &str) -> Result<[u8; 32], PeerKeyError> {
    if s.len() != KEY_TEXT_LEN {
        return Err(PeerKeyError::BadLength(s.len()));
    }
    let mut out = [0u8; 32];
    // 43 characters decode to at most 32 bytes, so the slice is big enough;
    // the base64 engine also rejects non-canonical trailing bits.
    let n = URL_SAFE_NO_PAD
        .decode_slice(s.as_bytes(), &mut out)
        .map_err(|_| PeerKeyError::BadEncoding)?;
    if n != 32 {
        return Err(PeerKeyError::BadEncoding);
    }
    Ok(out)
}

impl Serialize for PeerKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl schemars::JsonSchema for PeerKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PeerKey".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A node's public key: 32 bytes as unpadded base64url.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{43}$",
        })
    }
}

impl<'de> Deserialize<'de> for PeerKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(PeerKeyVisitor)
    }
}

struct PeerKeyVisitor;

impl serde::de::Visitor<'_> for PeerKeyVisitor {
    type Value = PeerKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a peer key: 43 characters of unpadded base64url")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PeerKey, E> {
        v.parse().map_err(E::custom)
    }
}

/// A node's long-term X25519 key pair. `Debug` shows only the public key.
pub struct Identity {
    secret: StaticSecret,
    public: PeerKey,
}

impl Identity {
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Identity {
        Identity::from_secret(StaticSecret::random_from_rng(rng))
    }

    fn from_secret(secret: StaticSecret) -> Identity {
        let public = PeerKey(PublicKey::from(&secret).to_bytes());
        Identity { secret, public }
    }

    pub fn public(&self) -> PeerKey {
        self.public
    }

    /// The raw secret scalar, for handing to the Noise implementation. The
    /// copy is wiped when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.secret.as_bytes())
    }

    /// Write the secret as base64url and a newline to a new file created with
    /// mode 0600. Refuses to overwrite an existing file; on a failed write
    /// the partial file is removed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    IdentityError::AlreadyExists {
                        path: path.to_path_buf(),
                    }
                } else {
                    IdentityError::Unwritable {
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })?;
        let mut text = Zeroizing::new(URL_SAFE_NO_PAD.encode(self.secret.as_bytes()));
        text.push('\n');
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            // Best effort: a half-written key file is worse than none.
            let _ = fs::remove_file(path);
            return Err(IdentityError::Unwritable {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(())
    }

    /// Read an identity written by [`Identity::save`]. The file must hold
    /// exactly 43 characters of unpadded base64url, optionally followed by
    /// one newline. A file readable by group or others is still loaded, with
    /// a warning.
    pub fn load(path: impl AsRef<Path>) -> Result<Identity, IdentityError> {
        let path = path.as_ref();
        let unreadable = |source: io::Error| IdentityError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                IdentityError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                unreadable(source)
            }
        })?;
        if let Ok(meta) = file.metadata() {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "identity file is readable by group or others; it should be mode 0600"
                );
            }
        }
        let mut raw = Zeroizing::new(Vec::with_capacity(64));
        file.take(MAX_KEY_FILE_LEN)
            .read_to_end(&mut raw)
            .map_err(unreadable)?;
        let malformed = || IdentityError::Malformed {
            path: path.to_path_buf(),
        };
        let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let text = std::str::from_utf8(body).map_err(|_| malformed())?;
        let bytes = Zeroizing::new(decode_key_text(text).map_err(|_| malformed())?);
        Ok(Identity::from_secret(StaticSecret::from(*bytes)))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A node's location on the key circle, fixed by its public key:
/// the first 8 bytes of `SHA-256("veil/location/v1" || key)`, big-endian.
pub fn location_from_key(key: &PeerKey) -> Location {
    let mut hasher = Sha256::new();
    hasher.update(LOCATION_DOMAIN);
    hasher.update(key.0);
    let digest = hasher.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    Location(u64::from_be_bytes(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use rand::SeedableRng;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = Identity::generate(&mut OsRng);
        id.save(&path).unwrap();
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(*back.secret_bytes(), *id.secret_bytes());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), KEY_TEXT_LEN + 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn saved_file_is_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        Identity::generate(&mut OsRng).save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, b"precious").unwrap();
        let err = Identity::generate(&mut OsRng).save(&path).unwrap_err();
        assert!(matches!(err, IdentityError::AlreadyExists { path: ref p } if p == &path));
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn load_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let err = Identity::load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Missing { path: ref p } if p == &path));
        assert!(err.to_string().contains("absent.key"));
    }

    #[test]
    fn load_garbage_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"hello\n".to_vec(),
            vec![b'A'; 44], // 44 characters, no newline
            vec![0xff; 43], // not UTF-8
            b"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n".to_vec(),
            vec![b'A'; 10_000], // long: not read in full
            [vec![b'A'; 43], b"\n\n".to_vec()].concat(),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let path = dir.path().join(format!("bad{i}.key"));
            fs::write(&path, bytes).unwrap();
            let err = Identity::load(&path).unwrap_err();
            assert!(
                matches!(err, IdentityError::Malformed { path: ref p } if p == &path),
                "case {i}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("bad{i}.key")));
        }
    }

    #[test]
    fn load_directory_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let err = Identity::load(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Unreadable { .. }), "{err:?}");
    }

    #[test]
    fn peer_key_text_round_trip() {
        let key = Identity::generate(&mut OsRng).public();
        let text = key.to_string();
        assert_eq!(text.len(), 43);
        assert_eq!(text.parse::<PeerKey>().unwrap(), key);
        assert_eq!(format!("{key:?}"), format!("PeerKey({text})"));
    }

    #[test]
    fn peer_key_parse_errors() {
        assert_eq!("".parse::<PeerKey>(), Err(PeerKeyError::BadLength(0)));
        let padded = format!("{}=", "A".repeat(43));
        assert_eq!(padded.parse::<PeerKey>(), Err(PeerKeyError::BadLength(44)));
        let with_space = format!(" {}", "A".repeat(42));
        assert_eq!(
            with_space.parse::<PeerKey>(),
            Err(PeerKeyError::BadEncoding)
        );
        // Standard-alphabet characters are not base64url.
        let std_alpha = format!("+/{}", "A".repeat(41));
        assert_eq!(std_alpha.parse::<PeerKey>(), Err(PeerKeyError::BadEncoding));
        // Non-zero trailing bits: not the canonical encoding of any 32 bytes.
        let trailing = format!("{}B", "A".repeat(42));
        assert_eq!(trailing.parse::<PeerKey>(), Err(PeerKeyError::BadEncoding));
        // A multi-byte character makes the byte length wrong, not a panic.
        let unicode = format!("é{}", "A".repeat(41));
        assert_eq!(unicode.parse::<PeerKey>(), Err(PeerKeyError::BadEncoding));
    }

    #[test]
    fn peer_key_serde_is_the_string() {
        let key = PeerKey([7u8; 32]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{key}\""));
        assert_eq!(serde_json::from_str::<PeerKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PeerKey>("\"short\"").is_err());
        assert!(serde_json::from_str::<PeerKey>("[1,2,3]").is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let id = Identity::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let secret_text = URL_SAFE_NO_PAD.encode(*id.secret_bytes());
        let shown = format!("{id:?}");
        assert!(!shown.contains(&secret_text));
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains(&id.public().to_string()));
    }

    #[test]
    fn location_is_the_domain_separated_hash() {
        let key = PeerKey([0u8; 32]);
        let digest = Sha256::digest([b"veil/location/v1".as_slice(), &[0u8; 32]].concat());
        let want = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(location_from_key(&key), Location(want));
        assert_ne!(
            location_from_key(&PeerKey([1u8; 32])),
            location_from_key(&key)
        );
    }
}
