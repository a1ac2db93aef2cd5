//! Directories (freesites): a document that maps paths to files.
//!
//! # Format
//!
//! A directory is an ordinary file (a single CHK block or a splitfile) whose
//! bytes are the 8-byte magic [`DIR_MAGIC`] followed by one CBOR map:
//!
//! | key     | value                                                         |
//! |---------|---------------------------------------------------------------|
//! | `v`     | unsigned integer: [`DIR_VERSION`] (1)                         |
//! | `files` | array of `[path (text), MIME type (text), routing key (32-byte string), decryption key (32-byte string), length (unsigned)]`, sorted by path, paths unique |
//!
//! Each file keeps its own CHK (a single block or a splitfile root), so a
//! file shared by two sites is stored once. The directory document is
//! encrypted like any file: only a holder of the directory's URI can read
//! the paths and the files' keys.
//!
//! # Checks
//!
//! [`Directory::decode`] refuses input longer than [`MAX_DIR_DOC_LEN`]
//! before parsing, and then every path that could escape a target folder
//! or be read two ways: components are non-empty, not `.` or `..`, hold no
//! `\`, NUL or control character; a path is at most [`MAX_PATH_LEN`] bytes
//! and [`MAX_PATH_DEPTH`] components; no path is both a file and a folder
//! of another file. MIME types are at most [`MAX_MIME_LEN`] printable ASCII
//! characters (never a line break, so they are safe as a header value).
//! A file whose bytes happen to start with the magic is read as a
//! directory only when all of this holds.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::keys::{Chk, DecryptionKey, RoutingKey};

/// The first bytes of every directory document.
pub const DIR_MAGIC: &[u8; 8] = b"veil-dir";
/// The directory format this code writes and reads.
pub const DIR_VERSION: u64 = 1;
/// The most files one directory lists.
pub const MAX_DIR_ENTRIES: usize = 10_000;
/// The longest path, in bytes.
pub const MAX_PATH_LEN: usize = 240;
/// The most components in a path.
pub const MAX_PATH_DEPTH: usize = 32;
/// The longest MIME type, in bytes.
pub const MAX_MIME_LEN: usize = 64;
/// The largest directory document: [`MAX_DIR_ENTRIES`] entries at their
/// widest fit (each under 400 bytes of CBOR).
pub const MAX_DIR_DOC_LEN: u64 = 4 << 20;

/// What is wrong with a directory or a path in it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirError {
    #[error("not a directory document")]
    NotADirectory,
    #[error("directory document of {0} bytes; the limit is {MAX_DIR_DOC_LEN}")]
    TooLong(u64),
    #[error("directory document is not valid CBOR: {0}")]
    Cbor(String),
    #[error("directory format version {0}; this reads version {DIR_VERSION}")]
    Version(u64),
    #[error("{0} files; a directory lists at most {MAX_DIR_ENTRIES}")]
    TooManyFiles(usize),
    #[error("a directory lists at least one file")]
    Empty,
    #[error("bad path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("bad MIME type {0:?}")]
    BadMime(String),
    #[error("paths out of order or repeated at {0:?}")]
    Order(String),
    #[error("{0:?} is both a file and a folder")]
    FileAndFolder(String),
}

/// One file of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// `/`-separated, relative, checked by [`check_path`].
    pub path: String,
    pub mime: String,
    pub uri: Chk,
    pub length: u64,
}

/// A decoded directory: its files, sorted by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    entries: Vec<DirEntry>,
}

/// What a folder of a directory holds, for an index page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing<'a> {
    /// Sub-folder names, sorted.
    pub folders: Vec<String>,
    /// Files directly in the folder.
    pub files: Vec<&'a DirEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDir {
    v: u64,
    files: Vec<WireFile>,
}

#[derive(Serialize, Deserialize)]
struct WireFile(
    String,
    String,
    #[serde(with = "serde_bytes32")] [u8; 32],
    #[serde(with = "serde_bytes32")] [u8; 32],
    u64,
);

mod serde_bytes32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a 32-byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<[u8; 32], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Check one path of a directory (see the module docs).
pub fn check_path(path: &str) -> Result<(), DirError> {
    let bad = |why| {
        Err(DirError::BadPath {
            path: path.chars().take(MAX_PATH_LEN).collect(),
            why,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("too long");
    }
    if path.split('/').count() > MAX_PATH_DEPTH {
        return bad("too deep");
    }
    for part in path.split('/') {
        if part.is_empty() {
            return bad("empty component (leading, trailing or double '/')");
        }
        if part == "." || part == ".." {
            return bad("'.' or '..' component");
        }
        if part.chars().any(|c| c == '\\' || c.is_control()) {
            return bad("backslash or control character");
        }
    }
    Ok(())
}

fn check_mime(mime: &str) -> Result<(), DirError> {
    let ok = !mime.is_empty()
        && mime.len() <= MAX_MIME_LEN
        && mime.contains('/')
        && mime.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DirError::BadMime(mime.chars().take(MAX_MIME_LEN).collect()))
    }
}

/// The MIME type a file's name suggests (`application/octet-stream` when
/// nothing does).
pub fn mime_for(path: &str) -> String {
    let mime = mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_string();
    match check_mime(&mime) {
        Ok(()) => mime,
        Err(_) => "application/octet-stream".into(),
    }
}

impl Directory {
    /// A directory of these files, checked as [`Directory::decode`] checks.
    pub fn new(mut entries: Vec<DirEntry>) -> Result<Directory, DirError> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let dir = Directory { entries };
        dir.check()?;
        Ok(dir)
    }

    fn check(&self) -> Result<(), DirError> {
        if self.entries.is_empty() {
            return Err(DirError::Empty);
        }
        if self.entries.len() > MAX_DIR_ENTRIES {
            return Err(DirError::TooManyFiles(self.entries.len()));
        }
        let mut folders = HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            check_path(&e.path)?;
            check_mime(&e.mime)?;
            if i > 0 && self.entries[i - 1].path >= e.path {
                return Err(DirError::Order(e.path.clone()));
            }
            let mut at = 0;
            while let Some(slash) = e.path[at..].find('/') {
                folders.insert(&e.path[..at + slash]);
                at += slash + 1;
            }
        }
        match self
            .entries
            .iter()
            .find(|e| folders.contains(e.path.as_str()))
        {
            Some(e) => Err(DirError::FileAndFolder(e.path.clone())),
            None => Ok(()),
        }
    }

    /// Every file, sorted by path.
    pub fn entries(&self) -> &[DirEntry] {
        &self.entries
    }

    /// The file at `path`, if the directory has one.
    pub fn get(&self, path: &str) -> Option<&DirEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Whether `folder` (`""` for the top, no trailing `/`) holds any file.
    pub fn is_folder(&self, folder: &str) -> bool {
        folder.is_empty()
            || self
                .entries
                .iter()
                .any(|e| under(&e.path, folder).is_some())
    }

    /// What `folder` (`""` for the top) directly holds.
    pub fn list(&self, folder: &str) -> Listing<'_> {
        let mut folders = BTreeSet::new();
        let mut files = Vec::new();
        for e in &self.entries {
            let Some(rest) = under(&e.path, folder) else {
                continue;
            };
            match rest.split_once('/') {
                Some((sub, _)) => {
                    folders.insert(sub.to_string());
                }
                None => files.push(e),
            }
        }
        Listing {
            folders: folders.into_iter().collect(),
            files,
        }
    }

    /// The bytes of the directory document.
    pub fn encode(&self) -> Vec<u8> {
        let wire = WireDir {
            v: DIR_VERSION,
            files: self
                .entries
                .iter()
                .map(|e| {
                    WireFile(
                        e.path.clone(),
                        e.mime.clone(),
                        e.uri.routing.0,
                        *e.uri.decryption.as_bytes(),
                        e.length,
                    )
                })
                .collect(),
        };
        let mut out = DIR_MAGIC.to_vec();
        if let Err(e) = ciborium::ser::into_writer(&wire, &mut out) {
            unreachable!("encoding a directory into memory failed: {e}");
        }
        out
    }

    /// Whether `bytes` start like a directory document.
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.starts_with(DIR_MAGIC)
    }

    /// Decode and check a directory document. Bounded and never panics.
    pub fn decode(bytes: &[u8]) -> Result<Directory, DirError> {
        if bytes.len() as u64 > MAX_DIR_DOC_LEN {
            return Err(DirError::TooLong(bytes.len() as u64));
        }
        let Some(mut body) = bytes.strip_prefix(DIR_MAGIC.as_slice()) else {
            return Err(DirError::NotADirectory);
        };
        let wire: WireDir = ciborium::de::from_reader_with_recursion_limit(&mut body, 8)
            .map_err(|e| DirError::Cbor(e.to_string()))?;
        if !body.is_empty() {
            return Err(DirError::Cbor(format!("{} trailing bytes", body.len())));
        }
        if wire.v != DIR_VERSION {
            return Err(DirError::Version(wire.v));
        }
        if wire.files.len() > MAX_DIR_ENTRIES {
            return Err(DirError::TooManyFiles(wire.files.len()));
        }
        let entries = wire
            .files
            .into_iter()
            .map(
                |WireFile(path, mime, routing, decryption, length)| DirEntry {
                    path,
                    mime,
                    uri: Chk {
                        routing: RoutingKey(routing),
                        decryption: DecryptionKey::from_bytes(decryption),
                    },
                    length,
                },
            )
            .collect();
        let dir = Directory { entries };
        dir.check()?;
        Ok(dir)
    }
}

/// `path` below `folder` (`""` = the top), if it is below it.
fn under<'a>(path: &'a str, folder: &str) -> Option<&'a str> {
    if folder.is_empty() {
        return Some(path);
    }
    path.strip_prefix(folder)?.strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> DirEntry {
        let (uri, _) = Chk::encode(path.as_bytes()).unwrap();
        DirEntry {
            path: path.into(),
            mime: mime_for(path),
            uri,
            length: path.len() as u64,
        }
    }

    #[test]
    fn a_directory_round_trips_and_lists_its_folders() {
        let dir = Directory::new(vec![
            entry("index.html"),
            entry("img/cat.png"),
            entry("img/big/dog.jpg"),
            entry("about.html"),
        ])
        .unwrap();
        let bytes = dir.encode();
        assert!(Directory::looks_like(&bytes));
        let back = Directory::decode(&bytes).unwrap();
        assert_eq!(back, dir);
        assert_eq!(back.get("img/cat.png").unwrap().mime, "image/png");
        assert_eq!(back.get("index.html").unwrap().mime, "text/html");
        assert!(back.get("img").is_none());
        let top = back.list("");
        assert_eq!(top.folders, vec!["img".to_string()]);
        let names: Vec<&str> = top.files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["about.html", "index.html"]);
        assert_eq!(back.list("img").folders, vec!["big".to_string()]);
        assert!(back.is_folder("img/big") && !back.is_folder("im"));
    }

    #[test]
    fn paths_that_could_escape_or_clash_are_refused() {
        for bad in [
            "", "/abs", "a//b", "a/", "..", "a/../b", "./a", "a\\b", "a\nb",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_path(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
        assert!(check_path(&["a"; MAX_PATH_DEPTH + 1].join("/")).is_err());
        let clash = Directory::new(vec![entry("a"), entry("a/b")]);
        assert_eq!(clash, Err(DirError::FileAndFolder("a".into())));
        let twice = Directory::new(vec![entry("a"), entry("a")]);
        assert!(matches!(twice, Err(DirError::Order(_))));
        assert_eq!(Directory::new(vec![]), Err(DirError::Empty));
        let mut bad_mime = entry("x");
        bad_mime.mime = "text/html\r\nSet-Cookie: a".into();
        assert!(matches!(
            Directory::new(vec![bad_mime]),
            Err(DirError::BadMime(_))
        ));
    }

    #[test]
    fn malformed_documents_are_refused_without_panicking() {
        let good = Directory::new(vec![entry("a.txt")]).unwrap().encode();
        assert_eq!(Directory::decode(b"hello"), Err(DirError::NotADirectory));
        for cut in 0..good.len() {
            assert!(Directory::decode(&good[..cut]).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Directory::decode(&trailing).is_err());
        let huge = vec![0u8; MAX_DIR_DOC_LEN as usize + 1];
        assert!(matches!(
            Directory::decode(&huge),
            Err(DirError::TooLong(_))
        ));
        // Out of order on the wire: refused even though each entry is fine.
        let wire = WireDir {
            v: 1,
            files: ["b", "a"]
                .iter()
                .map(|p| WireFile(p.to_string(), "text/plain".into(), [1; 32], [2; 32], 1))
                .collect(),
        };
        let mut bytes = DIR_MAGIC.to_vec();
        ciborium::ser::into_writer(&wire, &mut bytes).unwrap();
        assert!(matches!(Directory::decode(&bytes), Err(DirError::Order(_))));
    }
}
