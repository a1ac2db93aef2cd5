//! Freesites over a node: `KEY/path` addresses, inserting a directory as a
//! [`Directory`] of files, resolving a path, fetching a tree.
//!
//! An [`Address`] is a key and a path below it. The key is a content hash
//! key, a signed key (`SSK@…/name`, whose payload is the URI of a CHK) or
//! an edition of an updatable key (`USK@…/site/N`, `-1`: the newest found).
//! [`target`] is the one place that turns a key into the CHK it names;
//! everything above it (`veil get`, the gateway) works on that CHK:
//! [`open_chk`], [`resolve_chk`].

use std::path::{Path, PathBuf};

pub use super::address::{Address, AddressError, Key};
use crate::client::transfer::{
    get_to_writer, put_file_with, put_stream, TransferError, BLOCK_TIMEOUT,
};
use crate::client::{Client, ClientError, Endpoint};
use crate::content::dir::{
    check_path, mime_for, DirEntry, DirError, Directory, DIR_MAGIC, MAX_DIR_DOC_LEN,
};
use crate::content::usk::{find_latest, open_edition, UskError, MAX_PROBES};
use crate::content::{ContentError, FetchOptions, SplitOptions};
use crate::error::{ErrorKind, HasKind};
use crate::keys::{Block, Chk, Edition, KeyError, RoutingKey, SskUri};
use crate::routing::Failure;

/// Why a freesite operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Signed(#[from] UskError),
    #[error("nothing found under {0}")]
    NoSigned(String),
    #[error("{0}'s payload is not a CHK URI")]
    NotARedirect(String),
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
    #[error("invalid insert URI (SSK@<private>,<crypto key>/<site>): {0}")]
    InsertUri(KeyError),
    #[error("the insert URI must end in a site name: SSK@<private>,<crypto key>/<site>")]
    NoSiteName,
    #[error("edition number overflow")]
    EditionOverflow,
    #[error(
        "edition {0} of this site already exists with other content (collision); \
         the original is kept: insert another edition"
    )]
    Collision(u64),
    #[error("{0} already exists with other content (collision); the original is kept")]
    SignedCollision(String),
}

impl HasKind for SiteError {
    fn kind(&self) -> ErrorKind {
        match self {
            SiteError::Transfer(e) => e.kind(),
            SiteError::Client(e) => e.kind(),
            SiteError::Signed(UskError::NoEdition { .. }) | SiteError::NoSigned(_) => {
                ErrorKind::NotFound
            }
            SiteError::Signed(UskError::Network(e)) => e
                .downcast_ref::<ClientError>()
                .map_or(ErrorKind::Local, HasKind::kind),
            SiteError::Signed(UskError::Cache { .. }) => ErrorKind::Local,
            SiteError::Signed(_) | SiteError::NotARedirect(_) => ErrorKind::BadData,
            SiteError::Dir(_) => ErrorKind::BadData,
            SiteError::NoSuchPath(_) | SiteError::NotADirectory(..) => ErrorKind::NotFound,
            SiteError::Address(_)
            | SiteError::Io { .. }
            | SiteError::NotUtf8(_)
            | SiteError::InsertUri(_)
            | SiteError::NoSiteName
            | SiteError::EditionOverflow => ErrorKind::Local,
            SiteError::Collision(_) | SiteError::SignedCollision(_) => ErrorKind::Refused,
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
    node: &Endpoint,
    key: &Key,
    opts: &FetchOptions,
) -> Result<Opened, SiteError> {
    let (chk, _) = target(node, key, None).await?;
    open_chk(node, &chk, opts).await
}

/// Fetch one signed block through the node at `node`; not found is `None`.
pub async fn get_signed(node: &Endpoint, key: RoutingKey) -> Result<Option<Block>, ClientError> {
    let mut client = Client::connect(node, BLOCK_TIMEOUT).await?;
    match client.get(key).await {
        Ok(block) => Ok(Some(block)),
        Err(ClientError::Network(Failure::DataNotFound | Failure::RouteNotFound)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The CHK a key names, and for a USK the edition it came from. `USK@…/-1`
/// probes forward from `known` (the newest edition the caller has seen;
/// none: 0) for at most [`MAX_PROBES`] editions.
pub async fn target(
    node: &Endpoint,
    key: &Key,
    known: Option<u64>,
) -> Result<(Chk, Option<u64>), SiteError> {
    match key {
        Key::Chk(chk) => Ok((chk.clone(), None)),
        Key::Ksk(ksk) => Ok((
            redirect_of(node, &ksk.request(), &ksk.to_string()).await?,
            None,
        )),
        Key::Ssk(ssk) => Ok((redirect_of(node, ssk, &ssk.to_string()).await?, None)),
        Key::Usk(usk) => match usk.edition {
            Edition::Number(n) => {
                let block = get_signed(node, usk.edition_uri(n).routing_key())
                    .await?
                    .ok_or_else(|| SiteError::NoSigned(usk.to_string()))?;
                Ok((open_edition(usk, n, &block)?, Some(n)))
            }
            Edition::Latest => {
                let from = known.unwrap_or(0);
                match find_latest(usk, from, |k| get_signed(node, k)).await? {
                    Some((n, chk)) => Ok((chk, Some(n))),
                    None => Err(UskError::NoEdition {
                        from,
                        to: from.saturating_add(MAX_PROBES - 1),
                    }
                    .into()),
                }
            }
        },
    }
}

/// The CHK a signed document points at (`shown` names it in errors).
async fn redirect_of(node: &Endpoint, ssk: &SskUri, shown: &str) -> Result<Chk, SiteError> {
    let block = get_signed(node, ssk.routing_key())
        .await?
        .ok_or_else(|| SiteError::NoSigned(shown.to_string()))?;
    let payload = ssk
        .key
        .decode(&ssk.docname, &block)
        .map_err(UskError::from)?;
    std::str::from_utf8(&payload)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| SiteError::NotARedirect(shown.to_string()))
}

/// Open the content `chk` names: only a directory document (at most
/// [`MAX_DIR_DOC_LEN`] bytes, starting with [`DIR_MAGIC`]) is read into
/// memory; any other file stops the probe after its first segment and
/// comes back as its URI, to be streamed by the caller.
pub async fn open_chk(
    node: &Endpoint,
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
    node: &Endpoint,
    addr: &Address,
    opts: &FetchOptions,
) -> Result<Resolved, SiteError> {
    let (chk, _) = target(node, &addr.key, None).await?;
    resolve_chk(node, &chk, &addr.path, opts).await
}

/// Resolve `path` (`""`: the content itself) below the content `chk` names.
pub async fn resolve_chk(
    node: &Endpoint,
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
    node: &Endpoint,
    files: Vec<(String, Source)>,
    concurrency: usize,
    split: &SplitOptions,
    on_file: impl Fn(usize, usize, &str),
) -> Result<(Chk, Directory), SiteError> {
    let total = files.len();
    let mut entries = Vec::with_capacity(total);
    for (done, (path, source)) in files.into_iter().enumerate() {
        check_path(&path)?;
        // A file on disk is streamed a segment at a time, as `veil put`.
        let (uri, length) = match source {
            Source::Memory(data) => {
                let uri = put_file_with(node, &data, concurrency, split, |_, _| {}).await?;
                (uri, data.len() as u64)
            }
            Source::Disk(file) => {
                let io = |source| SiteError::Io {
                    path: file.clone(),
                    source,
                };
                let f = std::fs::File::open(&file).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                let input = std::io::BufReader::with_capacity(1 << 16, f);
                let uri = put_stream(node, input, len, concurrency, split, |_| {}).await?;
                (uri, len)
            }
        };
        entries.push(DirEntry {
            mime: mime_for(&path),
            path,
            uri,
            length,
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
    node: &Endpoint,
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
    node: &Endpoint,
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
            "SVK@abc/site".parse::<Address>(),
            Err(AddressError::Unsupported("SVK".into()))
        );
        let ksk: Address = "KSK@hello/a.html".parse().unwrap();
        assert_eq!(ksk.key, Key::Ksk("KSK@hello".parse().unwrap()));
        assert_eq!(
            (ksk.path.as_str(), ksk.to_uri().as_str()),
            ("a.html", "KSK@hello/a.html")
        );
        assert!(matches!(
            "SSK@abc,def/site".parse::<Address>(),
            Err(AddressError::Key(_))
        ));
        assert_eq!("hello".parse::<Address>(), Err(AddressError::Syntax));
        assert!(matches!(
            "CHK@short,x".parse::<Address>(),
            Err(AddressError::Key(_))
        ));
    }

    #[test]
    fn signed_addresses_span_their_name_or_their_site_and_edition() {
        use crate::keys::{SskInsertUri, SskPrivate, UskUri};
        let insert = SskInsertUri {
            key: SskPrivate::from_seed([1; 32], [2; 32]),
            docname: "site".into(),
        };
        let usk = UskUri::of_insert(&insert, Edition::Latest).unwrap();
        let a: Address = format!("/{usk}/img/cat.png").parse().unwrap();
        assert_eq!(a.key, Key::Usk(usk.clone()));
        assert_eq!((a.path.as_str(), a.trailing_slash), ("img/cat.png", false));
        assert_eq!(a.to_uri(), format!("{usk}/img/cat.png"));
        let third = usk.at(Edition::Number(3));
        let top: Address = format!("{third}/").parse().unwrap();
        assert_eq!(top.key, Key::Usk(third.clone()));
        assert_eq!((top.path.as_str(), top.trailing_slash), ("", true));
        let bare: Address = third.to_string().parse().unwrap();
        assert_eq!((bare.path.as_str(), bare.trailing_slash), ("", false));
        let ssk = insert.public();
        let s: Address = format!("{ssk}/a/b.html").parse().unwrap();
        assert_eq!(s.key, Key::Ssk(ssk));
        assert_eq!(s.path, "a/b.html");
        // A USK needs its edition.
        let no_edition = format!("{usk}").replace("/-1", "");
        assert!(no_edition.parse::<Address>().is_err());
    }
}
