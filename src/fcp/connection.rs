//! One FCP client: the bytes it sends become messages (the payload of a
//! `Data` message goes to memory or, when large, to an unlinked spool
//! file), each message is dispatched to its command, and everything sent
//! back goes through one bounded queue to a writer task that owns the
//! socket's write half.
//!
//! A malformed message gets a `ProtocolError` (naming its `Identifier`
//! when it had got that far) and the connection is closed: the stream
//! cannot be trusted to be in step any more. Requests the client started
//! end with its connection.

use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use super::cmd::{self, Conn, Flow};
use super::frame::{self, BadFrame, Message};
use super::{Server, IDLE_TIMEOUT, MAX_DATA, OUTBOX, READ_TIMEOUT, WRITE_TIMEOUT};

/// Payloads up to this size stay in memory; larger ones are spooled.
const MEMORY_PAYLOAD: u64 = 1 << 20;
/// Bytes read from the socket at a time.
const CHUNK: usize = 64 * 1024;

/// A message's payload as received.
#[derive(Debug)]
pub enum Payload {
    Memory(Vec<u8>),
    /// An unlinked file, rewound, holding `len` bytes.
    File {
        file: std::fs::File,
        len: u64,
    },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Memory(v) => v.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the bytes, and their length.
    pub fn into_reader(self) -> (Box<dyn Read + Send>, u64) {
        match self {
            Payload::Memory(v) => {
                let len = v.len() as u64;
                (Box::new(std::io::Cursor::new(v)), len)
            }
            Payload::File { file, len } => (
                Box::new(std::io::BufReader::with_capacity(CHUNK, file)),
                len,
            ),
        }
    }

    /// A second, independent reader of a spooled payload (for a check
    /// before the real read); `None` for one in memory.
    pub fn try_clone(&self) -> std::io::Result<Payload> {
        match self {
            Payload::Memory(v) => Ok(Payload::Memory(v.clone())),
            Payload::File { file, len } => {
                let mut file = file.try_clone()?;
                file.rewind()?;
                Ok(Payload::File { file, len: *len })
            }
        }
    }
}

/// What a message sent to the client carries after its header.
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes from the start of a file.
    File {
        file: std::fs::File,
        len: u64,
    },
}

/// One message for the client.
pub struct Out {
    pub msg: Message,
    pub body: Option<Body>,
}

/// The queue of messages for one client.
#[derive(Clone)]
pub struct Outbox(mpsc::Sender<Out>);

impl Outbox {
    /// Queue `msg`; false if the client is gone.
    pub async fn send(&self, msg: Message) -> bool {
        self.0.send(Out { msg, body: None }).await.is_ok()
    }

    /// Queue `msg` followed by `body` (its `DataLength` is set from it).
    pub async fn send_data(&self, mut msg: Message, body: Body) -> bool {
        msg.data_len = Some(match &body {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        });
        self.0
            .send(Out {
                msg,
                body: Some(body),
            })
            .await
            .is_ok()
    }

    /// Whether the client is gone.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Queue `msg` unless the queue is full (progress reports).
    pub fn offer(&self, msg: Message) {
        let _ = self.0.try_send(Out { msg, body: None });
    }
}

/// Serve one client until it leaves, sends something malformed, or the
/// node shuts down.
pub async fn run(stream: TcpStream, server: Arc<Server>, mut shutdown: watch::Receiver<bool>) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUTBOX);
    let mut writer = tokio::spawn(write_loop(wr, rx));
    let conn = Arc::new(Conn::new(server, Outbox(tx)));
    let mut jobs = JoinSet::new();
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        while jobs.try_join_next().is_some() {}
        let spool = conn.server.config.spool.clone();
        let next = tokio::select! {
            _ = shutdown.changed() => break,
            n = read_message(&mut rd, &mut buf, &spool) => n,
        };
        match next {
            Ok(Some((msg, payload))) => {
                if let Flow::Close = cmd::dispatch(&conn, msg, payload, &mut jobs).await {
                    break;
                }
            }
            Ok(None) => break,
            Err(ReadError::Idle) if !jobs.is_empty() => continue,
            Err(ReadError::Bad(bad)) => {
                debug!(error = %bad, "FCP client sent a malformed message");
                conn.out
                    .send(cmd::protocol_error(
                        super::cmd::codes::MESSAGE_PARSE_ERROR,
                        &bad.error.to_string(),
                        bad.identifier.as_deref(),
                        true,
                    ))
                    .await;
                break;
            }
            Err(e) => {
                debug!(error = %e, "FCP connection closed");
                break;
            }
        }
    }
    // Requests live as long as the connection that made them; queued ones
    // go on without it.
    jobs.shutdown().await;
    conn.server.queue.forget(conn.num);
    drop(conn);
    if tokio::time::timeout(WRITE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Bad(BadFrame),
    /// Nothing arrived between messages for [`IDLE_TIMEOUT`].
    #[error("idle")]
    Idle,
    /// A message stopped arriving half way for [`READ_TIMEOUT`].
    #[error("a message stopped arriving")]
    Stalled,
    #[error(transparent)]
    Io(std::io::Error),
}

/// The next message and its payload; `None` at a clean end of stream.
async fn read_message<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    spool: &Path,
) -> Result<Option<(Message, Option<Payload>)>, ReadError> {
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match frame::decode(buf, MAX_DATA) {
            Ok(Some((msg, used))) => {
                buf.drain(..used);
                let payload = match msg.data_len {
                    Some(n) => Some(read_payload(rd, buf, n, spool).await?),
                    None => None,
                };
                return Ok(Some((msg, payload)));
            }
            Ok(None) => {}
            Err(bad) => return Err(ReadError::Bad(bad)),
        }
        let between = buf.iter().all(|b| b.is_ascii_whitespace());
        // Between messages a client may wait long for its requests (the
        // caller keeps waiting after an idle spell while any run).
        let wait = if between { IDLE_TIMEOUT } else { READ_TIMEOUT };
        let n = match tokio::time::timeout(wait, rd.read(&mut chunk)).await {
            Err(_) if between => return Err(ReadError::Idle),
            Err(_) => return Err(ReadError::Stalled),
            Ok(r) => r.map_err(ReadError::Io)?,
        };
        if n == 0 {
            return match between {
                true => Ok(None),
                false => Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read `len` payload bytes: what `buf` already holds first, then the
/// socket. Small payloads stay in memory, large ones go to an unlinked
/// file in `spool`.
async fn read_payload<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    len: u64,
    spool: &Path,
) -> Result<Payload, ReadError> {
    let have = (buf.len() as u64).min(len) as usize;
    let first: Vec<u8> = buf.drain(..have).collect();
    let mut left = len - have as u64;
    if len <= MEMORY_PAYLOAD {
        let mut data = first;
        data.resize(len as usize, 0);
        let mut at = have;
        while at < data.len() {
            let n = timed_read(rd, &mut data[at..]).await?;
            at += n;
        }
        return Ok(Payload::Memory(data));
    }
    let std_file = spool_file(spool).map_err(ReadError::Io)?;
    let mut file = tokio::fs::File::from_std(std_file);
    file.write_all(&first).await.map_err(ReadError::Io)?;
    let mut chunk = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        let n = timed_read(rd, &mut chunk[..want]).await?;
        file.write_all(&chunk[..n]).await.map_err(ReadError::Io)?;
        left -= n as u64;
    }
    file.flush().await.map_err(ReadError::Io)?;
    let mut file = file.into_std().await;
    file.rewind().map_err(ReadError::Io)?;
    Ok(Payload::File { file, len })
}

async fn timed_read<R: AsyncRead + Unpin>(rd: &mut R, into: &mut [u8]) -> Result<usize, ReadError> {
    match tokio::time::timeout(READ_TIMEOUT, rd.read(into)).await {
        Err(_) => Err(ReadError::Stalled),
        Ok(Ok(0)) => Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(ReadError::Io(e)),
    }
}

/// A new file in `dir`, already unlinked: it lives while it is open.
pub fn spool_file(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "fcp-{}-{:016x}.spool",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Write each queued message, its header then its body, until the queue
/// closes or the client stops reading.
async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Out>) {
    while let Some(out) = rx.recv().await {
        if write_one(&mut wr, out).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.shutdown()).await;
}

async fn write_one<W: AsyncWrite + Unpin>(wr: &mut W, out: Out) -> std::io::Result<()> {
    let timed = |r: Result<std::io::Result<()>, tokio::time::error::Elapsed>| {
        r.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    };
    timed(tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out.msg.encode())).await)?;
    match out.body {
        None => {}
        Some(Body::Bytes(b)) => {
            timed(tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&b)).await)?;
        }
        Some(Body::File { mut file, len }) => {
            file.rewind()?;
            let mut file = tokio::fs::File::from_std(file);
            let mut left = len;
            let mut chunk = vec![0u8; CHUNK];
            while left > 0 {
                let want = (left as usize).min(CHUNK);
                let n = file.read(&mut chunk[..want]).await?;
                if n == 0 {
                    // The file shrank: the client counts on DataLength
                    // bytes, so the connection cannot go on.
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                timed(tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&chunk[..n])).await)?;
                left -= n as u64;
            }
        }
    }
    timed(tokio::time::timeout(WRITE_TIMEOUT, wr.flush()).await)
}
