//! SSK and USK URIs.
//!
//! ```text
//! SSK@<private seed>,<crypto key>/<name>     insert URI (keep it secret)
//! SSK@<public key>,<crypto key>/<name>       request URI
//! USK@<public key>,<crypto key>/<site>/<N>   edition N of a site (-1: the latest)
//! KSK@<name>                                 a keyword-signed key (both, in one)
//! ```
//!
//! Each key is 32 bytes of base64url without padding. Insert and request
//! URIs look alike: which one a string is depends on where it is used (the
//! insert side reads the first part as a private seed). Edition `N` of a
//! site is the SSK document `<site>-<N>`.

use std::fmt;
use std::str::FromStr;

use super::ssk::{CryptoKey, SskPrivate, SskPublic, MAX_DOCNAME_LEN};
use super::{decode32, KeyError, RoutingKey};

/// Longest site name: room for `-<edition>` within a document name.
pub const MAX_SITE_LEN: usize = MAX_DOCNAME_LEN - 21;

/// `SSK@a,b/rest` or `USK@a,b/rest` → (a, b, rest). The `/` is required.
/// The third comma-separated part that marks an insert URI, so that an
/// insert URI and a request URI (which has two parts) never pass for each
/// other: `SSK@<private key>,<crypto key>,insert/<name>`.
pub const INSERT_MARK: &str = "insert";

/// `scheme<first>,<crypto>[,<extra>]/<path>`.
struct Parts<'a> {
    first: &'a str,
    crypto: &'a str,
    /// `Some(INSERT_MARK)` for an insert URI; anything else is refused.
    insert: bool,
    path: &'a str,
}

fn split<'a>(s: &'a str, scheme: &str) -> Result<Parts<'a>, KeyError> {
    let rest = s
        .trim()
        .strip_prefix(scheme)
        .ok_or(KeyError::SskUriSyntax)?;
    let (keys, path) = rest.split_once('/').ok_or(KeyError::SskUriSyntax)?;
    let (first, crypto) = keys.split_once(',').ok_or(KeyError::SskUriSyntax)?;
    let (crypto, insert) = match crypto.split_once(',') {
        None => (crypto, false),
        Some((crypto, INSERT_MARK)) => (crypto, true),
        Some(_) => return Err(KeyError::SskUriSyntax),
    };
    Ok(Parts {
        first,
        crypto,
        insert,
        path,
    })
}

fn check_name(name: &str, max: usize) -> Result<(), KeyError> {
    if name.len() > max || name.contains('/') || name.chars().any(char::is_control) {
        return Err(KeyError::BadDocName);
    }
    Ok(())
}

fn check_site(site: &str) -> Result<(), KeyError> {
    if site.is_empty() {
        return Err(KeyError::BadDocName);
    }
    check_name(site, MAX_SITE_LEN)
}

/// The SSK document name of a site's edition.
pub fn edition_docname(site: &str, edition: u64) -> String {
    format!("{site}-{edition}")
}

/// The private insert URI: `SSK@<private seed>,<crypto key>/<name>`.
#[derive(Clone, Debug)]
pub struct SskInsertUri {
    pub key: SskPrivate,
    pub docname: String,
}

impl SskInsertUri {
    /// The matching request URI.
    pub fn public(&self) -> SskUri {
        SskUri {
            key: self.key.public(),
            docname: self.docname.clone(),
        }
    }
}

impl fmt::Display for SskInsertUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SSK@{},{},{INSERT_MARK}/{}",
            self.key.seed_base64(),
            self.key.crypto.to_base64(),
            self.docname
        )
    }
}

/// The insert URI the parts of an insert URI name.
fn insert_of(parts: &Parts<'_>) -> Result<SskInsertUri, KeyError> {
    check_name(parts.path, MAX_DOCNAME_LEN)?;
    let seed = decode32(parts.first, "private key")?;
    let crypto = decode32(parts.crypto, "crypto key")?;
    Ok(SskInsertUri {
        key: SskPrivate::from_seed(seed, crypto),
        docname: parts.path.to_string(),
    })
}

impl FromStr for SskInsertUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<SskInsertUri, KeyError> {
        let parts = split(s, "SSK@")?;
        if !parts.insert {
            return Err(KeyError::RequestNotInsert);
        }
        insert_of(&parts)
    }
}

/// The public request URI: `SSK@<public key>,<crypto key>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SskUri {
    pub key: SskPublic,
    pub docname: String,
}

impl SskUri {
    pub fn routing_key(&self) -> RoutingKey {
        self.key.routing_key(&self.docname)
    }
}

impl fmt::Display for SskUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SSK@{},{}/{}",
            self.key.public_base64(),
            self.key.crypto.to_base64(),
            self.docname
        )
    }
}

fn public_key(first: &str, crypto: &str) -> Result<SskPublic, KeyError> {
    let public = decode32(first, "public key")?;
    SskPublic::from_parts(public, CryptoKey::from_base64(crypto)?)
}

impl FromStr for SskUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<SskUri, KeyError> {
        let parts = split(s, "SSK@")?;
        if parts.insert {
            let public = insert_of(&parts)?.public();
            return Err(KeyError::InsertNotRequest(public.to_string()));
        }
        check_name(parts.path, MAX_DOCNAME_LEN)?;
        Ok(SskUri {
            key: public_key(parts.first, parts.crypto)?,
            docname: parts.path.to_string(),
        })
    }
}

/// Which edition of a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edition {
    /// `-1`: the latest that can be found.
    Latest,
    Number(u64),
}

impl fmt::Display for Edition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edition::Latest => f.write_str("-1"),
            Edition::Number(n) => write!(f, "{n}"),
        }
    }
}

/// An updatable key: `USK@<public key>,<crypto key>/<site>/<edition>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UskUri {
    pub key: SskPublic,
    pub site: String,
    pub edition: Edition,
}

impl UskUri {
    /// The SSK document of edition `n` of this site.
    pub fn edition_uri(&self, n: u64) -> SskUri {
        SskUri {
            key: self.key.clone(),
            docname: edition_docname(&self.site, n),
        }
    }

    /// The same site at another edition.
    pub fn at(&self, edition: Edition) -> UskUri {
        UskUri {
            edition,
            ..self.clone()
        }
    }

    /// A site named by an insert URI `SSK@<private>,<crypto>,insert/<site>`: its
    /// public USK at `edition`.
    pub fn of_insert(insert: &SskInsertUri, edition: Edition) -> Result<UskUri, KeyError> {
        check_site(&insert.docname)?;
        Ok(UskUri {
            key: insert.key.public(),
            site: insert.docname.clone(),
            edition,
        })
    }
}

impl fmt::Display for UskUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "USK@{},{}/{}/{}",
            self.key.public_base64(),
            self.key.crypto.to_base64(),
            self.site,
            self.edition
        )
    }
}

impl FromStr for UskUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<UskUri, KeyError> {
        let parts = split(s, "USK@")?;
        let path = parts.path.strip_suffix('/').unwrap_or(parts.path);
        let (site, edition) = path.rsplit_once('/').ok_or(KeyError::SskUriSyntax)?;
        check_site(site)?;
        let edition = match edition {
            "-1" => Edition::Latest,
            n if !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()) => {
                Edition::Number(n.parse().map_err(|_| KeyError::SskUriSyntax)?)
            }
            _ => return Err(KeyError::SskUriSyntax),
        };
        if parts.insert {
            let seed = decode32(parts.first, "private key")?;
            let crypto = decode32(parts.crypto, "crypto key")?;
            let key = SskPrivate::from_seed(seed, crypto).public();
            let public = UskUri {
                key,
                site: site.to_string(),
                edition,
            };
            return Err(KeyError::InsertNotRequest(public.to_string()));
        }
        Ok(UskUri {
            key: public_key(parts.first, parts.crypto)?,
            site: site.to_string(),
            edition,
        })
    }
}

/// A keyword-signed key, `KSK@<name>` (Hyphanet's): the signing key and
/// the crypto key are derived from the name alone,
///
/// ```text
/// seed   = SHA-256("veil/ksk/seed/v1"   || name)
/// crypto = SHA-256("veil/ksk/crypto/v1" || name)
/// ```
///
/// and the document is the SSK `<name>` under them. So the one URI both
/// inserts and requests. Its weakness is that: anyone who guesses the
/// name can read the content, and whoever inserts under a name first owns
/// it (a later insert with other content collides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KskUri {
    pub name: String,
}

impl KskUri {
    /// The SSK insert URI the name derives.
    pub fn insert(&self) -> SskInsertUri {
        use sha2::{Digest, Sha256};
        let derive = |label: &[u8]| -> [u8; 32] {
            Sha256::new()
                .chain_update(label)
                .chain_update(self.name.as_bytes())
                .finalize()
                .into()
        };
        SskInsertUri {
            key: SskPrivate::from_seed(derive(b"veil/ksk/seed/v1"), derive(b"veil/ksk/crypto/v1")),
            docname: self.name.clone(),
        }
    }

    /// The SSK request URI the name derives.
    pub fn request(&self) -> SskUri {
        self.insert().public()
    }
}

impl fmt::Display for KskUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KSK@{}", self.name)
    }
}

impl FromStr for KskUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<KskUri, KeyError> {
        let name = s
            .trim()
            .strip_prefix("KSK@")
            .ok_or(KeyError::SskUriSyntax)?;
        if name.is_empty() {
            return Err(KeyError::BadDocName);
        }
        check_name(name, MAX_DOCNAME_LEN)?;
        Ok(KskUri {
            name: name.to_string(),
        })
    }
}
