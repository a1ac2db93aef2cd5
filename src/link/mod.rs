//! Encrypted, mutually authenticated links between neighbours.
//!
//! A link is a Noise `XX` session (`Noise_XX_25519_ChaChaPoly_SHA256`,
//! prologue `veil/link/v1`) over any byte stream: each side proves its
//! static X25519 key ([`PeerKey`]) and the session keys come from fresh
//! ephemerals, so recorded traffic stays sealed even if a static key leaks
//! later. The initiator refuses a responder whose key is not the one it
//! dialled ([`connect`]); the responder refuses an initiator its `allowed`
//! predicate rejects ([`accept`]), and otherwise confirms with one empty
//! transport frame, so a refused initiator learns of it inside [`connect`].
//!
//! After the handshake every frame on the wire is `u16 BE length ||
//! ciphertext` and the ciphertext is one of [`FRAME_SIZES`] bytes long:
//! inside the AEAD a frame holds `u32 BE payload length || payload || zero
//! padding` up to the smallest class that fits. A watcher learns only
//! "small" or "large", never which routing message was sent. See
//! `docs/links.md`.
//!
//! # Splitting
//!
//! [`Link::into_split`] gives a [`LinkReader`] and a [`LinkWriter`] that
//! can live in different tasks. They share one snow
//! `StatelessTransportState` behind an `Arc` (it is immutable after the
//! handshake; no lock) and each half keeps its own nonce counter: the
//! reader counts frames received, the writer frames sent. Noise nonces are
//! per direction, so the two counters never interact.
//!
//! # Cancellation
//!
//! [`LinkReader::recv`] is cancel-safe: a partly read frame is kept in the
//! reader and finished by the next call, so `recv` may sit in a
//! `tokio::select!` or under a `timeout`. [`LinkWriter::send`] is not: a
//! send that is cancelled or fails part-way leaves a partial frame on the
//! wire, and the writer then refuses further sends with
//! [`LinkError::Closed`]. Any error on either half is final for that half.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use snow::{Builder, HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::identity::{Identity, PeerKey};
use crate::message::MAX_MESSAGE_LEN;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Mixed into the handshake hash by both sides: a peer speaking another
/// protocol or version fails the handshake instead of misreading frames.
pub const PROLOGUE: &[u8] = b"veil/link/v1";

/// AEAD tag on every transport frame.
const TAG_LEN: usize = 16;
/// The payload-length header inside every frame.
const LEN_HEADER: usize = 4;
/// The `u16` length prefix in front of every message on the wire.
const PREFIX_LEN: usize = 2;

/// Ciphertext bytes of a small frame: requests, replies without a block,
/// keepalives.
pub const SMALL_FRAME: usize = 512;
/// Ciphertext bytes of a large frame: anything carrying a block.
pub const LARGE_FRAME: usize = 33 * 1024;
/// The only ciphertext lengths a link sends or accepts.
pub const FRAME_SIZES: [usize; 2] = [SMALL_FRAME, LARGE_FRAME];

/// The largest payload a small frame carries.
pub const SMALL_PAYLOAD: usize = SMALL_FRAME - TAG_LEN - LEN_HEADER;
/// The largest payload a link carries (a large frame's capacity).
pub const MAX_PAYLOAD: usize = LARGE_FRAME - TAG_LEN - LEN_HEADER;

// The size classes must hold what the brief (and the message codec) needs,
// and fit a Noise message and its u16 prefix.
const _: () = assert!(SMALL_PAYLOAD >= 256);
const _: () = assert!(MAX_PAYLOAD >= MAX_MESSAGE_LEN);
const _: () = assert!(LARGE_FRAME <= 65535);
const _: () = assert!(SMALL_FRAME < LARGE_FRAME);

/// Handshake message lengths with empty payloads, the only ones accepted:
/// `-> e` (32), `<- e, ee, s, es` (32 + 32 + 16 + 16),
/// `-> s, se` (32 + 16 + 16).
const HS_MSG1_LEN: usize = 32;
const HS_MSG2_LEN: usize = 96;
const HS_MSG3_LEN: usize = 64;
/// Buffer for one handshake message; no handshake length above this is
/// ever read.
const HS_BUF_LEN: usize = 128;
const _: () = assert!(HS_MSG1_LEN <= HS_BUF_LEN && HS_MSG2_LEN <= HS_BUF_LEN);
const _: () = assert!(HS_MSG3_LEN <= HS_BUF_LEN);

/// Link tunables.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The whole handshake, confirmation included, must finish in this time.
    pub handshake_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            handshake_timeout: Duration::from_secs(10),
        }
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
    #[error("handshake failed: {0}")]
    Handshake(snow::Error),
    #[error("peer's handshake confirmation was not an empty frame")]
    BadConfirmation,
    #[error("peer presented key {got}; expected {expected}")]
    WrongPeerKey { expected: PeerKey, got: PeerKey },
    #[error("peer key {0} is not allowed")]
    UnknownPeer(PeerKey),
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
        f.debug_struct("Link").field("peer", &self.peer).finish()
    }
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
        self.rx.recv(&mut self.stream).await
    }

    /// Shut down the sending direction (see [`LinkWriter::close`]).
    pub async fn close(&mut self) -> Result<(), LinkError> {
        self.tx.failed = true;
        self.stream.shutdown().await?;
        Ok(())
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

/// The receiving half of a link.
pub struct LinkReader {
    io: Box<dyn AsyncRead + Send + Unpin>,
    peer: PeerKey,
    state: RecvState,
}

impl fmt::Debug for LinkReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkReader")
            .field("peer", &self.peer)
            .finish()
    }
}

impl LinkReader {
    pub fn peer(&self) -> PeerKey {
        self.peer
    }

    /// The next payload (a keepalive is an empty `Vec`); `Ok(None)` when the
    /// peer closed the connection cleanly between frames. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        self.state.recv(&mut self.io).await
    }
}

/// The sending half of a link.
pub struct LinkWriter {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    peer: PeerKey,
    state: SendState,
}

impl fmt::Debug for LinkWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkWriter")
            .field("peer", &self.peer)
            .finish()
    }
}

impl LinkWriter {
    pub fn peer(&self) -> PeerKey {
        self.peer
    }

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

    /// Shut down the sending direction; the peer's reader sees a clean end
    /// (`Ok(None)`) after the frames already sent.
    pub async fn close(&mut self) -> Result<(), LinkError> {
        self.state.failed = true;
        self.io.shutdown().await?;
        Ok(())
    }
}

/// Receiving state: the shared session keys, the receive nonce, and the
/// frame being read (kept across calls, which makes `recv` cancel-safe).
struct RecvState {
    transport: Arc<StatelessTransportState>,
    /// For log lines only.
    peer: PeerKey,
    nonce: u64,
    prefix: [u8; PREFIX_LEN],
    prefix_filled: usize,
    body: Box<[u8]>,
    body_filled: usize,
    plain: Box<[u8]>,
    failed: bool,
}

impl RecvState {
    fn new(transport: Arc<StatelessTransportState>, peer: PeerKey) -> RecvState {
        RecvState {
            transport,
            peer,
            nonce: 0,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            body: vec![0u8; LARGE_FRAME].into_boxed_slice(),
            body_filled: 0,
            plain: vec![0u8; LARGE_FRAME - TAG_LEN].into_boxed_slice(),
            failed: false,
        }
    }

    async fn recv<R>(&mut self, io: &mut R) -> Result<Option<Vec<u8>>, LinkError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        if self.failed {
            return Err(LinkError::Closed);
        }
        // Only a returned error poisons the reader; a cancelled call leaves
        // the partial frame in place for the next one.
        let result = self.recv_frame(io).await;
        if let Err(e) = &result {
            self.failed = true;
            tracing::debug!(peer = %self.peer, error = %e, "link read failed");
        }
        result
    }

    async fn recv_frame<R>(&mut self, io: &mut R) -> Result<Option<Vec<u8>>, LinkError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        while self.prefix_filled < PREFIX_LEN {
            let n = io.read(&mut self.prefix[self.prefix_filled..]).await?;
            if n == 0 {
                return if self.prefix_filled == 0 {
                    Ok(None)
                } else {
                    Err(LinkError::Truncated)
                };
            }
            self.prefix_filled += n;
        }
        // Checked before a single body byte is read.
        let len = usize::from(u16::from_be_bytes(self.prefix));
        if !FRAME_SIZES.contains(&len) {
            return Err(LinkError::BadFrameLength(len));
        }
        while self.body_filled < len {
            let n = io.read(&mut self.body[self.body_filled..len]).await?;
            if n == 0 {
                return Err(LinkError::Truncated);
            }
            self.body_filled += n;
        }
        self.prefix_filled = 0;
        self.body_filled = 0;

        let n = self
            .transport
            .read_message(self.nonce, &self.body[..len], &mut self.plain)
            .map_err(|e| match e {
                snow::Error::Decrypt => LinkError::Decrypt,
                other => LinkError::Transport(other),
            })?;
        // snow refuses nonce u64::MAX, so this never wraps.
        self.nonce = self.nonce.saturating_add(1);
        let payload = unpad(&self.plain[..n])?;
        tracing::trace!(peer = %self.peer, frame = len, payload = payload.len(), "link frame in");
        Ok(Some(payload.to_vec()))
    }
}

/// Check and strip the inner `u32 length || payload || zeros` layout.
fn unpad(plain: &[u8]) -> Result<&[u8], LinkError> {
    let (head, rest) = plain
        .split_first_chunk::<LEN_HEADER>()
        .ok_or(LinkError::BadPadding)?;
    let declared = usize::try_from(u32::from_be_bytes(*head)).map_err(|_| LinkError::BadPadding)?;
    if declared > rest.len() {
        return Err(LinkError::BadPadding);
    }
    let (payload, padding) = rest.split_at(declared);
    if padding.iter().any(|&b| b != 0) {
        return Err(LinkError::BadPadding);
    }
    Ok(payload)
}

/// Sending state: the shared session keys, the send nonce, and buffers.
struct SendState {
    transport: Arc<StatelessTransportState>,
    /// For log lines only.
    peer: PeerKey,
    nonce: u64,
    plain: Box<[u8]>,
    wire: Box<[u8]>,
    failed: bool,
}

impl SendState {
    fn new(transport: Arc<StatelessTransportState>, peer: PeerKey) -> SendState {
        SendState {
            transport,
            peer,
            nonce: 0,
            plain: vec![0u8; LARGE_FRAME - TAG_LEN].into_boxed_slice(),
            wire: vec![0u8; PREFIX_LEN + LARGE_FRAME].into_boxed_slice(),
            failed: false,
        }
    }

    async fn send<W>(&mut self, io: &mut W, payload: &[u8]) -> Result<(), LinkError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let result = self.send_frame(io, payload).await;
        if let Err(e) = &result {
            tracing::debug!(peer = %self.peer, error = %e, "link write failed");
        }
        result
    }

    async fn send_frame<W>(&mut self, io: &mut W, payload: &[u8]) -> Result<(), LinkError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(LinkError::PayloadTooLarge(payload.len()));
        }
        let frame = if payload.len() <= SMALL_PAYLOAD {
            SMALL_FRAME
        } else {
            LARGE_FRAME
        };
        let plain_len = frame - TAG_LEN;
        let payload_len =
            u32::try_from(payload.len()).map_err(|_| LinkError::PayloadTooLarge(payload.len()))?;
        let frame_prefix =
            u16::try_from(frame).map_err(|_| LinkError::PayloadTooLarge(payload.len()))?;

        let end = LEN_HEADER + payload.len();
        self.plain[..LEN_HEADER].copy_from_slice(&payload_len.to_be_bytes());
        self.plain[LEN_HEADER..end].copy_from_slice(payload);
        self.plain[end..plain_len].fill(0);

        // From here until the frame is fully written the writer counts as
        // failed: an error or a cancellation leaves the stream mid-frame.
        self.failed = true;
        let n = self
            .transport
            .write_message(
                self.nonce,
                &self.plain[..plain_len],
                &mut self.wire[PREFIX_LEN..PREFIX_LEN + frame],
            )
            .map_err(LinkError::Transport)?;
        if n != frame {
            return Err(LinkError::Transport(snow::Error::Input));
        }
        self.nonce = self.nonce.saturating_add(1);
        self.wire[..PREFIX_LEN].copy_from_slice(&frame_prefix.to_be_bytes());
        io.write_all(&self.wire[..PREFIX_LEN + frame]).await?;
        io.flush().await?;
        self.failed = false;
        tracing::trace!(peer = %self.peer, frame, payload = payload.len(), "link frame out");
        Ok(())
    }
}

fn noise_builder(identity_secret: &[u8; 32]) -> Result<Builder<'_>, LinkError> {
    let params = NOISE_PARAMS.parse().map_err(LinkError::Handshake)?;
    Builder::new(params)
        .local_private_key(identity_secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(LinkError::Handshake)
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
async fn read_hs<S>(
    stream: &mut S,
    expected: usize,
    buf: &mut [u8; HS_BUF_LEN],
) -> Result<(), LinkError>
where
    S: AsyncRead + Unpin,
{
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact_hs(stream, &mut prefix).await?;
    let got = usize::from(u16::from_be_bytes(prefix));
    if got != expected {
        return Err(LinkError::HandshakeLength { expected, got });
    }
    read_exact_hs(stream, &mut buf[..expected]).await
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

/// Process a handshake message from the peer; the payload must be empty.
fn read_hs_msg(hs: &mut HandshakeState, msg: &[u8]) -> Result<(), LinkError> {
    let mut payload = [0u8; HS_BUF_LEN];
    let n = hs
        .read_message(msg, &mut payload)
        .map_err(LinkError::Handshake)?;
    if n != 0 {
        return Err(LinkError::HandshakeLength {
            expected: msg.len() - n,
            got: msg.len(),
        });
    }
    Ok(())
}

fn remote_key(hs: &HandshakeState) -> Result<PeerKey, LinkError> {
    let bytes: [u8; 32] = hs
        .get_remote_static()
        .and_then(|rs| rs.try_into().ok())
        .ok_or(LinkError::Handshake(snow::Error::Input))?;
    Ok(PeerKey(bytes))
}

fn into_states(hs: HandshakeState, peer: PeerKey) -> Result<(RecvState, SendState), LinkError> {
    let transport = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(LinkError::Handshake)?,
    );
    Ok((
        RecvState::new(Arc::clone(&transport), peer),
        SendState::new(transport, peer),
    ))
}

/// Open a link as the initiator. Fails with [`LinkError::WrongPeerKey`]
/// (before revealing our own static key) if the responder is not
/// `expected`, and with [`LinkError::HandshakeClosed`] if the responder
/// hangs up instead of confirming (as it does when it does not accept us).
pub async fn connect<S>(
    mut stream: S,
    identity: &Identity,
    expected: &PeerKey,
    cfg: &LinkConfig,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let result = tokio::time::timeout(
        cfg.handshake_timeout,
        initiator_handshake(&mut stream, identity, expected),
    )
    .await
    .unwrap_or(Err(LinkError::HandshakeTimeout(cfg.handshake_timeout)));
    match result {
        Ok((rx, tx)) => {
            tracing::debug!(peer = %expected, "link up (initiator)");
            Ok(Link {
                stream,
                peer: *expected,
                rx,
                tx,
            })
        }
        Err(e) => {
            tracing::debug!(peer = %expected, error = %e, "outgoing link handshake failed");
            Err(e)
        }
    }
}

async fn initiator_handshake<S>(
    stream: &mut S,
    identity: &Identity,
    expected: &PeerKey,
) -> Result<(RecvState, SendState), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let secret = identity.secret_bytes();
    let mut hs = noise_builder(&secret)?
        .build_initiator()
        .map_err(LinkError::Handshake)?;
    let mut buf = [0u8; HS_BUF_LEN];

    // -> e
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(LinkError::Handshake)?;
    write_hs(stream, &buf[..n]).await?;

    // <- e, ee, s, es
    read_hs(stream, HS_MSG2_LEN, &mut buf).await?;
    read_hs_msg(&mut hs, &buf[..HS_MSG2_LEN])?;
    let got = remote_key(&hs)?;
    if got != *expected {
        return Err(LinkError::WrongPeerKey {
            expected: *expected,
            got,
        });
    }

    // -> s, se
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(LinkError::Handshake)?;
    write_hs(stream, &buf[..n]).await?;

    // The responder's confirmation: one empty transport frame.
    let (mut rx, tx) = into_states(hs, got)?;
    match rx.recv(stream).await {
        Ok(Some(p)) if p.is_empty() => Ok((rx, tx)),
        Ok(Some(_)) => Err(LinkError::BadConfirmation),
        Ok(None) | Err(LinkError::Truncated) => Err(LinkError::HandshakeClosed),
        Err(LinkError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            Err(LinkError::HandshakeClosed)
        }
        Err(e) => Err(e),
    }
}

/// Accept a link as the responder. Fails with [`LinkError::UnknownPeer`]
/// if `allowed` rejects the initiator's static key; the connection is then
/// dropped without a confirmation.
///
/// `allowed` must be `Sync` so that the returned future is `Send` and can
/// run in a spawned task.
pub async fn accept<S>(
    mut stream: S,
    identity: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    cfg: &LinkConfig,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let result = tokio::time::timeout(
        cfg.handshake_timeout,
        responder_handshake(&mut stream, identity, allowed),
    )
    .await
    .unwrap_or(Err(LinkError::HandshakeTimeout(cfg.handshake_timeout)));
    match result {
        Ok((peer, rx, tx)) => {
            tracing::debug!(%peer, "link up (responder)");
            Ok(Link {
                stream,
                peer,
                rx,
                tx,
            })
        }
        Err(e) => {
            tracing::debug!(error = %e, "incoming link handshake failed");
            Err(e)
        }
    }
}

async fn responder_handshake<S>(
    stream: &mut S,
    identity: &Identity,
    allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
) -> Result<(PeerKey, RecvState, SendState), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let secret = identity.secret_bytes();
    let mut hs = noise_builder(&secret)?
        .build_responder()
        .map_err(LinkError::Handshake)?;
    let mut buf = [0u8; HS_BUF_LEN];

    // -> e
    read_hs(stream, HS_MSG1_LEN, &mut buf).await?;
    read_hs_msg(&mut hs, &buf[..HS_MSG1_LEN])?;

    // <- e, ee, s, es
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(LinkError::Handshake)?;
    write_hs(stream, &buf[..n]).await?;

    // -> s, se
    read_hs(stream, HS_MSG3_LEN, &mut buf).await?;
    read_hs_msg(&mut hs, &buf[..HS_MSG3_LEN])?;
    let peer = remote_key(&hs)?;
    if !allowed(&peer) {
        return Err(LinkError::UnknownPeer(peer));
    }

    // Confirm: one empty transport frame.
    let (rx, mut tx) = into_states(hs, peer)?;
    tx.send(stream, &[]).await?;
    Ok((peer, rx, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpad_checks_length_and_padding() {
        let mut plain = vec![0u8; SMALL_FRAME - TAG_LEN];
        plain[..4].copy_from_slice(&3u32.to_be_bytes());
        plain[4..7].copy_from_slice(b"abc");
        assert_eq!(unpad(&plain).unwrap(), b"abc");

        let mut dirty = plain.clone();
        dirty[100] = 1;
        assert!(matches!(unpad(&dirty), Err(LinkError::BadPadding)));

        let mut too_long = plain.clone();
        too_long[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(unpad(&too_long), Err(LinkError::BadPadding)));

        assert!(matches!(unpad(&[0, 0]), Err(LinkError::BadPadding)));
    }

    #[test]
    fn frame_classes() {
        assert_eq!(SMALL_PAYLOAD, 492);
        assert_eq!(MAX_PAYLOAD, 33_772);
        assert_eq!(FRAME_SIZES, [512, 33_792]);
    }
}
