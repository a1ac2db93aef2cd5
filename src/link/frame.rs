//! Transport frames of an established link, sans-IO: seal and open over byte
//! buffers. No socket, no runtime; the async wrapper in [`super`] only moves
//! the bytes.
//!
//! On the wire a frame is `u16 BE length || ciphertext`, and the ciphertext
//! is one of [`FRAME_SIZES`] bytes long. Inside the AEAD it holds `u32 BE
//! payload length || payload || zero padding` up to the smallest class that
//! fits. The length prefix is checked before a single body byte is taken,
//! so nothing is ever buffered beyond [`MAX_WIRE_FRAME`] bytes.
//!
//! The AEAD is the Noise transport cipher (ChaChaPoly, 96-bit nonce of four
//! zero bytes and the 64-bit little-endian counter, empty associated data)
//! behind a [`Transport`]: either the state a Noise handshake produced or,
//! for fuzzing and tests, two fixed keys. Nonces are explicit and counted
//! by the [`FrameSealer`] and [`FrameOpener`], one per direction.

use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use snow::StatelessTransportState;

use super::LinkError;
use crate::message::MAX_MESSAGE_LEN;

/// AEAD tag on every transport frame.
pub const TAG_LEN: usize = 16;
/// The payload-length header inside every frame.
const LEN_HEADER: usize = 4;
/// The `u16` length prefix in front of every message on the wire.
pub const PREFIX_LEN: usize = 2;

/// Ciphertext bytes of a small frame: requests, replies without a block,
/// keepalives.
pub const SMALL_FRAME: usize = 512;
/// Ciphertext bytes of a large frame: anything carrying a block.
pub const LARGE_FRAME: usize = 33 * 1024;
/// The only ciphertext lengths a link sends or accepts.
pub const FRAME_SIZES: [usize; 2] = [SMALL_FRAME, LARGE_FRAME];
/// The longest frame on the wire, prefix included.
pub const MAX_WIRE_FRAME: usize = PREFIX_LEN + LARGE_FRAME;

/// The largest payload a small frame carries.
pub const SMALL_PAYLOAD: usize = SMALL_FRAME - TAG_LEN - LEN_HEADER;
/// The largest payload a link carries (a large frame's capacity).
pub const MAX_PAYLOAD: usize = LARGE_FRAME - TAG_LEN - LEN_HEADER;

// The size classes must hold what the message codec needs, and fit a Noise
// message and its u16 prefix.
const _: () = assert!(SMALL_PAYLOAD >= 256);
const _: () = assert!(MAX_PAYLOAD >= MAX_MESSAGE_LEN);
const _: () = assert!(LARGE_FRAME <= 65535);
const _: () = assert!(SMALL_FRAME < LARGE_FRAME);

/// The session keys of one link: what seals outgoing frames and opens
/// incoming ones. Immutable; shared by both halves of a split link.
pub struct Transport(Keys);

enum Keys {
    Noise(StatelessTransportState),
    Fixed {
        send: Box<ChaCha20Poly1305>,
        recv: Box<ChaCha20Poly1305>,
    },
}

impl Transport {
    /// The keys a finished Noise handshake agreed on.
    pub fn noise(state: StatelessTransportState) -> Transport {
        Transport(Keys::Noise(state))
    }

    /// Known keys, for fuzzing and tests: frames sealed by
    /// `from_fixed_keys(a, b)` open with `from_fixed_keys(b, a)`, and the
    /// wire bytes are exactly what a Noise session with those keys sends.
    pub fn from_fixed_keys(send: [u8; 32], recv: [u8; 32]) -> Transport {
        Transport(Keys::Fixed {
            send: Box::new(ChaCha20Poly1305::new(&send.into())),
            recv: Box::new(ChaCha20Poly1305::new(&recv.into())),
        })
    }

    fn seal(&self, nonce: u64, plain: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        match &self.0 {
            Keys::Noise(t) => t
                .write_message(nonce, plain, out)
                .map_err(LinkError::Transport),
            Keys::Fixed { send, .. } => {
                let total = plain.len() + TAG_LEN;
                let out = out
                    .get_mut(..total)
                    .ok_or(LinkError::Transport(snow::Error::Input))?;
                let (body, tag) = out.split_at_mut(plain.len());
                body.copy_from_slice(plain);
                let t = send
                    .encrypt_in_place_detached(&noise_nonce(nonce), &[], body)
                    .map_err(|_| LinkError::Transport(snow::Error::Input))?;
                tag.copy_from_slice(&t);
                Ok(total)
            }
        }
    }

    fn open(&self, nonce: u64, sealed: &[u8], out: &mut [u8]) -> Result<usize, LinkError> {
        match &self.0 {
            Keys::Noise(t) => t.read_message(nonce, sealed, out).map_err(|e| match e {
                snow::Error::Decrypt => LinkError::Decrypt,
                other => LinkError::Transport(other),
            }),
            Keys::Fixed { recv, .. } => {
                let n = sealed
                    .len()
                    .checked_sub(TAG_LEN)
                    .ok_or(LinkError::Decrypt)?;
                let (body, tag) = sealed.split_at(n);
                let out = out
                    .get_mut(..n)
                    .ok_or(LinkError::Transport(snow::Error::Input))?;
                out.copy_from_slice(body);
                recv.decrypt_in_place_detached(&noise_nonce(nonce), &[], out, Tag::from_slice(tag))
                    .map_err(|_| LinkError::Decrypt)?;
                Ok(n)
            }
        }
    }
}

/// Noise's ChaChaPoly nonce: four zero bytes, then the counter little-endian.
fn noise_nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    bytes.into()
}

/// The frame class a payload of `len` bytes goes out in.
pub fn frame_len_for(len: usize) -> Result<usize, LinkError> {
    if len <= SMALL_PAYLOAD {
        Ok(SMALL_FRAME)
    } else if len <= MAX_PAYLOAD {
        Ok(LARGE_FRAME)
    } else {
        Err(LinkError::PayloadTooLarge(len))
    }
}

/// The whole wire length (prefix included) of the frame whose prefix starts
/// `buf`: `Ok(None)` while fewer than [`PREFIX_LEN`] bytes are there, an
/// error if the prefix names no frame class.
pub fn wire_len(buf: &[u8]) -> Result<Option<usize>, LinkError> {
    let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes(*prefix));
    if !FRAME_SIZES.contains(&len) {
        return Err(LinkError::BadFrameLength(len));
    }
    Ok(Some(PREFIX_LEN + len))
}

/// Seals payloads into wire frames, counting the send nonce.
pub struct FrameSealer {
    transport: Arc<Transport>,
    nonce: u64,
    /// The plaintext of the frame being sealed: `u32 length || payload ||
    /// zeros`. Allocated once with room for the largest frame, and reused.
    plain: Vec<u8>,
}

impl FrameSealer {
    pub fn new(transport: Arc<Transport>) -> FrameSealer {
        FrameSealer {
            transport,
            nonce: 0,
            plain: Vec::with_capacity(LARGE_FRAME - TAG_LEN),
        }
    }

    /// Write the frame carrying `payload` (at most [`MAX_PAYLOAD`] bytes,
    /// padded to its class) into `wire`, which must hold
    /// [`MAX_WIRE_FRAME`] bytes; returns how many bytes it took.
    pub fn seal(&mut self, payload: &[u8], wire: &mut [u8]) -> Result<usize, LinkError> {
        self.seal_with(|plain| plain.extend_from_slice(payload), wire)
    }

    /// As [`FrameSealer::seal`], but `write` appends the payload to the
    /// frame's plaintext itself (an encoder, say), so it is written once,
    /// where it is sealed, and never copied out of a buffer of its own. A
    /// payload over [`MAX_PAYLOAD`] bytes is refused without touching the
    /// nonce.
    pub fn seal_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>),
        wire: &mut [u8],
    ) -> Result<usize, LinkError> {
        self.plain.clear();
        self.plain.extend_from_slice(&[0u8; LEN_HEADER]);
        write(&mut self.plain);
        let len = self.plain.len() - LEN_HEADER;
        let frame = frame_len_for(len).inspect_err(|_| {
            // An oversized payload grew the buffer: give that back.
            self.plain.clear();
            self.plain.shrink_to(LARGE_FRAME - TAG_LEN);
        })?;
        let too_large = || LinkError::PayloadTooLarge(len);
        let payload_len = u32::try_from(len).map_err(|_| too_large())?;
        let prefix = u16::try_from(frame).map_err(|_| too_large())?;

        self.plain[..LEN_HEADER].copy_from_slice(&payload_len.to_be_bytes());
        // Zero padding up to the class; only the padding is written.
        self.plain.resize(frame - TAG_LEN, 0);

        let body = wire
            .get_mut(PREFIX_LEN..PREFIX_LEN + frame)
            .ok_or(LinkError::Transport(snow::Error::Input))?;
        let n = self.transport.seal(self.nonce, &self.plain, body)?;
        if n != frame {
            return Err(LinkError::Transport(snow::Error::Input));
        }
        // The nonce never reaches u64::MAX: the AEAD refuses it first.
        self.nonce = self.nonce.saturating_add(1);
        wire[..PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        Ok(PREFIX_LEN + frame)
    }
}

/// What [`FrameOpener::decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The next frame is `needed` bytes long in all; the buffer holds fewer.
    Incomplete { needed: usize },
    /// A whole frame of `consumed` bytes carrying `payload` (empty for a
    /// keepalive).
    Frame { consumed: usize, payload: &'a [u8] },
}

/// Opens wire frames, counting the receive nonce.
pub struct FrameOpener {
    transport: Arc<Transport>,
    nonce: u64,
    plain: Box<[u8]>,
}

impl FrameOpener {
    pub fn new(transport: Arc<Transport>) -> FrameOpener {
        FrameOpener {
            transport,
            nonce: 0,
            plain: vec![0u8; LARGE_FRAME - TAG_LEN].into_boxed_slice(),
        }
    }

    /// Decode the frame at the start of `buf`: more bytes needed, a
    /// payload, or a protocol violation (which is final for the link).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Decoded<'_>, LinkError> {
        let Some(needed) = wire_len(buf)? else {
            return Ok(Decoded::Incomplete { needed: PREFIX_LEN });
        };
        match buf.get(..needed) {
            None => Ok(Decoded::Incomplete { needed }),
            Some(wire) => Ok(Decoded::Frame {
                consumed: needed,
                payload: self.open(wire)?,
            }),
        }
    }

    /// Open exactly one wire frame (`prefix || ciphertext`).
    pub fn open(&mut self, wire: &[u8]) -> Result<&[u8], LinkError> {
        let needed = wire_len(wire)?.unwrap_or(PREFIX_LEN);
        if wire.len() != needed {
            return Err(LinkError::Truncated);
        }
        let n = self
            .transport
            .open(self.nonce, &wire[PREFIX_LEN..], &mut self.plain)?;
        self.nonce = self.nonce.saturating_add(1);
        unpad(&self.plain[..n])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameSealer, FrameOpener) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            FrameSealer::new(Arc::new(Transport::from_fixed_keys(a, b))),
            FrameOpener::new(Arc::new(Transport::from_fixed_keys(b, a))),
        )
    }

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
        assert_eq!(frame_len_for(0).unwrap(), SMALL_FRAME);
        assert_eq!(frame_len_for(SMALL_PAYLOAD + 1).unwrap(), LARGE_FRAME);
        assert!(matches!(
            frame_len_for(MAX_PAYLOAD + 1),
            Err(LinkError::PayloadTooLarge(n)) if n == MAX_PAYLOAD + 1
        ));
    }

    #[test]
    fn sealed_frames_decode_in_order_byte_by_byte() {
        let (mut sealer, mut opener) = pair();
        let payloads: [&[u8]; 3] = [b"", b"hello", &[7u8; SMALL_PAYLOAD + 1]];
        let mut wire = Vec::new();
        let mut buf = vec![0u8; MAX_WIRE_FRAME];
        for p in payloads {
            let n = sealer.seal(p, &mut buf).unwrap();
            assert!(FRAME_SIZES.contains(&(n - PREFIX_LEN)));
            wire.extend_from_slice(&buf[..n]);
        }
        // Feed the bytes one at a time: every prefix is Incomplete until a
        // whole frame is there.
        let mut got = Vec::new();
        let mut start = 0;
        for end in 0..=wire.len() {
            if let Decoded::Frame { consumed, payload } = opener.decode(&wire[start..end]).unwrap()
            {
                assert_eq!(consumed, end - start);
                got.push(payload.to_vec());
                start = end;
            }
        }
        assert_eq!(start, wire.len());
        assert_eq!(got, payloads.map(<[u8]>::to_vec));
    }

    #[test]
    fn violations_are_refused_before_or_at_opening() {
        let (mut sealer, mut opener) = pair();
        let mut buf = vec![0u8; MAX_WIRE_FRAME];
        let n = sealer.seal(b"x", &mut buf).unwrap();

        // A length prefix naming no class is refused from the prefix alone.
        assert!(matches!(
            opener.decode(&[0xff, 0xff]),
            Err(LinkError::BadFrameLength(0xffff))
        ));
        // A flipped ciphertext byte fails authentication.
        let mut flipped = buf[..n].to_vec();
        flipped[10] ^= 1;
        assert!(matches!(opener.decode(&flipped), Err(LinkError::Decrypt)));
        // A replayed frame fails too: the nonce moved on.
        let (mut sealer2, mut opener2) = pair();
        let n2 = sealer2.seal(b"x", &mut buf).unwrap();
        assert!(opener2.open(&buf[..n2]).is_ok());
        assert!(matches!(opener2.open(&buf[..n2]), Err(LinkError::Decrypt)));
        // A short frame is not opened.
        assert!(matches!(
            opener2.open(&buf[..n2 - 1]),
            Err(LinkError::Truncated)
        ));
        // Too large a payload is refused without touching the nonce.
        assert!(matches!(
            sealer.seal(&vec![0u8; MAX_PAYLOAD + 1], &mut buf),
            Err(LinkError::PayloadTooLarge(_))
        ));
    }
}
