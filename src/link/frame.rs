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
//! # The cipher, in place
//!
//! The AEAD is exactly the Noise transport cipher of
//! `Noise_IK_25519_ChaChaPoly_SHA256` (Noise spec sections 5.1 and 12.3):
//! ChaCha20-Poly1305 with a 96-bit nonce of four zero bytes and the 64-bit
//! little-endian counter, empty associated data, the 16-byte tag after the
//! ciphertext, and the counter value 2^64 - 1 never used. The keys are the
//! two that Noise's `Split()` gives at the end of the handshake, taken from
//! snow with its `risky-raw-split` feature ([`Transport::from_handshake`]:
//! the first seals what the initiator sends, the second what the responder
//! sends), and the cipher is the reviewed `chacha20poly1305` crate's
//! [`AeadInPlace`]. snow's own transport state would do the same but
//! cannot work in place: it copies every frame once when it seals and once
//! when it opens. Here a frame's plaintext is written where its ciphertext
//! goes out ([`FrameSealer::seal_into`]) and opened where it was read
//! ([`FrameOpener::decode_in_place`]); the bytes on the wire are exactly
//! what snow's transport sends and accepts (`tests/library/link.rs` checks
//! both ways, both roles, over many counters). The link never rekeys. Keys
//! live only inside the cipher, which zeroizes them when dropped; the raw
//! split's copies are zeroized at once, and nothing here logs a key.
//! Nonces are explicit and counted by the [`FrameSealer`] and
//! [`FrameOpener`], one per direction.

use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use snow::error::StateProblem;
use snow::HandshakeState;
use zeroize::Zeroizing;

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
/// incoming ones. Immutable; shared by both halves of a split link. The
/// ciphers zeroize their keys when dropped; there is no `Debug`.
pub struct Transport {
    send: Box<ChaCha20Poly1305>,
    recv: Box<ChaCha20Poly1305>,
}

impl Transport {
    /// The keys a finished Noise handshake agreed on (its `Split()`): the
    /// initiator seals with the first and opens with the second, the
    /// responder the other way round.
    pub fn from_handshake(hs: &mut HandshakeState) -> Result<Transport, LinkError> {
        if !hs.is_handshake_finished() {
            return Err(LinkError::Handshake(snow::Error::State(
                StateProblem::HandshakeNotFinished,
            )));
        }
        let (i_to_r, r_to_i) = hs.dangerously_get_raw_split();
        let (i_to_r, r_to_i) = (Zeroizing::new(i_to_r), Zeroizing::new(r_to_i));
        let (send, recv) = if hs.is_initiator() {
            (&i_to_r, &r_to_i)
        } else {
            (&r_to_i, &i_to_r)
        };
        Ok(Transport::from_keys(send, recv))
    }

    fn from_keys(send: &[u8; 32], recv: &[u8; 32]) -> Transport {
        Transport {
            send: Box::new(ChaCha20Poly1305::new(Key::from_slice(send))),
            recv: Box::new(ChaCha20Poly1305::new(Key::from_slice(recv))),
        }
    }

    /// Known keys, for fuzzing and tests: frames sealed by
    /// `from_fixed_keys(a, b)` open with `from_fixed_keys(b, a)`, and the
    /// wire bytes are exactly what a Noise session with those keys sends.
    pub fn from_fixed_keys(send: [u8; 32], recv: [u8; 32]) -> Transport {
        let (send, recv) = (Zeroizing::new(send), Zeroizing::new(recv));
        Transport::from_keys(&send, &recv)
    }

    /// Seal `frame` (plaintext, then [`TAG_LEN`] bytes for the tag) in place.
    fn seal(&self, nonce: u64, frame: &mut [u8]) -> Result<(), LinkError> {
        let n = frame
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(LinkError::Transport(snow::Error::Input))?;
        let (body, tag) = frame.split_at_mut(n);
        let t = self
            .send
            .encrypt_in_place_detached(&noise_nonce(nonce)?, &[], body)
            .map_err(|_| LinkError::Transport(snow::Error::Input))?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Open `sealed` (ciphertext, then its tag) in place; the plaintext is
    /// the returned slice at its start.
    fn open<'a>(&self, nonce: u64, sealed: &'a mut [u8]) -> Result<&'a [u8], LinkError> {
        let n = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(LinkError::Decrypt)?;
        let (body, tag) = sealed.split_at_mut(n);
        self.recv
            .decrypt_in_place_detached(&noise_nonce(nonce)?, &[], body, Tag::from_slice(tag))
            .map_err(|_| LinkError::Decrypt)?;
        Ok(body)
    }
}

/// Noise's ChaChaPoly nonce: four zero bytes, then the counter
/// little-endian. 2^64 - 1 is reserved (Noise spec 5.1) and refused.
fn noise_nonce(n: u64) -> Result<Nonce, LinkError> {
    if n == u64::MAX {
        return Err(LinkError::Transport(snow::Error::State(
            StateProblem::Exhausted,
        )));
    }
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Ok(bytes.into())
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

/// Seals payloads into wire frames, counting the send nonce. It keeps no
/// buffer of its own: every frame is built and sealed where it goes out.
pub struct FrameSealer {
    transport: Arc<Transport>,
    nonce: u64,
}

impl FrameSealer {
    pub fn new(transport: Arc<Transport>) -> FrameSealer {
        FrameSealer {
            transport,
            nonce: 0,
        }
    }

    /// Write the frame carrying `payload` (at most [`MAX_PAYLOAD`] bytes,
    /// padded to its class) into `wire`, which must hold
    /// [`MAX_WIRE_FRAME`] bytes; returns how many bytes it took.
    pub fn seal(&mut self, payload: &[u8], wire: &mut [u8]) -> Result<usize, LinkError> {
        let frame = frame_len_for(payload.len())?;
        let out = wire
            .get_mut(..PREFIX_LEN + frame)
            .ok_or(LinkError::Transport(snow::Error::Input))?;
        let start = PREFIX_LEN + LEN_HEADER;
        out[start..start + payload.len()].copy_from_slice(payload);
        // Zero padding up to the class; only the padding is written.
        out[start + payload.len()..].fill(0);
        self.finish(out, payload.len(), frame)?;
        Ok(PREFIX_LEN + frame)
    }

    /// Append one whole wire frame to `wire`: `write` appends the payload
    /// (an encoder, say), so it is written once, where it is sealed, and
    /// never copied out of a buffer of its own. A payload over
    /// [`MAX_PAYLOAD`] bytes is refused without touching the nonce, and
    /// `wire` is left as it was (its capacity too). Returns the frame's
    /// wire length.
    pub fn seal_into(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>),
        wire: &mut Vec<u8>,
    ) -> Result<usize, LinkError> {
        let (start, capacity) = (wire.len(), wire.capacity());
        wire.extend_from_slice(&[0u8; PREFIX_LEN + LEN_HEADER]);
        write(wire);
        // `write` only appends; a buffer that shrank is refused too.
        let (len, frame) = wire
            .len()
            .checked_sub(start + PREFIX_LEN + LEN_HEADER)
            .ok_or(LinkError::Transport(snow::Error::Input))
            .and_then(|len| Ok((len, frame_len_for(len)?)))
            .inspect_err(|_| {
                // An oversized payload may have grown the buffer: give
                // that back.
                wire.truncate(start);
                wire.shrink_to(capacity);
            })?;
        // Zero padding and room for the tag; only those bytes are written.
        wire.resize(start + PREFIX_LEN + frame, 0);
        self.finish(&mut wire[start..], len, frame)
            .inspect_err(|_| wire.truncate(start))?;
        Ok(PREFIX_LEN + frame)
    }

    /// Fill in the prefix and the payload length of `out` (a whole wire
    /// frame with its payload and padding in place), then seal it.
    fn finish(&mut self, out: &mut [u8], len: usize, frame: usize) -> Result<(), LinkError> {
        let too_large = || LinkError::PayloadTooLarge(len);
        let payload_len = u32::try_from(len).map_err(|_| too_large())?;
        let prefix = u16::try_from(frame).map_err(|_| too_large())?;
        out[..PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        out[PREFIX_LEN..PREFIX_LEN + LEN_HEADER].copy_from_slice(&payload_len.to_be_bytes());
        self.transport.seal(self.nonce, &mut out[PREFIX_LEN..])?;
        // The nonce never reaches u64::MAX: noise_nonce refuses it first.
        self.nonce += 1;
        Ok(())
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
    /// Where [`FrameOpener::open`] and [`FrameOpener::decode`] copy a
    /// frame they may not write to; allocated on their first use (the
    /// in-place forms never need it).
    copy: Vec<u8>,
}

impl FrameOpener {
    pub fn new(transport: Arc<Transport>) -> FrameOpener {
        FrameOpener {
            transport,
            nonce: 0,
            copy: Vec::new(),
        }
    }

    /// Decode the frame at the start of `buf`, opening it where it lies:
    /// more bytes needed, a payload (a slice of `buf`), or a protocol
    /// violation (which is final for the link; `buf` may then hold
    /// anything).
    pub fn decode_in_place<'a>(&mut self, buf: &'a mut [u8]) -> Result<Decoded<'a>, LinkError> {
        let Some(needed) = wire_len(buf)? else {
            return Ok(Decoded::Incomplete { needed: PREFIX_LEN });
        };
        match buf.get_mut(..needed) {
            None => Ok(Decoded::Incomplete { needed }),
            Some(wire) => Ok(Decoded::Frame {
                consumed: needed,
                payload: self.open_in_place(wire)?,
            }),
        }
    }

    /// As [`FrameOpener::decode_in_place`], for a buffer it may not write
    /// to: a whole frame is copied first.
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

    /// Open exactly one wire frame (`prefix || ciphertext`) where it lies;
    /// the payload is a slice of `wire`.
    pub fn open_in_place<'a>(&mut self, wire: &'a mut [u8]) -> Result<&'a [u8], LinkError> {
        let needed = wire_len(wire)?.unwrap_or(PREFIX_LEN);
        if wire.len() != needed {
            return Err(LinkError::Truncated);
        }
        let plain = self.transport.open(self.nonce, &mut wire[PREFIX_LEN..])?;
        self.nonce += 1;
        unpad(plain)
    }

    /// As [`FrameOpener::open_in_place`], for a frame it may not write to.
    pub fn open(&mut self, wire: &[u8]) -> Result<&[u8], LinkError> {
        let mut copy = std::mem::take(&mut self.copy);
        copy.clear();
        copy.extend_from_slice(wire);
        let result = self.open_in_place(&mut copy).map(<[u8]>::len);
        self.copy = copy;
        let len = result?;
        // The payload sits after the prefix and the length header.
        let start = PREFIX_LEN + LEN_HEADER;
        Ok(&self.copy[start..start + len])
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

    #[test]
    fn seal_into_appends_whole_frames_and_refuses_without_a_trace() {
        let (mut sealer, mut opener) = pair();
        let mut wire = Vec::with_capacity(2 * MAX_WIRE_FRAME);
        let n1 = sealer.seal_into(|p| p.extend_from_slice(b"one"), &mut wire);
        let n2 = sealer.seal_into(|p| p.extend_from_slice(&[3; SMALL_PAYLOAD + 1]), &mut wire);
        assert_eq!(
            (n1.unwrap(), n2.unwrap()),
            (2 + SMALL_FRAME, 2 + LARGE_FRAME)
        );
        let before = wire.clone();
        let oversized = sealer.seal_into(|p| p.resize(p.len() + MAX_PAYLOAD + 1, 1), &mut wire);
        assert!(matches!(oversized, Err(LinkError::PayloadTooLarge(_))));
        assert_eq!(
            (wire.len(), wire.capacity()),
            (before.len(), 2 * MAX_WIRE_FRAME)
        );
        let (first, second) = wire.split_at_mut(2 + SMALL_FRAME);
        assert_eq!(opener.open_in_place(first).unwrap(), b"one");
        // The refused payload did not use up a nonce.
        assert_eq!(
            opener.open_in_place(second).unwrap(),
            [3u8; SMALL_PAYLOAD + 1]
        );
    }

    #[test]
    fn the_reserved_nonce_is_never_used() {
        assert!(noise_nonce(u64::MAX - 1).is_ok());
        assert!(matches!(
            noise_nonce(u64::MAX),
            Err(LinkError::Transport(snow::Error::State(
                StateProblem::Exhausted
            )))
        ));
    }
}
