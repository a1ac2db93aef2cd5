//! Freesites over a node: `KEY/path` addresses, inserting a directory as a
//! [`Directory`] of files, resolving a path, fetching a tree.
//!
//! An [`Address`] is a key and a path below it. Only content hash keys
//! ([`Key::Chk`]) exist today; signed keys (SSK, USK) plug in as further
//! [`Key`] variants: [`open_key`] is the one place that turns a key into
//! content, and everything above it (`veil get`, the gateway) works on the
//! [`Opened`] result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::content::dir::{
    check_path, mime_for, DirEntry, DirError, Directory, DIR_MAGIC, MAX_DIR_DOC_LEN,
};
use crate::content::{ContentError, FetchOptions, SplitOptions};
use crate::error::{ErrorKind, HasKind};
use crate::keys::{Chk, KeyError};
use crate::transfer::{get_to_writer, put_file_with, TransferError};

/// What names content: the key part of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// `CHK@<routing key>,<decryption key>`: a file or a directory.
    Chk(Chk),
}

impl Key {
    pub fn to_uri(&self) -> String {
        match self {
            Key::Chk(c) => c.to_uri(),
        }
    }
}

/// A key and a path below it: `CHK@…,…/docs/index.html`.
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
    #[error("not a veil URI: expected CHK@<routing key>,<decryption key>[/path]")]
    Syntax,
    #[error("{0} keys are not supported by this version (only CHK@ so far)")]
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
        let (key, path) = text.split_once('/').unwrap_or((text, ""));
        let key = match key.split_once('@') {
            Some(("CHK", _)) => Key::Chk(key.parse()?),
            Some((kind, _)) if kind.len() == 3 && kind.bytes().all(|b| b.is_ascii_uppercase()) => {
                return Err(AddressError::Unsupported(kind.to_string()))
            }
            _ => return Err(AddressError::Syntax),
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

/// Why a freesite operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("bad directory: {0}")]
    Dir(#[from] DirError),
    #[error("no file or folder {0:?} in this directory")]
    NoSuchPath(String),
    #[error("{0} is a file, not a directory: it has no path {1:?}")]
    NotADirectory(String, String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: file names must be UTF-8")]
    NotUtf8(PathBuf),
}

impl HasKind for SiteError {
    fn kind(&self) -> ErrorKind {
        match self {
            SiteError::Transfer(e) => e.kind(),
            SiteError::Dir(_) => ErrorKind::BadData,
            SiteError::NoSuchPath(_) | SiteError::NotADirectory(..) => ErrorKind::NotFound,
            SiteError::Address(_) | SiteError::Io { .. } | SiteError::NotUtf8(_) => {
                ErrorKind::Local
            }
        }
    }
}

/// What a key names.
#[derive(Debug)]
pub enum Opened {
    /// A file. `bytes` holds it when it was small enough to fetch while
    /// looking ([`MAX_DIR_DOC_LEN`]); otherwise fetch `uri` (`length` bytes).
    File {
        uri: Chk,
        length: Option<u64>,
        bytes: Option<Vec<u8>>,
    },
    /// A directory document.
    Directory(Directory),
}

/// Open what `key` names through the node at `node`: a directory decoded,
/// a file as its URI (and length), never read whole.
pub async fn open_key(
    node: SocketAddr,
    key: &Key,
    opts: &FetchOptions,
) -> Result<Opened, SiteError> {
    match key {
        Key::Chk(chk) => open_chk(node, chk, opts).await,
    }
}

/// Open the content `chk` names: only a directory document (at most
/// [`MAX_DIR_DOC_LEN`] bytes, starting with [`DIR_MAGIC`]) is read into
/// memory; any other file stops the probe after its first segment and
/// comes back as its URI, to be streamed by the caller.
pub async fn open_chk(
    node: SocketAddr,
    chk: &Chk,
    opts: &FetchOptions,
) -> Result<Opened, SiteError> {
    let probe = FetchOptions {
        max_len: MAX_DIR_DOC_LEN.min(opts.max_len),
        ..*opts
    };
    let mut sniff = Sniff::default();
    let mut total = 0;
    let got = get_to_writer(node, chk, &probe, &mut sniff, |p| total = p.bytes_total).await;
    let file = |length: Option<u64>| Opened::File {
        uri: chk.clone(),
        length,
        bytes: None,
    };
    if sniff.not_dir {
        return Ok(file((total > 0).then_some(total)));
    }
    match got {
        Ok(_) => {}
        Err(TransferError::Content(ContentError::TooLarge { len, .. })) => {
            if len > opts.max_len {
                let max = opts.max_len;
                return Err(TransferError::from(ContentError::TooLarge { len, max }).into());
            }
            return Ok(file(Some(len)));
        }
        Err(e) => return Err(e.into()),
    }
    let bytes = sniff.bytes;
    if Directory::looks_like(&bytes) {
        if let Ok(dir) = Directory::decode(&bytes) {
            return Ok(Opened::Directory(dir));
        }
    }
    // Shorter than the magic, or a directory's magic on something else.
    Ok(Opened::File {
        uri: chk.clone(),
        length: Some(bytes.len() as u64),
        bytes: Some(bytes),
    })
}

/// The writer of [`open_chk`]'s probe: keeps what starts like a directory
/// document (the fetch bounds its length), refuses anything else as soon
/// as its first bytes differ from [`DIR_MAGIC`], which ends the fetch.
#[derive(Default)]
struct Sniff {
    bytes: Vec<u8>,
    not_dir: bool,
}

impl tokio::io::AsyncWrite for Sniff {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let have = me.bytes.len().min(DIR_MAGIC.len());
        let take = (DIR_MAGIC.len() - have).min(buf.len());
        if buf[..take] != DIR_MAGIC[have..have + take] {
            me.not_dir = true;
            return std::task::Poll::Ready(Err(std::io::Error::other("not a directory")));
        }
        me.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// What an address resolves to.
#[derive(Debug)]
pub enum Resolved {
    /// A file: fetch `uri` unless `bytes` already holds it. `entry` is its
    /// line in the directory it came from, if any.
    File {
        uri: Chk,
        length: Option<u64>,
        mime: Option<String>,
        bytes: Option<Vec<u8>>,
    },
    /// A folder of a directory (`""` = its top).
    Folder { dir: Directory, folder: String },
}

/// Resolve `addr` through the node at `node`.
pub async fn resolve(
    node: SocketAddr,
    addr: &Address,
    opts: &FetchOptions,
) -> Result<Resolved, SiteError> {
    match &addr.key {
        Key::Chk(chk) => resolve_chk(node, chk, &addr.path, opts).await,
    }
}

/// Resolve `path` (`""`: the content itself) below the content `chk` names.
pub async fn resolve_chk(
    node: SocketAddr,
    chk: &Chk,
    path: &str,
    opts: &FetchOptions,
) -> Result<Resolved, SiteError> {
    match (open_chk(node, chk, opts).await?, path.is_empty()) {
        (Opened::File { uri, length, bytes }, true) => Ok(Resolved::File {
            uri,
            length,
            mime: None,
            bytes,
        }),
        (Opened::File { .. }, false) => {
            Err(SiteError::NotADirectory(chk.to_uri(), path.to_string()))
        }
        (Opened::Directory(dir), _) => {
            if let Some(e) = dir.get(path) {
                return Ok(Resolved::File {
                    uri: e.uri.clone(),
                    length: Some(e.length),
                    mime: Some(e.mime.clone()),
                    bytes: None,
                });
            }
            if !dir.is_folder(path) {
                return Err(SiteError::NoSuchPath(path.to_string()));
            }
            Ok(Resolved::Folder {
                dir,
                folder: path.to_string(),
            })
        }
    }
}

/// Every regular file under `root`, as (path in the site, file on disk),
/// sorted. Symbolic links are not followed (they are skipped).
pub fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>, SiteError> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = stack.pop() {
        let io = |source| SiteError::Io {
            path: dir.clone(),
            source,
        };
        for item in std::fs::read_dir(&dir).map_err(io)? {
            let item = item.map_err(io)?;
            let kind = item.file_type().map_err(io)?;
            let name = item.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| SiteError::NotUtf8(item.path()))?;
            let path = match prefix.is_empty() {
                true => name.to_string(),
                false => format!("{prefix}/{name}"),
            };
            if kind.is_dir() {
                stack.push((path, item.path()));
            } else if kind.is_file() {
                check_path(&path)?;
                out.push((path, item.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where a file to insert comes from.
pub enum Source {
    Disk(PathBuf),
    Memory(Vec<u8>),
}

/// Insert each file, then the directory listing them (last, so its URI
/// only resolves once every file is in). `on_file(done, total, path)` is
/// called after each file. Returns the directory's URI and the directory.
pub async fn put_files(
    node: SocketAddr,
    files: Vec<(String, Source)>,
    concurrency: usize,
    split: &SplitOptions,
    on_file: impl Fn(usize, usize, &str),
) -> Result<(Chk, Directory), SiteError> {
    let total = files.len();
    let mut entries = Vec::with_capacity(total);
    for (done, (path, source)) in files.into_iter().enumerate() {
        check_path(&path)?;
        let data = match source {
            Source::Memory(data) => data,
            Source::Disk(file) => std::fs::read(&file).map_err(|source| SiteError::Io {
                path: file.clone(),
                source,
            })?,
        };
        let uri = put_file_with(node, &data, concurrency, split, |_, _| {}).await?;
        entries.push(DirEntry {
            mime: mime_for(&path),
            path,
            uri,
            length: data.len() as u64,
        });
        on_file(done + 1, total, &entries[done].path);
    }
    let dir = Directory::new(entries)?;
    let doc = dir.encode();
    if doc.len() as u64 > MAX_DIR_DOC_LEN {
        return Err(DirError::TooLong(doc.len() as u64).into());
    }
    let uri = put_file_with(node, &doc, concurrency, split, |_, _| {}).await?;
    Ok((uri, dir))
}

/// `veil put --dir`: insert every file under `root` as one directory.
pub async fn put_dir(
    node: SocketAddr,
    root: &Path,
    concurrency: usize,
    split: &SplitOptions,
    on_file: impl Fn(usize, usize, &str),
) -> Result<(Chk, Directory), SiteError> {
    let files = walk(root)?
        .into_iter()
        .map(|(path, file)| (path, Source::Disk(file)))
        .collect();
    put_files(node, files, concurrency, split, on_file).await
}

/// Fetch every file of `folder` (`""` = all) into `out`, keeping the
/// paths below `folder`. Each file is written beside its target and
/// renamed into place once verified. Returns the bytes written.
pub async fn get_tree(
    node: SocketAddr,
    dir: &Directory,
    folder: &str,
    out: &Path,
    opts: &FetchOptions,
    on_file: impl Fn(usize, usize, &str),
) -> Result<u64, SiteError> {
    let wanted: Vec<&DirEntry> = dir
        .entries()
        .iter()
        .filter(|e| folder.is_empty() || e.path.starts_with(&format!("{folder}/")))
        .collect();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SiteError::Io { path, source }
    };
    let mut bytes = 0;
    for (i, e) in wanted.iter().enumerate() {
        let rel = match folder.is_empty() {
            true => e.path.as_str(),
            false => &e.path[folder.len() + 1..],
        };
        // Checked paths: relative, no '..', so this stays inside `out`.
        let target = rel.split('/').fold(out.to_path_buf(), |p, c| p.join(c));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = target.with_extension("veil-partial");
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let got = get_to_writer(node, &e.uri, opts, &mut f, |_| {}).await;
        drop(f);
        match got {
            Ok(n) => bytes += n,
            Err(err) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(err.into());
            }
        }
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        on_file(i + 1, wanted.len(), &e.path);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_key_and_checked_path() {
        let (chk, _) = Chk::encode(b"x").unwrap();
        let uri = chk.to_uri();
        let a: Address = format!("/{uri}/img/cat.png").parse().unwrap();
        assert_eq!(a.key, Key::Chk(chk.clone()));
        assert_eq!((a.path.as_str(), a.trailing_slash), ("img/cat.png", false));
        assert_eq!(a.to_uri(), format!("{uri}/img/cat.png"));
        let top: Address = format!("{uri}/").parse().unwrap();
        assert_eq!((top.path.as_str(), top.trailing_slash), ("", true));
        assert!(matches!(
            format!("{uri}/a/../b").parse::<Address>(),
            Err(AddressError::Path(_))
        ));
        assert_eq!(
            "SSK@abc,def/site".parse::<Address>(),
            Err(AddressError::Unsupported("SSK".into()))
        );
        assert_eq!("hello".parse::<Address>(), Err(AddressError::Syntax));
        assert!(matches!(
            "CHK@short,x".parse::<Address>(),
            Err(AddressError::Key(_))
        ));
    }
}
