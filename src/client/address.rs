//! Addresses: a key and a path below it, as the CLI, the gateway and FCP
//! take them (`CHK@…,…/docs/index.html`, `SSK@…,…/name`,
//! `USK@…,…/site/3/docs/index.html`, `KSK@name/index.html`).

use std::str::FromStr;

use crate::content::dir::{check_path, DirError};
use crate::keys::{Chk, KeyError, KskUri, SskUri, UskUri};

/// What names content: the key part of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// `CHK@<routing key>,<decryption key>`: a file or a directory.
    Chk(Chk),
    /// `SSK@<public key>,<crypto key>/<name>`: a signed block whose payload
    /// is a CHK URI.
    Ssk(SskUri),
    /// `USK@<public key>,<crypto key>/<site>/<edition>`.
    Usk(UskUri),
    /// `KSK@<name>`: the signed document a name alone derives.
    Ksk(KskUri),
}

impl Key {
    pub fn to_uri(&self) -> String {
        match self {
            Key::Chk(c) => c.to_uri(),
            Key::Ssk(s) => s.to_string(),
            Key::Usk(u) => u.to_string(),
            Key::Ksk(k) => k.to_string(),
        }
    }
}

/// A key and a path below it: `CHK@…,…/docs/index.html`,
/// `USK@…,…/site/3/docs/index.html`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub key: Key,
    /// `/`-joined components, no leading or trailing `/`; `""` = the key itself.
    pub path: String,
    /// Whether the text ended in `/` (a folder asked for as a folder).
    pub trailing_slash: bool,
}

/// Why an address does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error(
        "not a veil URI: expected CHK@<routing key>,<decryption key>[/path], \
         SSK@<public key>,<crypto key>/<name>[/path] or \
         USK@<public key>,<crypto key>/<site>/<edition>[/path] or KSK@<name>[/path]"
    )]
    Syntax,
    #[error("{0} keys are not supported (CHK@, SSK@, USK@ and KSK@ are)")]
    Unsupported(String),
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    #[error("bad path: {0}")]
    Path(#[from] DirError),
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Address, AddressError> {
        let text = text.trim();
        let text = text.strip_prefix('/').unwrap_or(text);
        // The key spans one '/'-separated part (CHK), two (SSK: the name)
        // or three (USK: the site and the edition).
        let parts = match text.split_once('@') {
            Some(("CHK", _)) => 1,
            Some(("KSK", _)) => 0,
            Some(("SSK", _)) => 2,
            Some(("USK", _)) => 3,
            Some((kind, _)) if kind.len() == 3 && kind.bytes().all(|b| b.is_ascii_uppercase()) => {
                return Err(AddressError::Unsupported(kind.to_string()))
            }
            _ => return Err(AddressError::Syntax),
        };
        let (key, path) = match text.match_indices('/').nth(parts.max(1) - 1) {
            Some((i, _)) => (&text[..i], &text[i + 1..]),
            None => (text, ""),
        };
        let key = match parts {
            0 => Key::Ksk(key.parse()?),
            1 => Key::Chk(key.parse()?),
            2 => Key::Ssk(key.parse()?),
            _ => Key::Usk(key.parse()?),
        };
        // Keys hold no '/': a text ending in one asks for a folder.
        let trailing_slash = text.ends_with('/');
        let path = path.trim_end_matches('/').to_string();
        if !path.is_empty() {
            check_path(&path)?;
        }
        Ok(Address {
            key,
            path,
            trailing_slash,
        })
    }
}

impl Address {
    /// The address as text, `KEY/path` (no trailing `/`).
    pub fn to_uri(&self) -> String {
        match self.path.is_empty() {
            true => self.key.to_uri(),
            false => format!("{}/{}", self.key.to_uri(), self.path),
        }
    }
}
