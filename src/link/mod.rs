//! Encrypted, mutually authenticated links between neighbours.
//!
//! A link is a Noise `IK` session (`Noise_IK_25519_ChaChaPoly_SHA256`,
//! prologue `veil/link/v2`) over any byte stream: the initiator already
//! knows the responder's static X25519 key ([`PeerKey`]) and seals its
//! first message to it, each side proves its static key, and the session
//! keys come from fresh ephemerals, so recorded traffic stays sealed even
//! if a static key leaks later. The responder ([`accept`]) stays silent
//! and closes on a first message it cannot open (sealed to another key,
//! or noise), from an initiator its `allowed` predicate rejects, or whose
//! timestamp it has seen ([`handshake::ReplayGuard`]): a prober learns
//! nothing, and a refused initiator sees the connection close inside
//! [`connect`].
//!
//! After the handshake every frame on the wire is `u16 BE length ||
//! ciphertext` and the ciphertext is one of [`FRAME_SIZES`] bytes long:
//! inside the AEAD a frame holds `u32 BE payload length || payload || zero
//! padding` up to the smallest class that fits. A watcher learns only
//! "small" or "large", never which routing message was sent. See
//! `docs/links.md`.
//!
//! # Layers
//!
//! - [`frame`]: seal and open fixed-size frames over byte buffers, in
//!   place, with the keys of the handshake's `Split()` (sans-IO).
//! - [`handshake`]: the Noise `IK` steps over byte buffers (sans-IO).
//! - this module: the thin tokio wrapper that moves those bytes over a
//!   stream, with the handshake timeout ([`connect`], [`accept`], [`Link`],
//!   [`LinkReader`], [`LinkWriter`]).
//!
//! # Splitting
//!
//! [`Link::into_split`] gives a [`LinkReader`] and a [`LinkWriter`] that
//! can live in different tasks. They share one immutable
//! [`frame::Transport`] behind an `Arc` (no lock) and each half keeps its
//! own nonce counter: the reader counts frames received, the writer frames
//! sent. Noise nonces are per direction, so the two counters never interact.
//!
//! # Cancellation
//!
//! [`LinkReader::recv`] is cancel-safe: a partly read frame is kept in the
//! reader and finished by the next call, so `recv` may sit in a
//! `tokio::select!` or under a `timeout`. [`LinkWriter::send`] is not: a
//! send that is cancelled or fails part-way leaves a partial frame on the
//! wire, and the writer then refuses further sends with
//! [`LinkError::Closed`]. Any error on either half is final for that half.

pub mod frame;
pub mod handshake;
mod state;

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{ErrorKind, HasKind};
use crate::identity::{Identity, PeerKey};

pub use frame::{FRAME_SIZES, LARGE_FRAME, MAX_PAYLOAD, SMALL_FRAME, SMALL_PAYLOAD};
pub use handshake::{ReplayGuard, NOISE_PARAMS, PROLOGUE};

use frame::PREFIX_LEN;
use handshake::{Established, HsBuf, Initiator, Responder, HS_BUF_LEN};
use state::{RecvState, SendState};
pub use state::{BATCH_FRAMES, MAX_WRITE};

/// The initiator's handshake timestamp: nanoseconds since the Unix epoch
/// (0 if the clock is before it).
fn now_ts() -> handshake::Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Link tunables: the `[link]` table of `node.toml`. Every field has a
/// default; see `docs/operations.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// The whole handshake, confirmation included, must finish in this time.
    pub handshake_timeout_ms: u64,
    /// After the handshake, the peer's Hello must arrive within this time.
    pub hello_timeout_ms: u64,
    /// Opening the TCP connection to a peer may take this long.
    pub connect_timeout_ms: u64,
    /// A keepalive goes out after about this much write silence: each wait
    /// is drawn uniformly between half and one and a half times it, so
    /// keepalives do not tick like a clock.
    pub keepalive_secs: u64,
    /// A link with no frame at all for this long is dead.
    pub idle_timeout_secs: u64,
    /// First wait before redialling a peer; doubles after each failure.
    pub redial_min_ms: u64,
    /// Longest wait between redials.
    pub redial_max_ms: u64,
    /// Frames one link may have queued for writing before it counts as
    /// stuck and is closed.
    pub write_queue: usize,
    /// Inbound handshakes in progress at once; more connections are dropped.
    pub max_handshakes: usize,
    /// Of those, how many only connections from a configured friend's IP
    /// address may use (less than `max_handshakes`).
    pub reserved_handshakes: usize,
    /// Inbound handshakes in progress from one IP address (per friend
    /// configured there, for a friend's address).
    pub max_handshakes_per_source: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            handshake_timeout_ms: 10_000,
            hello_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            keepalive_secs: 10,
            idle_timeout_secs: 35,
            redial_min_ms: 250,
            redial_max_ms: 30_000,
            write_queue: 256,
            max_handshakes: 64,
            reserved_handshakes: 16,
            max_handshakes_per_source: 4,
        }
    }
}

impl LinkConfig {
    /// The wait before the next keepalive: uniform in [1/2, 3/2] of
    /// `keepalive_secs`.
    pub fn keepalive_wait(&self, rng: &mut impl rand::Rng) -> Duration {
        let base = Duration::from_secs(self.keepalive_secs);
        base.mul_f64(rng.gen_range(0.5..=1.5))
    }

    /// The handshake timeout as a `Duration`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// Every timeout and bound by its `node.toml` name: none may be zero.
    pub fn positive_settings(&self) -> [(&'static str, u64); 9] {
        [
            ("link.handshake_timeout_ms", self.handshake_timeout_ms),
            ("link.hello_timeout_ms", self.hello_timeout_ms),
            ("link.connect_timeout_ms", self.connect_timeout_ms),
            ("link.keepalive_secs", self.keepalive_secs),
            ("link.idle_timeout_secs", self.idle_timeout_secs),
            ("link.redial_min_ms", self.redial_min_ms),
            ("link.write_queue", self.write_queue as u64),
            ("link.max_handshakes", self.max_handshakes as u64),
            (
                "link.max_handshakes_per_source",
                self.max_handshakes_per_source as u64,
            ),
        ]
    }
}

/// Why a link could not be set up or used. Every error is final for the
/// link (or the half) that returned it, except [`LinkError::PayloadTooLarge`].
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("peer closed the connection during the handshake (it may not accept our key)")]
    HandshakeClosed,
    #[error("handshake message is {got} bytes; expected {expected}")]
    HandshakeLength { expected: usize, got: usize },
    #[error("handshake payload is {0} bytes, not the expected size")]
    HandshakePayload(usize),
    #[error("handshake failed: {0}")]
    Handshake(snow::Error),
    #[error("peer key {0} is not allowed")]
    UnknownPeer(PeerKey),
    #[error("peer {0} sent a first handshake message with an old timestamp (a replay)")]
    Replayed(PeerKey),
    #[error("frame length {0} is not one of {FRAME_SIZES:?}")]
    BadFrameLength(usize),
    #[error("frame failed authentication")]
    Decrypt,
    #[error("frame has a malformed payload length or non-zero padding")]
    BadPadding,
    #[error("peer closed the connection in the middle of a frame")]
    Truncated,
    #[error("payload is {0} bytes; a link carries at most {MAX_PAYLOAD}")]
    PayloadTooLarge(usize),
    #[error("transport error: {0}")]
    Transport(snow::Error),
    #[error("this link already failed; drop it")]
    Closed,
    #[error("{BATCH_FRAMES} frames are already queued; flush them first")]
    BatchFull,
}

impl HasKind for LinkError {
    /// The peer is at fault for a protocol violation or a bad key; a timeout
    /// is [`ErrorKind::Timeout`]; a closed or broken connection is
    /// [`ErrorKind::NodeDown`]; misuse of this end is [`ErrorKind::Local`].
    fn kind(&self) -> ErrorKind {
        match self {
            LinkError::HandshakeLength { .. }
            | LinkError::HandshakePayload(_)
            | LinkError::Handshake(_)
            | LinkError::UnknownPeer(_)
            | LinkError::Replayed(_)
            | LinkError::BadFrameLength(_)
            | LinkError::Decrypt
            | LinkError::BadPadding => ErrorKind::Protocol,
            LinkError::HandshakeTimeout(_) => ErrorKind::Timeout,
            LinkError::Io(_)
            | LinkError::HandshakeClosed
            | LinkError::Truncated
            | LinkError::Transport(_) => ErrorKind::NodeDown,
            LinkError::PayloadTooLarge(_) | LinkError::Closed | LinkError::BatchFull => {
                ErrorKind::Local
            }
        }
    }
}

/// One authenticated link, not yet split.
pub struct Link<S> {
    stream: S,
    peer: PeerKey,
    rx: RecvState,
    tx: SendState,
}

impl<S> fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_peer(f, "Link", &self.peer)
    }
}

fn debug_peer(f: &mut fmt::Formatter<'_>, name: &str, peer: &PeerKey) -> fmt::Result {
    f.debug_struct(name).field("peer", peer).finish()
}

impl<S> Link<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The authenticated static key of the other end.
    pub fn peer(&self) -> PeerKey {
        self.peer
    }

    /// Send one payload of at most [`MAX_PAYLOAD`] bytes.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        self.tx.send(&mut self.stream, payload).await
    }

    /// Send an empty payload in a small frame.
    pub async fn send_keepalive(&mut self) -> Result<(), LinkError> {
        self.tx.send(&mut self.stream, &[]).await
    }

    /// The next payload; `Ok(None)` when the peer closed between frames.
    /// Cancel-safe, like [`LinkReader::recv`].
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        self.rx.recv(&mut self.stream, <[u8]>::to_vec).await
    }

    /// Shut down the sending direction (see [`LinkWriter::close`]).
    pub async fn close(&mut self) -> Result<(), LinkError> {
        self.tx.close(&mut self.stream).await
    }

    /// Split into halves for a reading task and a writing task.
    pub fn into_split(self) -> (LinkReader, LinkWriter) {
        let (r, w) = tokio::io::split(self.stream);
        (
            LinkReader {
                io: Box::new(r),
                peer: self.peer,
                state: self.rx,
            },
            LinkWriter {
                io: Box::new(w),
                peer: self.peer,
                state: self.tx,
            },
        )
    }
}

/// Declares one half of a split link: its stream half, the peer, its frame
/// state, a `Debug` that shows only the peer, and `peer()`.
macro_rules! link_half {
    ($(#[$doc:meta])* $name:ident, $io:path, $state:ty) => {
        $(#[$doc])*
        pub struct $name {
            io: Box<dyn $io + Send + Unpin>,
            peer: PeerKey,
            state: $state,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                debug_peer(f, stringify!($name), &self.peer)
            }
        }

        impl $name {
            /// The authenticated static key of the other end.
            pub fn peer(&self) -> PeerKey {
                self.peer
            }
        }
    };
}

link_half!(
    /// The receiving half of a link.
    LinkReader,
    AsyncRead,
    RecvState
);
link_half!(
    /// The sending half of a link.
    LinkWriter,
    AsyncWrite,
    SendState
);

impl LinkReader {
    /// The next payload (a keepalive is an empty `Vec`); `Ok(None)` when the
    /// peer closed the connection cleanly between frames. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        self.state.recv(&mut self.io, <[u8]>::to_vec).await
    }

    /// As [`LinkReader::recv`], but `take` reads the payload where it was
    /// decrypted (a decoder, say), so it is not copied out first.
    pub async fn recv_with<T>(
        &mut self,
        take: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, LinkError> {
        self.state.recv(&mut self.io, take).await
    }
}

impl LinkWriter {
    /// Send one payload of at most [`MAX_PAYLOAD`] bytes, padded to the
    /// smallest frame size that holds it. Not cancel-safe (see the module
    /// docs).
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        self.state.send(&mut self.io, payload).await
    }

    /// Send an empty payload in a small frame.
    pub async fn send_keepalive(&mut self) -> Result<(), LinkError> {
        self.state.send(&mut self.io, &[]).await
    }

    /// Whether [`LinkWriter::queue_with`] has room for one more frame.
    pub fn can_queue(&self) -> bool {
        self.state.can_queue()
    }

    /// Seal one frame now and write it with the next
    /// [`LinkWriter::flush`] (or send), together with the others queued:
    /// `write` appends the payload (at most [`MAX_PAYLOAD`] bytes) to the
    /// frame's plaintext, so an encoder writes it where it is sealed. At
    /// most [`BATCH_FRAMES`] frames wait at once
    /// ([`LinkError::BatchFull`]); a payload too large is refused
    /// ([`LinkError::PayloadTooLarge`]) and the writer stays usable.
    pub fn queue_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), LinkError> {
        self.state.queue_with(write)
    }

    /// Write every queued frame, in one write. Not cancel-safe, like
    /// [`LinkWriter::send`].
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        self.state.flush(&mut self.io).await
    }

    /// Shut down the sending direction; the peer's reader sees a clean end
    /// (`Ok(None)`) after the frames already sent.
    pub async fn close(&mut self) -> Result<(), LinkError> {
        self.state.close(&mut self.io).await
    }
}

/// Write one handshake message: `u16 BE length || bytes`.
async fn write_hs<S>(stream: &mut S, msg: &[u8]) -> Result<(), LinkError>
where
    S: AsyncWrite + Unpin,
{
    let len = u16::try_from(msg.len()).map_err(|_| LinkError::Handshake(snow::Error::Input))?;
    let mut out = [0u8; PREFIX_LEN + HS_BUF_LEN];
    let total = PREFIX_LEN + msg.len();
    let dst = out
        .get_mut(..total)
        .ok_or(LinkError::Handshake(snow::Error::Input))?;
    dst[..PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    dst[PREFIX_LEN..].copy_from_slice(msg);
    stream.write_all(dst).await?;
    stream.flush().await?;
    Ok(())
}

/// Read one handshake message of exactly `expected` bytes into `buf`. Any
/// other length is refused before its body is read.
async fn read_hs<'b, S>(
    stream: &mut S,
    expected: usize,
    buf: &'b mut HsBuf,
) -> Result<&'b [u8], LinkError>
where
    S: AsyncRead + Unpin,
{
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact_hs(stream, &mut prefix).await?;
    handshake::check_len(prefix, expected)?;
    let msg = &mut buf[..expected];
    read_exact_hs(stream, msg).await?;
    Ok(msg)
}

async fn read_exact_hs<S>(stream: &mut S, buf: &mut [u8]) -> Result<(), LinkError>
where
    S: AsyncRead + Unpin,
{
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(LinkError::HandshakeClosed),
        Err(e) => Err(LinkError::Io(e)),
    }
}

/// Which end of the handshake, for log lines.
#[derive(Clone, Copy)]
enum Side {
    Initiator,
    Responder,
}

type Handshaken = (Established, RecvState, SendState);

/// Run one side's handshake steps under the configured timeout.
async fn within(
    cfg: &LinkConfig,
    steps: impl Future<Output = Result<Handshaken, LinkError>>,
) -> Result<Handshaken, LinkError> {
    let limit = cfg.handshake_timeout();
    tokio::time::timeout(limit, steps)
        .await
        .unwrap_or(Err(LinkError::HandshakeTimeout(limit)))
}

/// Wrap the stream of a finished handshake in a [`Link`].
fn finish<S>(
    stream: S,
    result: Result<Handshaken, LinkError>,
    side: Side,
) -> Result<Link<S>, LinkError> {
    let (est, rx, tx) = result.inspect_err(|e| match side {
        Side::Initiator => tracing::debug!(error = %e, "outgoing link handshake failed"),
        Side::Responder => tracing::debug!(error = %e, "incoming link handshake failed"),
    })?;
    match side {
        Side::Initiator => tracing::debug!(peer = %est.peer, "link up (initiator)"),
        Side::Responder => tracing::debug!(peer = %est.peer, "link up (responder)"),
    }
    Ok(Link {
        stream,
        peer: est.peer,
        rx,
        tx,
    })
}

/// Open a link as the initiator, sealing the first message to
/// `expected`'s key. A responder that does not hold that key, or does not
/// accept us, closes without a word: [`LinkError::HandshakeClosed`].
pub async fn connect<S>(
    mut stream: S,
    identity: &Identity,
    expected: &PeerKey,
    cfg: &LinkConfig,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let steps = initiator_handshake(&mut stream, identity, *expected);
    let result = within(cfg, steps).await;
    finish(stream, result, Side::Initiator)
}

async fn initiator_handshake<S>(
    stream: &mut S,
    identity: &Identity,
    expected: PeerKey,
) -> Result<Handshaken, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut out, mut msg) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
    let (init, n) = Initiator::start(&identity.secret_bytes(), expected, now_ts(), &mut out)?;
    write_hs(stream, &out[..n]).await?;
    let msg2 = match read_hs(stream, handshake::HS_MSG2_LEN, &mut msg).await {
        Err(LinkError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(LinkError::HandshakeClosed)
        }
        other => other?,
    };
    let est = init.on_msg2(msg2)?;
    let (rx, tx) = (RecvState::new(&est), SendState::new(&est));
    Ok((est, rx, tx))
}

/// Accept a link as the responder, with no memory of earlier handshakes
/// (see [`accept_guarded`]). Fails with [`LinkError::UnknownPeer`] if
/// `allowed` rejects the initiator's static key; on any failure nothing
/// was written and the connection is dropped.
///
/// `allowed` must be `Sync` so that the returned future is `Send` and can
/// run in a spawned task.
pub async fn accept<S>(
    stream: S,
    identity: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    cfg: &LinkConfig,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_guarded(stream, identity, allowed, &ReplayGuard::default(), cfg).await
}

/// [`accept`], refusing ([`LinkError::Replayed`]) a first message whose
/// timestamp is not newer than the last one `replay` accepted from that
/// peer. A node keeps one guard for all its inbound handshakes.
pub async fn accept_guarded<S>(
    mut stream: S,
    identity: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    replay: &ReplayGuard,
    cfg: &LinkConfig,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let steps = responder_handshake(&mut stream, identity, allowed, replay);
    let result = within(cfg, steps).await;
    finish(stream, result, Side::Responder)
}

async fn responder_handshake<S>(
    stream: &mut S,
    identity: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    replay: &ReplayGuard,
) -> Result<Handshaken, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut out, mut msg) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
    let resp = Responder::new(&identity.secret_bytes())?;
    let msg1 = read_hs(stream, handshake::HS_MSG1_LEN, &mut msg).await?;
    let (est, n) = resp.on_msg1(msg1, allowed, replay, &mut out)?;
    write_hs(stream, &out[..n]).await?;
    let (rx, tx) = (RecvState::new(&est), SendState::new(&est));
    Ok((est, rx, tx))
}
