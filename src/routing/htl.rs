//! Hops-to-live policies: how much search budget a request starts with, how
//! much a node keeps when it accepts one, and whether it may cache what it
//! relays at that HTL.
//!
//! Two policies exist: [`DeterministicHtl`] (anonymity mode `none`) and
//! [`FreenetHtl`] (mode `freenet`, Hyphanet's probabilistic rules with coins
//! drawn once per link, [`LinkCoins`]). The rules and their source are in
//! `docs/protocol.md` §4.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::message::Htl;
use crate::routing::Op;

/// Does a node at `own`, which accepted a request from a neighbour at
/// `sender` for a key at `target`, keep the HTL it received? Under
/// [`HtlRule::Progress`](super::HtlRule::Progress), when it is closer to
/// the key than the sender (`docs/protocol.md`, "The progress rule").
pub fn progress_is_free(
    rule: super::HtlRule,
    own: crate::keys::Location,
    sender: Option<crate::keys::Location>,
    target: crate::keys::Location,
) -> bool {
    rule == super::HtlRule::Progress
        && sender.is_some_and(|s| own.distance(target) < s.distance(target))
}

/// How a node protects the originator of its client's requests: the
/// `anonymity` setting of `node.toml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymity {
    /// Random-walk tunnels to an exit that does the per-block work (the
    /// default): no neighbour can tell an originator from a relay by the
    /// signals `veil audit` measures.
    #[default]
    Tunnel,
    /// Hyphanet's rules: probabilistic HTL per link, no caching near the top.
    Freenet,
    /// Deterministic HTL, every relay caches: the lecture's behaviour.
    None,
}

impl Anonymity {
    pub fn as_str(self) -> &'static str {
        match self {
            Anonymity::Tunnel => "tunnel",
            Anonymity::Freenet => "freenet",
            Anonymity::None => "none",
        }
    }
}

impl std::fmt::Display for Anonymity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Anonymity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tunnel" => Ok(Anonymity::Tunnel),
            "freenet" => Ok(Anonymity::Freenet),
            "none" => Ok(Anonymity::None),
            other => Err(format!(
                "unknown anonymity mode {other:?} (expected tunnel, freenet or none)"
            )),
        }
    }
}

/// Domain-separation tags of the coin derivations.
const LINK_TAG: &[u8] = b"veil/freenet-htl/link/v1";
const NODE_TAG: &[u8] = b"veil/freenet-htl/node/v1";

/// Probability of decrementing a request that arrives at `max_htl`.
pub const P_DECREMENT_AT_MAX: f64 = 0.5;
/// Probability of decrementing a request that arrives at HTL 1.
pub const P_DECREMENT_AT_MIN: f64 = 0.25;

/// The two coins Hyphanet draws per peer (`PeerNode.decrementHTLAtMaximum`,
/// `decrementHTLAtMinimum`) and once per node for its own requests
/// (`Node.decrementAtMax`, `decrementAtMin`).
///
/// They are not drawn at random but derived (SHA-256 over a tag, the node's
/// secret and the peer's public key), so they are the same after a restart.
/// The default decrements at both ends, i.e. behaves deterministically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkCoins {
    pub decrement_at_max: bool,
    pub decrement_at_min: bool,
}

impl Default for LinkCoins {
    fn default() -> Self {
        LinkCoins {
            decrement_at_max: true,
            decrement_at_min: true,
        }
    }
}

impl LinkCoins {
    /// The coins of the link from this node (`secret`) to `peer` (the
    /// peer's public key bytes, or any stable byte name of the peer).
    pub fn for_link(secret: &[u8], peer: &[u8]) -> LinkCoins {
        Self::from_digest(&tagged_digest(LINK_TAG, secret, peer))
    }

    /// The node-wide coins used for requests this node originates.
    pub fn for_node(secret: &[u8]) -> LinkCoins {
        Self::from_digest(&tagged_digest(NODE_TAG, secret, &[]))
    }

    /// Two independent uniform draws from the digest's first 16 bytes.
    fn from_digest(d: &[u8; 32]) -> LinkCoins {
        let uniform = |bytes: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            // 53 bits: an exact f64 in [0, 1).
            (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
        };
        LinkCoins {
            decrement_at_max: uniform(&d[0..8]) < P_DECREMENT_AT_MAX,
            decrement_at_min: uniform(&d[8..16]) < P_DECREMENT_AT_MIN,
        }
    }
}

/// SHA-256 over length-prefixed `tag`, `secret` and `peer`.
fn tagged_digest(tag: &[u8], secret: &[u8], peer: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [tag, secret, peer] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Decides hops-to-live at the two points where the core needs a number,
/// and whether a relay may cache.
pub trait HtlPolicy: Send {
    /// The budget (and so the HTL of the first `DataRequest`) of a request
    /// this node originates for its local client.
    fn originate(&mut self, max_htl: Htl, rng: &mut dyn RngCore) -> Htl;

    /// The budget a node keeps after accepting a request that arrived with
    /// `received` (already clamped to `max_htl`) over a link with `coins`.
    /// Zero means "answer now". A budget equal to `received` is a free hop:
    /// the router charges it back on any retry (see `docs/protocol.md` §4).
    fn accept(
        &mut self,
        received: Htl,
        max_htl: Htl,
        coins: LinkCoins,
        rng: &mut dyn RngCore,
    ) -> Htl;

    /// May a node that accepted a request of kind `op` arriving with
    /// `received` cache the block it relays?
    fn may_cache(&self, _op: Op, _received: Htl, _max_htl: Htl) -> bool {
        true
    }

    /// A short name for reports.
    fn name(&self) -> &'static str;
}

/// Freenet's classic rule: the originator spends `max_htl`, every node that
/// accepts a request decrements by one. Easy to reason about, and it leaks:
/// a request arriving with `htl == max_htl` came straight from its originator.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeterministicHtl;

impl HtlPolicy for DeterministicHtl {
    fn originate(&mut self, max_htl: Htl, _rng: &mut dyn RngCore) -> Htl {
        max_htl
    }

    fn accept(&mut self, received: Htl, _: Htl, _: LinkCoins, _: &mut dyn RngCore) -> Htl {
        received.saturating_sub(1)
    }

    fn name(&self) -> &'static str {
        "deterministic"
    }
}

/// Hyphanet's rules (fred `PeerNode.decrementHTL`, `NodeRouting.decrementHTL`,
/// `canWriteDatastoreRequest`/`Insert`):
///
/// - a request received at `max_htl` keeps `max_htl` unless the link's
///   `decrement_at_max` coin says decrement; at 1 it keeps 1 unless
///   `decrement_at_min` says drop to 0; in between it loses one;
/// - the originator applies the same rule with its node-wide coins to
///   `max_htl`, so its requests leave at `max_htl` or `max_htl - 1`;
/// - nothing is cached while the received HTL is above `max_htl - 2`
///   (requests) or `max_htl - 3` (inserts).
#[derive(Clone, Copy, Debug)]
pub struct FreenetHtl {
    node: LinkCoins,
}

impl FreenetHtl {
    /// The policy of a node whose own requests use `node` coins
    /// ([`LinkCoins::for_node`]).
    pub fn new(node: LinkCoins) -> FreenetHtl {
        FreenetHtl { node }
    }

    fn decrement(htl: Htl, max_htl: Htl, coins: LinkCoins) -> Htl {
        let htl = htl.min(max_htl);
        if htl == 0 {
            0
        } else if htl == max_htl {
            htl - Htl::from(coins.decrement_at_max)
        } else if htl == 1 {
            htl - Htl::from(coins.decrement_at_min)
        } else {
            htl - 1
        }
    }
}

impl HtlPolicy for FreenetHtl {
    fn originate(&mut self, max_htl: Htl, _rng: &mut dyn RngCore) -> Htl {
        // Never start a request of our own with nothing to spend.
        Self::decrement(max_htl, max_htl, self.node).max(1)
    }

    fn accept(
        &mut self,
        received: Htl,
        max_htl: Htl,
        coins: LinkCoins,
        _: &mut dyn RngCore,
    ) -> Htl {
        Self::decrement(received, max_htl, coins)
    }

    fn may_cache(&self, op: Op, received: Htl, max_htl: Htl) -> bool {
        let margin = match op {
            Op::Get => 2,
            Op::Put => 3,
        };
        i32::from(received) <= i32::from(max_htl) - margin
    }

    fn name(&self) -> &'static str {
        "freenet"
    }
}

/// The replication rule: does a node that accepted an insert arriving with
/// `received` (already clamped to `max_htl`) store it durably when the
/// insert ends, whatever its outcome downstream? Yes at or below
/// `replicate_htl`, as Freenet stores near the end of an insert's path.
/// The sink stores regardless (rule 7).
pub fn stores_replica(received: Htl, replicate_htl: Htl) -> bool {
    received <= replicate_htl
}

/// The HTL policy of a node in `mode` whose node-wide coins are `node`.
/// `Tunnel` has no policy of its own yet and routes like `None`; drivers
/// refuse to start in that mode.
pub fn policy_for(mode: Anonymity, node: LinkCoins) -> Box<dyn HtlPolicy> {
    match mode {
        Anonymity::Freenet => Box::new(FreenetHtl::new(node)),
        Anonymity::None | Anonymity::Tunnel => Box::new(DeterministicHtl),
    }
}

impl<P: crate::routing::PeerId> crate::routing::Router<P> {
    /// Route from now on by these rules (a testnet compares them on the
    /// same locations, `testnet/swap.rs`).
    pub fn set_rules(
        &mut self,
        lookahead: crate::routing::Lookahead,
        htl_rule: crate::routing::HtlRule,
    ) {
        let config = std::sync::Arc::make_mut(&mut self.config);
        config.lookahead = lookahead;
        config.htl_rule = htl_rule;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const MAX: Htl = 18;

    fn coins(at_max: bool, at_min: bool) -> LinkCoins {
        LinkCoins {
            decrement_at_max: at_max,
            decrement_at_min: at_min,
        }
    }

    #[test]
    fn freenet_decrements_by_the_link_coins_at_the_ends_and_by_one_between() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut p = FreenetHtl::new(coins(true, true));
        let keep = coins(false, false);
        let drop = coins(true, true);
        assert_eq!(p.accept(MAX, MAX, keep, &mut rng), MAX);
        assert_eq!(p.accept(MAX, MAX, drop, &mut rng), MAX - 1);
        assert_eq!(p.accept(1, MAX, keep, &mut rng), 1);
        assert_eq!(p.accept(1, MAX, drop, &mut rng), 0);
        for h in 2..MAX {
            assert_eq!(p.accept(h, MAX, keep, &mut rng), h - 1);
        }
        assert_eq!(FreenetHtl::new(keep).originate(MAX, &mut rng), MAX);
        assert_eq!(FreenetHtl::new(drop).originate(MAX, &mut rng), MAX - 1);
        assert_eq!(FreenetHtl::new(drop).originate(1, &mut rng), 1);
    }

    #[test]
    fn freenet_caches_only_below_the_thresholds() {
        let p = FreenetHtl::new(LinkCoins::default());
        assert!(!p.may_cache(Op::Get, MAX, MAX));
        assert!(!p.may_cache(Op::Get, MAX - 1, MAX));
        assert!(p.may_cache(Op::Get, MAX - 2, MAX));
        assert!(!p.may_cache(Op::Put, MAX - 2, MAX));
        assert!(p.may_cache(Op::Put, MAX - 3, MAX));
        assert!(!p.may_cache(Op::Put, 1, 2));
        assert!(DeterministicHtl.may_cache(Op::Get, MAX, MAX));
    }

    #[test]
    fn coins_are_a_function_of_secret_and_peer() {
        let a = LinkCoins::for_link(&[1; 32], &[2; 32]);
        assert_eq!(a, LinkCoins::for_link(&[1; 32], &[2; 32]));
        assert_eq!(LinkCoins::for_node(&[1; 32]), LinkCoins::for_node(&[1; 32]));
        // Over many peers some coins differ: they are not constants.
        let all: std::collections::HashSet<LinkCoins> = (0..64u8)
            .map(|i| LinkCoins::for_link(&[1; 32], &[i; 32]))
            .collect();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn coin_frequencies_match_hyphanet() {
        let n = 20_000u32;
        let (mut at_max, mut at_min) = (0u32, 0u32);
        for i in 0..n {
            let c = LinkCoins::for_link(&7u64.to_be_bytes(), &i.to_be_bytes());
            at_max += u32::from(c.decrement_at_max);
            at_min += u32::from(c.decrement_at_min);
        }
        let (pmax, pmin) = (
            f64::from(at_max) / f64::from(n),
            f64::from(at_min) / f64::from(n),
        );
        assert!((pmax - 0.5).abs() < 0.02, "P(decrement at max) = {pmax}");
        assert!((pmin - 0.25).abs() < 0.02, "P(decrement at 1) = {pmin}");
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [Anonymity::Tunnel, Anonymity::Freenet, Anonymity::None] {
            assert_eq!(m.as_str().parse::<Anonymity>(), Ok(m));
        }
        assert!("loud".parse::<Anonymity>().is_err());
        assert_eq!(Anonymity::default(), Anonymity::Tunnel);
    }
}
