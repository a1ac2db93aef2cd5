//! The two halves' frame state over a byte stream: what the receiving half
//! has read and not yet opened, and what the sending half has sealed and
//! not yet written.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{Decoded, FrameOpener, FrameSealer, MAX_WIRE_FRAME, PREFIX_LEN};
use super::handshake::Established;
use super::LinkError;
use crate::identity::PeerKey;

/// The most bytes handed to the socket in one write. A write the socket
/// takes only part of makes tokio wait for the socket to turn writable
/// again; Shadow (docs/shadow.md) takes at most 65 535 bytes of one TCP
/// write even when its buffer has room, so the socket never turns, and a
/// larger write stalled the link for good (until the peer's idle timeout).
/// Below that size, a short write means a full buffer, on Linux and under
/// Shadow alike.
pub const MAX_WRITE: usize = 65_535;

/// Bytes a reader asks the stream for at once: room for three of the
/// largest frames, so one read takes what arrived together (a frame and the
/// next one's prefix, or a burst), not one read for the prefix and one for
/// the body of each frame.
const READ_BUF: usize = 3 * MAX_WIRE_FRAME;

/// Receiving side: a [`FrameOpener`] and the bytes read and not yet opened
/// (kept across calls, which makes `recv` cancel-safe).
pub(super) struct RecvState {
    opener: FrameOpener,
    /// For log lines only.
    peer: PeerKey,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet opened.
    start: usize,
    end: usize,
    failed: bool,
}

impl RecvState {
    pub(super) fn new(est: &Established) -> RecvState {
        RecvState {
            opener: FrameOpener::new(est.transport.clone()),
            peer: est.peer,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            failed: false,
        }
    }

    pub(super) async fn recv<R, T>(
        &mut self,
        io: &mut R,
        take: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, LinkError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        if self.failed {
            return Err(LinkError::Closed);
        }
        // Only a returned error poisons the reader; a cancelled call leaves
        // the partial frame in place for the next one.
        let result = self.recv_frame(io, take).await;
        if let Err(e) = &result {
            self.failed = true;
            tracing::debug!(peer = %self.peer, error = %e, "link read failed");
        }
        result
    }

    async fn recv_frame<R, T>(
        &mut self,
        io: &mut R,
        take: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, LinkError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        loop {
            // The decoder checks the length prefix before it waits for a
            // body: at most one frame (bounded) is ever buffered whole. A
            // whole frame is opened where it was read.
            let needed = match self
                .opener
                .decode_in_place(&mut self.buf[self.start..self.end])?
            {
                Decoded::Incomplete { needed } => needed,
                Decoded::Frame { consumed, payload } => {
                    tracing::trace!(peer = %self.peer, frame = consumed - PREFIX_LEN, payload = payload.len(), "link frame in");
                    let taken = take(payload);
                    self.start += consumed;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                    return Ok(Some(taken));
                }
            };
            if self.start + needed > self.buf.len() {
                // The frame would run past the buffer's end: move its
                // first bytes to the front.
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            let n = io.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(LinkError::Truncated)
                };
            }
            self.end += n;
        }
    }
}

/// Frames a writer seals ahead and writes in one go at most
/// ([`LinkWriter::queue_with`]): what was already waiting when the first
/// one went out, never a frame held back for more.
pub const BATCH_FRAMES: usize = 4;

/// Sending side: a [`FrameSealer`] and the wire buffer of the frames sealed
/// and not yet written.
pub(super) struct SendState {
    sealer: FrameSealer,
    /// For log lines only.
    peer: PeerKey,
    /// The frames sealed and not yet written; room for [`BATCH_FRAMES`]
    /// frames, allocated once.
    wire: Vec<u8>,
    /// Frames among them.
    frames: usize,
    /// A write failed or was cancelled part-way: the stream is mid-frame.
    failed: bool,
}

impl SendState {
    pub(super) fn new(est: &Established) -> SendState {
        SendState {
            sealer: FrameSealer::new(est.transport.clone()),
            peer: est.peer,
            wire: Vec::with_capacity(BATCH_FRAMES * MAX_WIRE_FRAME),
            frames: 0,
            failed: false,
        }
    }

    pub(super) fn can_queue(&self) -> bool {
        !self.failed && self.frames < BATCH_FRAMES
    }

    /// Seal one frame behind those already sealed; `write` appends its
    /// payload where the frame is sealed. Nothing is written to the stream.
    pub(super) fn queue_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        if self.frames >= BATCH_FRAMES {
            return Err(LinkError::BatchFull);
        }
        let n = self.sealer.seal_into(write, &mut self.wire)?;
        tracing::trace!(peer = %self.peer, frame = n - PREFIX_LEN, "link frame sealed");
        self.frames += 1;
        Ok(())
    }

    /// Write every sealed frame, in writes of at most [`MAX_WRITE`] bytes.
    pub(super) async fn flush<W>(&mut self, io: &mut W) -> Result<(), LinkError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.failed {
            return Err(LinkError::Closed);
        }
        // Until every frame is fully written the writer counts as failed:
        // an error or a cancellation leaves the stream mid-frame.
        self.failed = true;
        let result = async {
            for chunk in self.wire.chunks(MAX_WRITE) {
                io.write_all(chunk).await?;
            }
            io.flush().await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, error = %e, "link write failed");
            return Err(e.into());
        }
        tracing::trace!(peer = %self.peer, frames = self.frames, bytes = self.wire.len(), "link frames out");
        self.failed = false;
        self.wire.clear();
        self.frames = 0;
        Ok(())
    }

    /// Seal `payload` and write it (with any frames sealed before it).
    pub(super) async fn send<W>(&mut self, io: &mut W, payload: &[u8]) -> Result<(), LinkError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.frames >= BATCH_FRAMES {
            self.flush(io).await?;
        }
        self.queue_with(|plain| plain.extend_from_slice(payload))
            .inspect_err(|e| tracing::debug!(peer = %self.peer, error = %e, "link write failed"))?;
        self.flush(io).await
    }

    pub(super) async fn close<W>(&mut self, io: &mut W) -> Result<(), LinkError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.failed = true;
        io.shutdown().await?;
        Ok(())
    }
}
