//! The Noise `XX` handshake of a link, sans-IO: each step takes the peer's
//! message as bytes and writes the reply into a buffer. The async wrapper in
//! [`super`] moves the bytes and enforces the timeout.
//!
//! ```text
//!  initiator                              responder
//!  Initiator::start    -> e                Responder::new
//!                      <- e, ee, s, es     Responder::on_msg1
//!  Initiator::on_msg2  -> s, se            (key checked: WrongPeerKey)
//!                      <- confirmation     AwaitingMsg3::on_msg3
//!                         (empty frame)    (key checked: UnknownPeer)
//! ```
//!
//! Each step consumes the state it came from, so a half-finished handshake
//! cannot be used as a link. Handshake messages carry empty payloads, so
//! their lengths are fixed ([`HS_MSG1_LEN`], [`HS_MSG2_LEN`],
//! [`HS_MSG3_LEN`]); each goes on the wire as `u16 BE length || bytes`, and
//! any other length is refused before its body is read.

use std::sync::Arc;

use snow::{Builder, HandshakeState};

use super::frame::Transport;
use super::LinkError;
use crate::identity::PeerKey;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Mixed into the handshake hash by both sides: a peer speaking another
/// protocol or version fails the handshake instead of misreading frames.
pub const PROLOGUE: &[u8] = b"veil/link/v1";

/// `-> e`: 32 bytes.
pub const HS_MSG1_LEN: usize = 32;
/// `<- e, ee, s, es`: 32 + 32 + 16 + 16 bytes.
pub const HS_MSG2_LEN: usize = 96;
/// `-> s, se`: 32 + 16 + 16 bytes.
pub const HS_MSG3_LEN: usize = 64;
/// Buffer for one handshake message; no handshake length above this is
/// ever read.
pub const HS_BUF_LEN: usize = 128;
const _: () = assert!(HS_MSG1_LEN <= HS_BUF_LEN && HS_MSG2_LEN <= HS_BUF_LEN);
const _: () = assert!(HS_MSG3_LEN <= HS_BUF_LEN);

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

/// The initiator, having sent `-> e`.
pub struct Initiator {
    hs: HandshakeState,
    expected: PeerKey,
}

impl Initiator {
    /// Start a handshake with the peer whose static key must be `expected`;
    /// writes `-> e` into `out` and returns its length.
    pub fn start(secret: &[u8; 32], expected: PeerKey, out: &mut HsBuf) -> Step<Initiator> {
        let mut hs = builder(secret)?
            .build_initiator()
            .map_err(LinkError::Handshake)?;
        let n = write_empty(&mut hs, out)?;
        Ok((Initiator { hs, expected }, n))
    }

    /// Take `<- e, ee, s, es`; refuse a responder that is not the expected
    /// peer before revealing our static key; write `-> s, se` into `out`.
    /// The link is up once the responder's confirmation frame opens.
    pub fn on_msg2(mut self, msg2: &[u8], out: &mut HsBuf) -> Step<Established> {
        read_empty(&mut self.hs, msg2)?;
        let got = remote_key(&self.hs)?;
        if got != self.expected {
            return Err(LinkError::WrongPeerKey {
                expected: self.expected,
                got,
            });
        }
        let n = write_empty(&mut self.hs, out)?;
        Ok((finish(self.hs, got)?, n))
    }
}

/// The responder, waiting for `-> e`.
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

    /// Take `-> e`; write `<- e, ee, s, es` into `out`.
    pub fn on_msg1(mut self, msg1: &[u8], out: &mut HsBuf) -> Step<AwaitingMsg3> {
        read_empty(&mut self.hs, msg1)?;
        let n = write_empty(&mut self.hs, out)?;
        Ok((AwaitingMsg3 { hs: self.hs }, n))
    }
}

/// The responder, waiting for `-> s, se`.
pub struct AwaitingMsg3 {
    hs: HandshakeState,
}

impl AwaitingMsg3 {
    /// Take `-> s, se` and refuse an initiator `allowed` rejects. On success
    /// the responder confirms with one empty transport frame.
    pub fn on_msg3(
        mut self,
        msg3: &[u8],
        allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    ) -> Result<Established, LinkError> {
        read_empty(&mut self.hs, msg3)?;
        let peer = remote_key(&self.hs)?;
        if !allowed(&peer) {
            return Err(LinkError::UnknownPeer(peer));
        }
        finish(self.hs, peer)
    }
}

fn builder(secret: &[u8; 32]) -> Result<Builder<'_>, LinkError> {
    let params = NOISE_PARAMS.parse().map_err(LinkError::Handshake)?;
    Builder::new(params)
        .local_private_key(secret)
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(LinkError::Handshake)
}

/// Write our next handshake message (with an empty payload) into `out`.
fn write_empty(hs: &mut HandshakeState, out: &mut HsBuf) -> Result<usize, LinkError> {
    hs.write_message(&[], out).map_err(LinkError::Handshake)
}

/// Process a handshake message from the peer; the payload must be empty.
fn read_empty(hs: &mut HandshakeState, msg: &[u8]) -> Result<(), LinkError> {
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

fn finish(hs: HandshakeState, peer: PeerKey) -> Result<Established, LinkError> {
    let state = hs
        .into_stateless_transport_mode()
        .map_err(LinkError::Handshake)?;
    Ok(Established {
        peer,
        transport: Arc::new(Transport::noise(state)),
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

    /// Run the steps against each other in memory.
    fn run(
        a: &Identity,
        b: &Identity,
        expected: PeerKey,
        allowed: &(dyn Fn(&PeerKey) -> bool + Sync),
    ) -> Result<(Established, Established), LinkError> {
        let (mut m1, mut m2, mut m3) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
        let (init, n1) = Initiator::start(&a.secret_bytes(), expected, &mut m1)?;
        assert_eq!(n1, HS_MSG1_LEN);
        let (resp, n2) = Responder::new(&b.secret_bytes())?.on_msg1(&m1[..n1], &mut m2)?;
        assert_eq!(n2, HS_MSG2_LEN);
        let (ia, n3) = init.on_msg2(&m2[..n2], &mut m3)?;
        assert_eq!(n3, HS_MSG3_LEN);
        let rb = resp.on_msg3(&m3[..n3], allowed)?;
        Ok((ia, rb))
    }

    #[test]
    fn both_sides_agree_on_keys_and_identities() {
        let (a, b) = ids();
        let (ia, rb) = run(&a, &b, b.public(), &|k| *k == a.public()).unwrap();
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
    fn wrong_and_unknown_keys_are_refused() {
        let (a, b) = ids();
        let wrong = run(&a, &b, a.public(), &|_| true);
        assert!(matches!(wrong, Err(LinkError::WrongPeerKey { .. })));
        let unknown = run(&a, &b, b.public(), &|_| false);
        assert!(matches!(unknown, Err(LinkError::UnknownPeer(k)) if k == a.public()));
        assert!(matches!(
            check_len([0, 33], HS_MSG1_LEN),
            Err(LinkError::HandshakeLength {
                expected: HS_MSG1_LEN,
                got: 33
            })
        ));
        assert!(check_len([0, 32], HS_MSG1_LEN).is_ok());
    }

    #[test]
    fn fixed_keys_speak_the_noise_transport_format() {
        // A session's raw keys, fed to Transport::from_fixed_keys, open what
        // the Noise transport sealed and the other way round.
        let (a, b) = ids();
        let mut i = builder(&a.secret_bytes())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut r = builder(&b.secret_bytes())
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut buf, mut scratch) = ([0u8; HS_BUF_LEN], [0u8; HS_BUF_LEN]);
        for step in 0..3 {
            let (from, to) = if step % 2 == 0 {
                (&mut i, &mut r)
            } else {
                (&mut r, &mut i)
            };
            let n = from.write_message(&[], &mut buf).unwrap();
            to.read_message(&buf[..n], &mut scratch).unwrap();
        }
        let (i_to_r, r_to_i) = i.dangerously_get_raw_split();
        let noise = Arc::new(Transport::noise(i.into_stateless_transport_mode().unwrap()));
        let fixed = Arc::new(Transport::from_fixed_keys(r_to_i, i_to_r));

        let mut wire = vec![0u8; MAX_WIRE_FRAME];
        let n = FrameSealer::new(noise.clone())
            .seal(b"ab", &mut wire)
            .unwrap();
        assert_eq!(
            FrameOpener::new(fixed.clone()).open(&wire[..n]).unwrap(),
            b"ab"
        );
        let n = FrameSealer::new(fixed).seal(b"cd", &mut wire).unwrap();
        assert_eq!(FrameOpener::new(noise).open(&wire[..n]).unwrap(), b"cd");
    }
}
