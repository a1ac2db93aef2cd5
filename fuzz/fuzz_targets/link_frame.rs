//! Transport frames of an established link, through the sans-IO codec.
//!
//! A [`FrameSealer`] and a [`FrameOpener`] share fixed keys (no handshake,
//! no runtime). The sealer seals the payloads the input asks for; the wire
//! bytes are then mutated as the input says (flips, inserts, deletes,
//! truncation, raw garbage, rewritten length prefixes) and fed to the
//! opener's `decode` a chunk at a time.
//!
//! Whatever arrives, the opener must return payloads that are exactly a
//! prefix of what was sent, in order, then run out of bytes or report a
//! violation: never a panic, never a payload that was not sent. Untouched
//! wire bytes must give every payload and leave nothing over.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use veil::link::frame::{Decoded, FrameOpener, FrameSealer, Transport, MAX_WIRE_FRAME, PREFIX_LEN};
use veil::link::{MAX_PAYLOAD, SMALL_PAYLOAD};

/// At most this many frames per input, so the wire stays bounded.
const MAX_SENDS: usize = 8;
const MAX_MUTATIONS: usize = 8;

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];

#[derive(Arbitrary, Debug)]
enum Send {
    Keepalive,
    Small { len: u16, seed: u8 },
    Large { len: u16, seed: u8 },
}

impl Send {
    fn payload(&self) -> Vec<u8> {
        let (len, seed) = match *self {
            Send::Keepalive => (0, 0),
            Send::Small { len, seed } => (usize::from(len) % (SMALL_PAYLOAD + 1), seed),
            Send::Large { len, seed } => (
                SMALL_PAYLOAD + 1 + usize::from(len) % (MAX_PAYLOAD - SMALL_PAYLOAD),
                seed,
            ),
        };
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect()
    }
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip {
        pos: u32,
        xor: u8,
    },
    Insert {
        pos: u32,
        bytes: Vec<u8>,
    },
    Delete {
        pos: u32,
        len: u16,
    },
    Truncate {
        pos: u32,
    },
    Append {
        bytes: Vec<u8>,
    },
    /// Overwrite two bytes (e.g. a frame's length prefix) with a value.
    SetU16 {
        pos: u32,
        value: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    sends: Vec<Send>,
    mutations: Vec<Mutation>,
    /// Raw bytes put on the wire before anything the writer sent.
    prefix: Vec<u8>,
    /// How many bytes the reader is handed at a time (0 means all at once).
    chunk: u16,
}

fn at(pos: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        pos as usize % (len + 1)
    }
}

fn mutate(wire: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { pos, xor } => {
            if !wire.is_empty() {
                let i = *pos as usize % wire.len();
                wire[i] ^= xor;
            }
        }
        Mutation::Insert { pos, bytes } => {
            let i = at(*pos, wire.len());
            wire.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { pos, len } => {
            let i = at(*pos, wire.len());
            let j = (i + usize::from(*len)).min(wire.len());
            wire.drain(i..j);
        }
        Mutation::Truncate { pos } => {
            let i = at(*pos, wire.len());
            wire.truncate(i);
        }
        Mutation::Append { bytes } => wire.extend_from_slice(bytes),
        Mutation::SetU16 { pos, value } => {
            if wire.len() >= 2 {
                let i = *pos as usize % (wire.len() - 1);
                wire[i..i + 2].copy_from_slice(&value.to_be_bytes());
            }
        }
    }
}

fn run(input: &Input) {
    let mut sealer = FrameSealer::new(Arc::new(Transport::from_fixed_keys(KEY_A, KEY_B)));
    let mut opener = FrameOpener::new(Arc::new(Transport::from_fixed_keys(KEY_B, KEY_A)));

    // What the writer puts on the wire.
    let sent: Vec<Vec<u8>> = input
        .sends
        .iter()
        .take(MAX_SENDS)
        .map(Send::payload)
        .collect();
    let mut original = Vec::new();
    let mut frame = vec![0u8; MAX_WIRE_FRAME];
    for p in &sent {
        let n = sealer.seal(p, &mut frame).expect("seal");
        assert!(n > PREFIX_LEN && n <= MAX_WIRE_FRAME);
        original.extend_from_slice(&frame[..n]);
    }

    let mut wire = input.prefix.clone();
    wire.extend_from_slice(&original);
    for m in input.mutations.iter().take(MAX_MUTATIONS) {
        mutate(&mut wire, m);
    }
    let untouched = wire == original;

    // Hand the reader the bytes `chunk` at a time, as a socket might.
    let chunk = match usize::from(input.chunk) {
        0 => wire.len().max(1),
        c => c,
    };
    let mut got: Vec<Vec<u8>> = Vec::new();
    let (mut start, mut available) = (0, 0);
    let end = loop {
        match opener.decode(&wire[start..available]) {
            Ok(Decoded::Frame { consumed, payload }) => {
                let i = got.len();
                assert!(consumed > PREFIX_LEN && start + consumed <= available);
                assert!(
                    i < sent.len(),
                    "decoded a payload #{i} of {} bytes but only {} were sent",
                    payload.len(),
                    sent.len()
                );
                assert!(
                    payload == sent[i].as_slice(),
                    "payload #{i} differs from what was sent ({} vs {} bytes)",
                    payload.len(),
                    sent[i].len()
                );
                got.push(payload.to_vec());
                start += consumed;
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed > available - start && needed <= MAX_WIRE_FRAME);
                if available == wire.len() {
                    break Ok(available - start);
                }
                available = (available + chunk).min(wire.len());
            }
            Err(e) => break Err(e),
        }
    };
    if untouched {
        assert!(
            matches!(end, Ok(0)) && got == sent,
            "untouched wire: got {} of {} payloads, end {end:?}",
            got.len(),
            sent.len()
        );
    }
}

fuzz_target!(|input: Input| {
    run(&input);
});
