//! The Noise `IK` handshake of a link, sans-IO: each step takes the peer's
//! message as bytes and writes the reply into a buffer. The async wrapper in
//! [`super`] moves the bytes and enforces the timeout.
//!
//! ```text
//!  initiator (knows the responder's key)    responder
//!  Initiator::start -> e, es, s, ss, {ts}   Responder::new
//!                                           Responder::on_msg1: opens only
//!                                           if sealed to its key; refuses
//!                                           a non-friend or a replayed ts
//!                                           (and then sends nothing)
//!  Initiator::on_msg2  <- e, ee, se         link up on both sides
//! ```
//!
//! The initiator already knows the responder's static key (friends swap
//! keys before they connect), so the responder never reveals its key and
//! never answers a first message it cannot open: a prober without the key
//! gets no byte back. The first message carries the initiator's clock
//! ([`Timestamp`], nanoseconds since the Unix epoch) as its payload; the
//! responder keeps the newest one per friend ([`ReplayGuard`]) and
//! refuses a first message that is not newer, so a recorded first message
//! replayed later draws no answer either. Each step consumes the state it
//! came from, so a half-finished handshake cannot be used as a link.
//! Message lengths are fixed ([`HS_MSG1_LEN`], [`HS_MSG2_LEN`]); each goes
//! on the wire as `u16 BE length || bytes`, and any other length is
//! refused before its body is read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use snow::{Builder, HandshakeState};

use super::frame::Transport;
use super::LinkError;
use crate::identity::PeerKey;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_SHA256";

/// Mixed into the handshake hash by both sides: a peer speaking another
/// protocol or version fails the handshake instead of misreading frames.
pub const PROLOGUE: &[u8] = b"veil/link/v2";

/// The first message's payload: the initiator's clock, nanoseconds since
/// the Unix epoch, big-endian.
pub type Timestamp = u64;
const TS_LEN: usize = 8;

/// `-> e, es, s, ss, {ts}`: 32 + (32 + 16) + (8 + 16) bytes.
pub const HS_MSG1_LEN: usize = 104;
/// `<- e, ee, se`: 32 + 16 bytes (an empty payload's tag).
pub const HS_MSG2_LEN: usize = 48;
/// Buffer for one handshake message; no handshake length above this is
/// ever read.
pub const HS_BUF_LEN: usize = 128;
const _: () = assert!(HS_MSG1_LEN <= HS_BUF_LEN && HS_MSG2_LEN <= HS_BUF_LEN);

/// One handshake message buffer.
pub type HsBuf = [u8; HS_BUF_LEN];

/// A step's result: the next state and the length of the message it wrote.
pub type Step<T> = Result<(T, usize), LinkError>;

/// A handshake that finished: who the peer is, and the session keys.
pub struct Established {
    pub peer: PeerKey,
    pub transport: Arc<Transport>,
}

/// Refuse a handshake message whose `u16` length prefix is not `expected`.
pub fn check_len(prefix: [u8; 2], expected: usize) -> Result<(), LinkError> {
    let got = usize::from(u16::from_be_bytes(prefix));
    if got != expected {
        return Err(LinkError::HandshakeLength { expected, got });
    }
    Ok(())
}

/// The newest first-message timestamp accepted from each friend. Entries
/// are made only for peers the responder accepted, so it holds at most one
/// per friend (and friends removed since).
#[derive(Default)]
pub struct ReplayGuard {
    newest: Mutex<HashMap<PeerKey, Timestamp>>,
}

impl ReplayGuard {
    /// Record `ts` from `peer` if it is newer than any before; `false` if
    /// it is not (a replayed or reordered first message).
    pub fn fresh(&self, peer: PeerKey, ts: Timestamp) -> bool {
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        match newest.get(&peer) {
            Some(&seen) if seen >= ts => false,
            _ => {
                newest.insert(peer, ts);
                true
            }
        }
    }
}

/// The initiator, having sent `-> e, es, s, ss, {ts}`.
pub struct Initiator {
    hs: HandshakeState,
    responder: PeerKey,
}

impl Initiator {
    /// Start a handshake with the peer whose static key is `responder`;
    /// writes the first message, carrying `ts`, into `out`.
    pub fn start(
        secret: &[u8; 32],
        responder: PeerKey,
        ts: Timestamp,
        out: &mut HsBuf,
    ) -> Step<Initiator> {
        let mut hs = builder(secret)?
            .remote_public_key(&responder.0)
            .and_then(|b| b.build_initiator())
            .map_err(LinkError::Handshake)?;
        let n = hs
            .write_message(&ts.to_be_bytes(), out)
            .map_err(LinkError::Handshake)?;
        Ok((Initiator { hs, responder }, n))
    }

    /// Take `<- e, ee, se`: it opens only if the responder holds the key we
    /// sealed to, and the link is up.
    pub fn on_msg2(mut self, msg2: &[u8]) -> Result<Established, LinkError> {
        let mut payload = [0u8; HS_BUF_LEN];
        let n = self
            .hs
            .read_message(msg2, &mut payload)
            .map_err(LinkError::Handshake)?;
        if n != 0 {
            return Err(LinkError::HandshakePayload(n));
        }
        finish(self.hs, self.responder)
    }
}

/// The responder, waiting for the first message.
pub struct Responder {
    hs: HandshakeState,
}

impl Responder {
    pub fn new(secret: &[u8; 32]) -> Result<Responder, LinkError> {
        let hs = builder(secret)?
            .build_responder()
            .map_err(LinkError::Handshake)?;
        Ok(Responder { hs })
    }

    /// Take the first message: refuse one that does not open (not sealed
    /// to our key), an initiator `allowed` rejects, or a timestamp `replay`
    /// has seen; otherwise write `<- e, ee, se` into `out`. On any error
    /// nothing has been written: the caller closes in silence.
    pub fn on_msg1(
        mut self,
        msg1: &[u8],
        allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
        replay: &ReplayGuard,
        out: &mut HsBuf,
    ) -> Step<Established> {
        let mut payload = [0u8; HS_BUF_LEN];
        let n = self
            .hs
            .read_message(msg1, &mut payload)
            .map_err(LinkError::Handshake)?;
        let ts: [u8; TS_LEN] = payload[..n]
            .try_into()
            .map_err(|_| LinkError::HandshakePayload(n))?;
        let peer = remote_key(&self.hs)?;
        if !allowed(&peer) {
            return Err(LinkError::UnknownPeer(peer));
        }
        if !replay.fresh(peer, Timestamp::from_be_bytes(ts)) {
            return Err(LinkError::Replayed(peer));
        }
        let n = self
            .hs
            .write_message(&[], out)
            .map_err(LinkError::Handshake)?;
        Ok((finish(self.hs, peer)?, n))
    }
}

fn builder(secret: &[u8; 32]) -> Result<Builder<'_>, LinkError> {
    let params = NOISE_PARAMS.parse().map_err(LinkError::Handshake)?;
    Builder::new(params)
        .local_private_key(secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(LinkError::Handshake)
}

fn remote_key(hs: &HandshakeState) -> Result<PeerKey, LinkError> {
    let bytes: [u8; 32] = hs
        .get_remote_static()
        .and_then(|rs| rs.try_into().ok())
        .ok_or(LinkError::Handshake(snow::Error::Input))?;
    Ok(PeerKey(bytes))
}

fn finish(mut hs: HandshakeState, peer: PeerKey) -> Result<Established, LinkError> {
    Ok(Established {
        peer,
        transport: Arc::new(Transport::from_handshake(&mut hs)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::link::frame::{Decoded, FrameOpener, FrameSealer, MAX_WIRE_FRAME};
    use rand::SeedableRng;

    fn ids() -> (Identity, Identity) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        (Identity::generate(&mut rng), Identity::generate(&mut rng))
    }

    /// Run the steps against each other in memory: `a` dials `b`, sealing
    /// to `sealed_to`.
    fn run(
        a: &Identity,
        b: &Identity,
        sealed_to: PeerKey,
        allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
        replay: &ReplayGuard,
        ts: Timestamp,
    ) -> Result<(Established, Established), LinkError> {
        let (mut m1, mut m2) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
        let (init, n1) = Initiator::start(&a.secret_bytes(), sealed_to, ts, &mut m1)?;
        assert_eq!(n1, HS_MSG1_LEN);
        let (rb, n2) =
            Responder::new(&b.secret_bytes())?.on_msg1(&m1[..n1], allowed, replay, &mut m2)?;
        assert_eq!(n2, HS_MSG2_LEN);
        let ia = init.on_msg2(&m2[..n2])?;
        Ok((ia, rb))
    }

    #[test]
    fn both_sides_agree_on_keys_and_identities() {
        let (a, b) = ids();
        let guard = ReplayGuard::default();
        let (ia, rb) = run(&a, &b, b.public(), &|k| *k == a.public(), &guard, 1).unwrap();
        assert_eq!(ia.peer, b.public());
        assert_eq!(rb.peer, a.public());
        let mut sealer = FrameSealer::new(ia.transport);
        let mut opener = FrameOpener::new(rb.transport);
        let mut wire = vec![0u8; MAX_WIRE_FRAME];
        let n = sealer.seal(b"over noise", &mut wire).unwrap();
        assert_eq!(
            opener.decode(&wire[..n]).unwrap(),
            Decoded::Frame {
                consumed: n,
                payload: b"over noise"
            }
        );
    }

    #[test]
    fn wrong_key_unknown_peer_and_replay_are_refused() {
        let (a, b) = ids();
        let guard = ReplayGuard::default();
        // Sealed to a key the responder does not hold: it cannot open it.
        let wrong = run(&a, &b, a.public(), &|_| true, &guard, 1);
        assert!(matches!(wrong, Err(LinkError::Handshake(_))));
        let unknown = run(&a, &b, b.public(), &|_| false, &guard, 1);
        assert!(matches!(unknown, Err(LinkError::UnknownPeer(k)) if k == a.public()));
        assert!(run(&a, &b, b.public(), &|_| true, &guard, 5).is_ok());
        for stale in [5, 4] {
            let replayed = run(&a, &b, b.public(), &|_| true, &guard, stale);
            assert!(matches!(replayed, Err(LinkError::Replayed(k)) if k == a.public()));
        }
        assert!(run(&a, &b, b.public(), &|_| true, &guard, 6).is_ok());
        assert!(matches!(
            check_len([0, 33], HS_MSG1_LEN),
            Err(LinkError::HandshakeLength {
                expected: HS_MSG1_LEN,
                got: 33
            })
        ));
        assert!(check_len([0, HS_MSG1_LEN as u8], HS_MSG1_LEN).is_ok());
    }
}
