//! Transport frames of an established link.
//!
//! Two fixed identities complete a real Noise handshake over
//! `tokio::io::duplex` through a relay in the middle. The initiator then
//! sends the payloads the input asks for; the middle captures the wire bytes,
//! applies the input's mutations (flips, inserts, deletes, truncation, raw
//! garbage, rewritten length prefixes) and feeds the result to the
//! responder's reader.
//!
//! Whatever arrives, the reader must return payloads that are exactly a
//! prefix of what was sent, in order, then a clean end or an error: never a
//! panic, never a payload that was not sent. Untouched wire bytes must give
//! every payload and then a clean end.
//!
//! A link's state (nonces, poisoning after an error) is consumed by every
//! input, and Noise ephemerals are fresh per handshake, so each input gets
//! its own handshake; the identities are made once.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use veil::identity::Identity;
use veil::link::{accept, connect, LinkConfig, LinkError, MAX_PAYLOAD, SMALL_PAYLOAD};

/// Wire bytes of the handshake, each with its `u16` prefix: `-> e`,
/// `<- e, ee, s, es`, `-> s, se`, and the responder's small confirmation
/// frame.
const HS_TO_RESPONDER: [usize; 2] = [2 + 32, 2 + 64];
const HS_TO_INITIATOR: [usize; 2] = [2 + 96, 2 + 512];

/// At most this many frames per input, so the wire stays bounded.
const MAX_SENDS: usize = 8;
const MAX_MUTATIONS: usize = 8;

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

fn identities() -> &'static (Identity, Identity) {
    static IDS: OnceLock<(Identity, Identity)> = OnceLock::new();
    IDS.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x7665696c);
        (Identity::generate(&mut rng), Identity::generate(&mut rng))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// Forward exactly the handshake's bytes between the two middle ends.
async fn relay_handshake(to_i: &mut DuplexStream, to_r: &mut DuplexStream) -> std::io::Result<()> {
    let mut buf = [0u8; 2 + 512];
    for step in 0..2 {
        let n = HS_TO_RESPONDER[step];
        to_i.read_exact(&mut buf[..n]).await?;
        to_r.write_all(&buf[..n]).await?;
        let n = HS_TO_INITIATOR[step];
        to_r.read_exact(&mut buf[..n]).await?;
        to_i.write_all(&buf[..n]).await?;
    }
    Ok(())
}

async fn run(input: &Input) {
    let (ia, ib) = identities();
    let cfg = LinkConfig {
        handshake_timeout: Duration::from_secs(30),
    };
    // initiator <-> mid_i ... mid_r <-> responder
    let (a_io, mut mid_i) = tokio::io::duplex(1 << 20);
    let (b_io, mut mid_r) = tokio::io::duplex(1 << 20);
    let expected = ib.public();
    let want_a = ia.public();
    let allowed = move |k: &veil::identity::PeerKey| *k == want_a;
    let (a, b, relayed) = tokio::join!(
        connect(a_io, ia, &expected, &cfg),
        accept(b_io, ib, &allowed, &cfg),
        relay_handshake(&mut mid_i, &mut mid_r),
    );
    relayed.expect("relay");
    let mut a = a.expect("initiator handshake");
    let mut b = b.expect("responder handshake");

    // What the writer puts on the wire.
    let sent: Vec<Vec<u8>> = input
        .sends
        .iter()
        .take(MAX_SENDS)
        .map(Send::payload)
        .collect();
    for p in &sent {
        a.send(p).await.expect("send");
    }
    a.close().await.expect("close");
    let mut wire = Vec::new();
    mid_i.read_to_end(&mut wire).await.expect("capture");

    let original = wire.clone();
    let mut wire = input.prefix.clone();
    wire.extend_from_slice(&original);
    for m in input.mutations.iter().take(MAX_MUTATIONS) {
        mutate(&mut wire, m);
    }
    let untouched = wire == original;

    // Feed it to the reader.
    let feed = async move {
        mid_r.write_all(&wire).await.expect("feed");
        mid_r.shutdown().await.expect("shutdown");
        // Keep the middle end alive until the reader is done with it.
        mid_r
    };
    let read = async {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let end = loop {
            match b.recv().await {
                Ok(Some(p)) => {
                    let i = got.len();
                    assert!(
                        i < sent.len(),
                        "reader produced a payload #{i} of {} bytes but only {} were sent",
                        p.len(),
                        sent.len()
                    );
                    assert!(
                        p == sent[i],
                        "payload #{i} differs from what was sent ({} vs {} bytes)",
                        p.len(),
                        sent[i].len()
                    );
                    got.push(p);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        (got, end)
    };
    let (_mid, (got, end)) = tokio::join!(feed, read);
    if let Err(e) = &end {
        // Any error is final for the reader.
        assert!(
            matches!(b.recv().await, Err(LinkError::Closed)),
            "reader went on after {e}"
        );
    }
    if untouched {
        assert!(
            end.is_ok() && got == sent,
            "untouched wire: got {} of {} payloads, end {end:?}",
            got.len(),
            sent.len()
        );
    }
}

fuzz_target!(|input: Input| {
    runtime().block_on(run(&input));
});
