//! Where a node's client API is, and how a client proves it may use it.
//!
//! By default a node serves its client API on a Unix socket,
//! `NODE_DIR/client.sock`, created mode 0600: only the node's own user can
//! open it, and the node also checks the connecting process's user id. A
//! node whose `node.toml` names a TCP `client` address instead writes a
//! fresh 32-byte cookie to `NODE_DIR/client.cookie` (mode 0600) at every
//! start; a TCP client's first 32 bytes must be that cookie, or the node
//! logs the refusal and closes the connection without answering.
//!
//! The CLI finds the endpoint from `--node NODE` ([`Endpoint::parse`]): a
//! node directory (its `node.toml` says socket or TCP; the socket or the
//! cookie file is in the directory), a socket path, or `HOST:PORT` together
//! with `--cookie FILE`.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;

/// The client socket in a node directory.
pub const CLIENT_SOCKET: &str = "client.sock";
/// The TCP client API's cookie file in a node directory.
pub const COOKIE_FILE: &str = "client.cookie";
/// Length of the cookie, in bytes (the file holds exactly these bytes).
pub const COOKIE_LEN: usize = 32;

/// A client API cookie.
pub type Cookie = [u8; COOKIE_LEN];

/// How to reach a node's client API. In JSON (`testnet.json`):
/// `{"kind": "unix", "path": …}` or `{"kind": "tcp", "addr": …, "cookie": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoint {
    /// A Unix socket: its file mode (0600) and the node's user-id check
    /// authenticate the client.
    Unix { path: PathBuf },
    /// A TCP address; the client sends the cookie read from `cookie` first.
    Tcp { addr: SocketAddr, cookie: PathBuf },
}

impl fmt::Display for Endpoint {
    /// The socket path, or the TCP address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "{addr}"),
        }
    }
}

/// Why `--node` names no usable endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{0} is a TCP address: give the node's cookie file with --cookie FILE \
         (NODE_DIR/{COOKIE_FILE}), or pass the node directory instead"
    )]
    NeedCookie(SocketAddr),
    #[error("cannot read the node's configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

impl Endpoint {
    /// The client endpoint of the node in `dir`, from its `node.toml`.
    pub fn for_node_dir(dir: &Path) -> Result<Endpoint, EndpointError> {
        let config = NodeConfig::load(dir)?;
        Ok(Endpoint::of_config(dir, config.client))
    }

    /// The endpoint a node in `dir` with `client` set to this serves.
    pub fn of_config(dir: &Path, client: Option<SocketAddr>) -> Endpoint {
        match client {
            None => Endpoint::Unix {
                path: dir.join(CLIENT_SOCKET),
            },
            Some(addr) => Endpoint::Tcp {
                addr,
                cookie: dir.join(COOKIE_FILE),
            },
        }
    }

    /// What `--node NODE [--cookie FILE]` names: `HOST:PORT` (needs the
    /// cookie file), a node directory, or else the path of a client socket
    /// (which need not exist yet: connecting then says the node is down).
    pub fn parse(node: &str, cookie: Option<&Path>) -> Result<Endpoint, EndpointError> {
        if let Ok(addr) = node.parse::<SocketAddr>() {
            return match cookie {
                Some(c) => Ok(Endpoint::Tcp {
                    addr,
                    cookie: c.to_path_buf(),
                }),
                None => Err(EndpointError::NeedCookie(addr)),
            };
        }
        let path = Path::new(node);
        if path.is_dir() {
            return Endpoint::for_node_dir(path);
        }
        Ok(Endpoint::Unix {
            path: path.to_path_buf(),
        })
    }
}

/// Read a cookie file: exactly [`COOKIE_LEN`] bytes.
pub fn read_cookie(path: &Path) -> std::io::Result<Cookie> {
    let bytes = std::fs::read(path)?;
    bytes.as_slice().try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} holds {} bytes, not a {COOKIE_LEN}-byte cookie",
                path.display(),
                bytes.len()
            ),
        )
    })
}

/// Write a fresh random cookie to `path`, mode 0600 (replacing any old
/// one: the file is written beside it and renamed over it).
pub fn write_fresh_cookie(path: &Path) -> std::io::Result<Cookie> {
    let mut cookie = [0u8; COOKIE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut cookie);
    let tmp = path.with_extension("cookie.new");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&cookie)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_fresh_cookie_is_0600_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(COOKIE_FILE);
        let first = write_fresh_cookie(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_cookie(&path).unwrap(), first);
        let second = write_fresh_cookie(&path).unwrap();
        assert_ne!(first, second);
        assert_eq!(read_cookie(&path).unwrap(), second);
        std::fs::write(&path, b"short").unwrap();
        assert!(read_cookie(&path).is_err());
    }

    #[test]
    fn node_argument_forms() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(matches!(
            Endpoint::parse("127.0.0.1:9", None),
            Err(EndpointError::NeedCookie(a)) if a == addr
        ));
        let cookie = Path::new("/x/client.cookie");
        assert_eq!(
            Endpoint::parse("127.0.0.1:9", Some(cookie)).unwrap(),
            Endpoint::Tcp {
                addr,
                cookie: cookie.to_path_buf()
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join(CLIENT_SOCKET);
        std::fs::write(&sock, b"").unwrap();
        let s = sock.to_str().unwrap();
        assert_eq!(
            Endpoint::parse(s, None).unwrap(),
            Endpoint::Unix { path: sock.clone() }
        );
        assert_eq!(
            Endpoint::parse("/no/such/node.sock", None).unwrap(),
            Endpoint::Unix {
                path: "/no/such/node.sock".into()
            }
        );
        assert!(matches!(
            Endpoint::parse(dir.path().to_str().unwrap(), None),
            Err(EndpointError::Config(_))
        ));
        assert_eq!(Endpoint::of_config(dir.path(), None).to_string(), s);
    }
}
