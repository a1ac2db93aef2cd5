//! The bare relay: what this machine allows a chain of relays, measured in
//! the same run as `veil bench --chain` so its figures can be read against
//! it.
//!
//! Five relays r0..r4 (r0 plays n0, the client's node) run as pairs of OS
//! threads in the bench process, joined by loopback TCP exactly like the
//! chain: a client thread talks to r0 in plain bytes (the client API), and
//! every link between relays carries veil's own transport frames
//! ([`crate::link::frame`]: the same size classes, the same AEAD, a nonce
//! counted per direction). A relay does only what the path's limit counts
//! and nothing else: it opens a frame, hashes the block once (SHA-256, as
//! every node verifies it) and seals it towards the requester. No routing,
//! no store, no cache, no runtime, no allocation per frame: the floor of
//! any relay that does the path's cryptography on this machine.
//!
//! - **Two-thread round trip**: a 64-byte ping-pong between two blocking
//!   threads over loopback, each asleep in `recv` until the other's bytes
//!   come, as two nodes are. (The chain bench's other round trip runs both
//!   sockets on one runtime thread, so nothing ever sleeps.)
//! - **Per hop**: the slope over d = 1..4 of the median time to fetch a
//!   block from r_d, as the chain bench measures it; and the same for an
//!   empty relay (plain frames, no cryptography, no hash), the least any
//!   relay process adds on this machine.
//! - **Throughput**: blocks from r4 with 128 in flight, through three relays
//!   and r0: per byte 9 AEAD passes (a seal and an open on four links, and
//!   one by the client, the cost of its open of the content) and 8 SHA-256
//!   passes (r4, r1..r3, r0, and three by the client: block, convergent
//!   key, file), the path limit's count.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::inproc::{median, slope};
use crate::keys::BLOCK_LEN;
use crate::link::frame::{
    wire_len, FrameOpener, FrameSealer, Transport, MAX_WIRE_FRAME, PREFIX_LEN,
};
use crate::link::LinkError;

/// Relays in the bare chain: r0 (the client's node) and r1..r4.
const RELAYS: usize = 5;
/// A request's payload: the distance left, then padding to a small frame's
/// typical request size.
const REQUEST: usize = 64;
/// A reply's payload: a block and a message header's worth of bytes.
const REPLY: usize = BLOCK_LEN + 32;
/// Blocks in flight during the throughput run (the chain bench's window).
const WINDOW: usize = 128;

/// What the bare chain measured.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Floor {
    /// Median 64-byte round trip between two blocking threads (ms).
    pub two_thread_rtt_ms: f64,
    /// Per hop (ms) of the same chain doing no work at all: plain frames,
    /// no cryptography, no hash. No relay on this machine adds less.
    pub empty_per_hop_ms: f64,
    /// Median fetch time of a block d = 1..4 hops from r0 (ms).
    pub by_distance_ms: Vec<f64>,
    /// Slope of those medians over distance (ms).
    pub per_hop_ms: f64,
    /// Blocks fetched from r4 in the throughput run.
    pub blocks: usize,
    /// Block bytes per second through the chain (MiB/s).
    pub mib_per_s: f64,
}

/// Errors of the bare chain: a socket or a frame that failed.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("bare relay socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("bare relay frame: {0}")]
    Frame(#[from] LinkError),
    #[error("bare relay: a thread ended early")]
    Ended,
    #[error("bare relay: a reply came back garbled")]
    Garbled,
}

/// Measure the bare chain: `samples` fetches per distance, then `blocks`
/// blocks for the throughput. Blocking: call it from a blocking thread.
pub fn measure(samples: usize, blocks: usize) -> Result<Floor, FloorError> {
    let two_thread_rtt_ms = two_thread_rtt(samples.max(200))?;
    let empty_per_hop_ms = slope(&by_distance(&mut Chain::start(false)?, samples)?);
    let mut client = Chain::start(true)?;
    let by_distance_ms = by_distance(&mut client, samples)?;
    let per_hop_ms = slope(&by_distance_ms);
    let t = Instant::now();
    client.stream(RELAYS - 1, blocks)?;
    let seconds = t.elapsed().as_secs_f64();
    Ok(Floor {
        two_thread_rtt_ms,
        empty_per_hop_ms,
        by_distance_ms,
        per_hop_ms,
        blocks,
        mib_per_s: (blocks * BLOCK_LEN) as f64 / (1024.0 * 1024.0) / seconds,
    })
}

/// Median fetch time (ms) of a block from r_d, d = 1..4, after a warm-up.
fn by_distance(client: &mut Chain, samples: usize) -> Result<Vec<f64>, FloorError> {
    let mut medians = Vec::new();
    for d in 1..RELAYS {
        let mut times = Vec::with_capacity(samples);
        for s in 0..samples + 10 {
            let t = Instant::now();
            client.fetch(d)?;
            if s >= 10 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        medians.push(median(times));
    }
    Ok(medians)
}

/// Median round trip (ms) of 64 bytes between two blocking threads over
/// loopback, after a warm-up of 50.
fn two_thread_rtt(rounds: usize) -> Result<f64, FloorError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut pinger = TcpStream::connect(listener.local_addr()?)?;
    let (mut echo, _) = listener.accept()?;
    pinger.set_nodelay(true)?;
    echo.set_nodelay(true)?;
    let echoer = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while echo.read_exact(&mut buf).is_ok() && echo.write_all(&buf).is_ok() {}
    });
    let mut buf = [0x5au8; 64];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 50 {
        let t = Instant::now();
        pinger.write_all(&buf)?;
        pinger.read_exact(&mut buf)?;
        if i >= 50 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    pinger.shutdown(Shutdown::Both)?;
    let _ = echoer.join();
    Ok(median(times))
}

/// The client's end of the bare chain: plain length-prefixed messages to
/// and from r0.
struct Chain {
    to_r0: TcpStream,
    reply: Vec<u8>,
    /// The client's share of the cryptography (`None`: the empty relay).
    content: Option<ChaCha20Poly1305>,
}

impl Chain {
    /// Start r0..r4 and connect the client to r0; `crypto` false: links
    /// carry plain frames and no relay hashes (the empty relay).
    fn start(crypto: bool) -> Result<Chain, FloorError> {
        let listeners = (0..RELAYS)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let to_r0 = TcpStream::connect(listeners[0].local_addr()?)?;
        to_r0.set_nodelay(true)?;
        let mut up = plain_end(listeners[0].accept()?.0)?;
        for (i, next) in listeners.iter().enumerate().skip(1) {
            let ours = TcpStream::connect(next.local_addr()?)?;
            let theirs = next.accept()?.0;
            // Link i-1 -> i: one key per direction.
            let (k_down, k_up) = ([i as u8 * 2 + 1; 32], [i as u8 * 2 + 2; 32]);
            let (down, next_up) = if crypto {
                (
                    sealed_end(ours, k_down, k_up)?,
                    sealed_end(theirs, k_up, k_down)?,
                )
            } else {
                (plain_end(ours)?, plain_end(theirs)?)
            };
            spawn_relay(up, Some(down), crypto)?;
            up = next_up;
        }
        spawn_relay(up, None, crypto)?;
        Ok(Chain {
            to_r0,
            reply: vec![0u8; 4 + REPLY],
            content: crypto.then(|| ChaCha20Poly1305::new(&[7u8; 32].into())),
        })
    }

    /// Fetch one block from r_distance and hash it, as the client checks it.
    fn fetch(&mut self, distance: usize) -> Result<(), FloorError> {
        write_request(&mut self.to_r0, distance)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> Result<(), FloorError> {
        self.to_r0.read_exact(&mut self.reply)?;
        // The holder's block is 0x42 after a counter byte: anything else
        // came garbled through the relays.
        if self.reply[..4] != (REPLY as u32).to_be_bytes() || self.reply[4 + REPLY - 1] != 0x42 {
            return Err(FloorError::Garbled);
        }
        let block = &mut self.reply[4..4 + BLOCK_LEN];
        std::hint::black_box(Sha256::digest(&*block));
        if let Some(cipher) = &self.content {
            // What the client does with a block beyond that first check:
            // one AEAD pass (its open of the content; a seal costs the
            // same and cannot fail on these bytes), the plaintext against
            // its convergent key, and the file hash over it.
            let tag = cipher
                .encrypt_in_place_detached(&[0u8; 12].into(), b"", block)
                .map_err(|_| FloorError::Garbled)?;
            std::hint::black_box(tag);
            std::hint::black_box(Sha256::digest(&*block));
            std::hint::black_box(Sha256::digest(&*block));
        }
        Ok(())
    }

    /// Fetch `blocks` blocks from r_distance with [`WINDOW`] in flight.
    fn stream(&mut self, distance: usize, blocks: usize) -> Result<(), FloorError> {
        let (tokens, take) = sync_channel::<()>(WINDOW);
        for _ in 0..WINDOW {
            tokens.send(()).map_err(|_| FloorError::Ended)?;
        }
        let mut writer = self.to_r0.try_clone()?;
        let sender = std::thread::spawn(move || -> Result<(), FloorError> {
            for _ in 0..blocks {
                take.recv().map_err(|_| FloorError::Ended)?;
                write_request(&mut writer, distance)?;
            }
            Ok(())
        });
        for _ in 0..blocks {
            self.read_reply()?;
            // The sender may have finished: a closed channel is fine.
            let _ = tokens.send(());
        }
        sender.join().map_err(|_| FloorError::Ended)?
    }
}

/// Ask r0 for a block `distance` relays away.
fn write_request(to_r0: &mut TcpStream, distance: usize) -> Result<(), FloorError> {
    let mut req = [0u8; 4 + REQUEST];
    req[..4].copy_from_slice(&(REQUEST as u32).to_be_bytes());
    req[4] = u8::try_from(distance).map_err(|_| FloorError::Ended)?;
    to_r0.write_all(&req)?;
    Ok(())
}

impl Drop for Chain {
    fn drop(&mut self) {
        // r0 sees the end and passes it down the chain.
        let _ = self.to_r0.shutdown(Shutdown::Both);
    }
}

/// The reading half of a link end: plain (`u32 length || payload`, the
/// client's leg) or sealed frames.
struct ReadHalf {
    stream: TcpStream,
    opener: Option<FrameOpener>,
    wire: Vec<u8>,
}

/// The writing half of a link end.
struct WriteHalf {
    stream: TcpStream,
    sealer: Option<FrameSealer>,
    wire: Vec<u8>,
}

fn plain_end(stream: TcpStream) -> Result<(ReadHalf, WriteHalf), FloorError> {
    stream.set_nodelay(true)?;
    Ok((
        ReadHalf {
            stream: stream.try_clone()?,
            opener: None,
            wire: vec![0u8; 4 + REPLY],
        },
        WriteHalf {
            stream,
            sealer: None,
            wire: vec![0u8; 4 + REPLY],
        },
    ))
}

fn sealed_end(
    stream: TcpStream,
    send: [u8; 32],
    recv: [u8; 32],
) -> Result<(ReadHalf, WriteHalf), FloorError> {
    stream.set_nodelay(true)?;
    let transport = Arc::new(Transport::from_fixed_keys(send, recv));
    Ok((
        ReadHalf {
            stream: stream.try_clone()?,
            opener: Some(FrameOpener::new(transport.clone())),
            wire: vec![0u8; MAX_WIRE_FRAME],
        },
        WriteHalf {
            stream,
            sealer: Some(FrameSealer::new(transport)),
            wire: vec![0u8; MAX_WIRE_FRAME],
        },
    ))
}

impl ReadHalf {
    /// The next message's payload.
    fn read(&mut self) -> Result<&[u8], FloorError> {
        match &mut self.opener {
            Some(opener) => {
                self.stream.read_exact(&mut self.wire[..PREFIX_LEN])?;
                let len = wire_len(&self.wire)?.ok_or(FloorError::Ended)?;
                self.stream.read_exact(&mut self.wire[PREFIX_LEN..len])?;
                Ok(opener.open(&self.wire[..len])?)
            }
            None => {
                self.stream.read_exact(&mut self.wire[..4])?;
                let mut head = [0u8; 4];
                head.copy_from_slice(&self.wire[..4]);
                let len = u32::from_be_bytes(head) as usize;
                let body = self.wire.get_mut(..len).ok_or(FloorError::Ended)?;
                self.stream.read_exact(body)?;
                Ok(&self.wire[..len])
            }
        }
    }
}

impl WriteHalf {
    fn send(&mut self, payload: &[u8]) -> Result<(), FloorError> {
        let n = match &mut self.sealer {
            Some(sealer) => sealer.seal(payload, &mut self.wire)?,
            None => {
                self.wire[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
                self.wire[4..4 + payload.len()].copy_from_slice(payload);
                4 + payload.len()
            }
        };
        self.stream.write_all(&self.wire[..n])?;
        Ok(())
    }
}

/// Start one relay: a thread reading requests from upstream (answering
/// when the distance left is 0, else passing it down) and, unless it is
/// the last, a thread reading replies from downstream (hash, seal, send
/// up). Either thread ending shuts the relay's sockets, so the end of the
/// client's connection runs down the whole chain.
fn spawn_relay(
    up: (ReadHalf, WriteHalf),
    down: Option<(ReadHalf, WriteHalf)>,
    crypto: bool,
) -> Result<(), FloorError> {
    let (mut up_read, up_write) = up;
    let up_socket = up_write.stream.try_clone()?;
    let up_write = Arc::new(Mutex::new(up_write));
    let (down_read, mut down_write) = down.unzip();
    let down_socket = down_write
        .as_ref()
        .map(|w| w.stream.try_clone())
        .transpose()?;
    if let Some(mut from_down) = down_read {
        let up_write = up_write.clone();
        let up_socket = up_socket.try_clone()?;
        std::thread::spawn(move || {
            let mut relay_reply = || -> Result<(), FloorError> {
                loop {
                    let reply = from_down.read()?;
                    let block = reply.get(..BLOCK_LEN).ok_or(FloorError::Ended)?;
                    if crypto {
                        std::hint::black_box(Sha256::digest(block));
                    }
                    let mut w = up_write.lock().map_err(|_| FloorError::Ended)?;
                    w.send(reply)?;
                }
            };
            let _ = relay_reply();
            let _ = up_socket.shutdown(Shutdown::Both);
        });
    }
    std::thread::spawn(move || {
        let mut own = vec![0x42u8; REPLY];
        let mut serve = || -> Result<(), FloorError> {
            loop {
                let request = up_read.read()?;
                let left = *request.first().ok_or(FloorError::Ended)?;
                if left == 0 {
                    // This relay holds the block: it checks it before it
                    // answers, as a node reading its store does.
                    if crypto {
                        std::hint::black_box(Sha256::digest(&own[..BLOCK_LEN]));
                    }
                    own[0] = own[0].wrapping_add(1);
                    let mut w = up_write.lock().map_err(|_| FloorError::Ended)?;
                    w.send(&own)?;
                } else {
                    let mut forward = [0u8; REQUEST];
                    let n = request.len().min(REQUEST);
                    forward[..n].copy_from_slice(&request[..n]);
                    forward[0] = left - 1;
                    down_write
                        .as_mut()
                        .ok_or(FloorError::Ended)?
                        .send(&forward)?;
                }
            }
        };
        let _ = serve();
        let _ = up_socket.shutdown(Shutdown::Both);
        if let Some(down) = down_socket {
            let _ = down.shutdown(Shutdown::Both);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_chain_carries_every_block_from_every_distance() {
        let floor = measure(3, 300).unwrap();
        assert_eq!(floor.by_distance_ms.len(), RELAYS - 1);
        assert!(floor.by_distance_ms.iter().all(|&ms| ms > 0.0));
        assert_eq!(floor.blocks, 300);
        assert!(floor.mib_per_s > 0.0 && floor.two_thread_rtt_ms > 0.0);
        assert!(floor.empty_per_hop_ms.is_finite());
    }
}
