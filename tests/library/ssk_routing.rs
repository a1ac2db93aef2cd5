//! Signed blocks in the routing core, as every node runs it: a forged
//! signed block is dropped and counted at whichever hop receives it, and an
//! insert under a signed key that already holds a different block collides
//! (the original is kept and returned). Sans-IO: no sockets, no clock.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use veil::keys::{Block, Location, RoutingKey, SskPrivate};
use veil::message::Message;
use veil::routing::{
    Action, BlockSource, ClientOutcome, Event, Failure, LinkCoins, Misbehaviour, Router,
    RouterConfig,
};

#[derive(Default)]
struct Store(HashMap<RoutingKey, Block>);

impl BlockSource for Store {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.0.get(key).cloned()
    }
}

/// A router at 0 with neighbours 1..=3.
struct Node {
    router: Router<u32>,
    store: Store,
    rng: ChaCha8Rng,
}

impl Node {
    fn new() -> Node {
        let mut node = Node {
            router: Router::new(RouterConfig::default(), Location(0)),
            store: Store::default(),
            rng: ChaCha8Rng::seed_from_u64(3),
        };
        for peer in 1..=3u32 {
            let location = Location::from_f64(f64::from(peer) / 10.0);
            let coins = LinkCoins::default();
            node.at(Event::LinkUp {
                peer,
                location,
                coins,
            });
        }
        node
    }

    fn at(&mut self, event: Event<u32>) -> Vec<Action<u32>> {
        self.router.handle(0, &mut self.rng, &self.store, event)
    }

    fn from(&mut self, from: u32, msg: Message) -> Vec<Action<u32>> {
        self.at(Event::Message { from, msg })
    }
}

fn owner() -> SskPrivate {
    SskPrivate::from_seed([1; 32], [2; 32])
}

/// A block claiming the owner's `site-0` key, signed by someone else.
fn forged() -> (RoutingKey, Block) {
    let (key, good) = owner().sign("site-0", b"CHK@real").unwrap();
    let foreign = SskPrivate::from_seed([7; 32], [2; 32]);
    let (_, theirs) = foreign.sign("site-0", b"CHK@evil").unwrap();
    let mut bytes = theirs.as_bytes().to_vec();
    bytes[..64].copy_from_slice(&good.as_bytes()[..64]);
    let block = Block::from_bytes(bytes).unwrap();
    assert_eq!(block.routing_key(), key);
    (key, block)
}

fn misbehaved(actions: &[Action<u32>], peer: u32) -> bool {
    actions.iter().any(|a| {
        matches!(a, Action::Misbehaved { peer: p, reason: Misbehaviour::BadBlock } if *p == peer)
    })
}

#[test]
fn a_forged_insert_is_dropped_and_counted_at_every_hop() {
    let (key, block) = forged();
    // Whatever hop it reaches, from whichever neighbour, it is neither
    // cached, stored nor forwarded, and the sender is reported.
    for (hop, peer) in [(0u64, 1u32), (1, 2), (2, 3)] {
        let mut node = Node::new();
        let out = node.from(
            peer,
            Message::InsertRequest {
                uid: 100 + hop,
                key,
                htl: 10,
                block: block.clone(),
            },
        );
        assert!(misbehaved(&out, peer), "{out:?}");
        assert!(!out.iter().any(|a| matches!(
            a,
            Action::Send { .. } | Action::CacheBlock { .. } | Action::StoreBlock { .. }
        )));
        assert_eq!(node.router.stats().misbehaviours, 1);
    }
    // Its own node refuses it from the local client before any search.
    let mut node = Node::new();
    let out = node.at(Event::ClientPut { token: 1, block });
    assert_eq!(
        out,
        vec![Action::ClientDone {
            token: 1,
            outcome: ClientOutcome::Failed(Failure::BadBlock)
        }]
    );
}

#[test]
fn a_forged_reply_is_dropped_and_counted() {
    let (key, block) = forged();
    let mut node = Node::new();
    let out = node.at(Event::ClientGet { token: 5, key });
    let (to, uid) = out
        .iter()
        .find_map(|a| match a {
            Action::Send {
                to,
                msg: Message::DataRequest { uid, .. },
            } => Some((*to, *uid)),
            _ => None,
        })
        .expect("the get is forwarded");
    let out = node.from(to, Message::DataFound { uid, block });
    assert!(misbehaved(&out, to), "{out:?}");
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::CacheBlock { .. }
            | Action::ClientDone {
                outcome: ClientOutcome::Found(_),
                ..
            }
    )));
    assert_eq!(node.router.stats().misbehaviours, 1);
}

#[test]
fn an_insert_over_a_different_signed_block_collides_and_keeps_the_original() {
    let (key, original) = owner().sign("site-0", b"CHK@first").unwrap();
    let (same_key, other) = owner().sign("site-0", b"CHK@second").unwrap();
    assert_eq!(key, same_key);
    let mut node = Node::new();
    node.store.0.insert(key, original.clone());

    // From a peer: the original comes back, nothing is cached or forwarded.
    let out = node.from(
        1,
        Message::InsertRequest {
            uid: 9,
            key,
            htl: 10,
            block: other.clone(),
        },
    );
    assert_eq!(
        out,
        vec![Action::Send {
            to: 1,
            msg: Message::InsertCollision {
                uid: 9,
                block: original.clone()
            }
        }]
    );
    assert_eq!(node.router.stats().collisions, 1);
    // The same block again is no collision (re-inserting is harmless).
    let out = node.from(
        1,
        Message::InsertRequest {
            uid: 10,
            key,
            htl: 10,
            block: original.clone(),
        },
    );
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::Send {
            msg: Message::InsertCollision { .. },
            ..
        }
    )));
    // From the local client: refused as a collision.
    let out = node.at(Event::ClientPut {
        token: 2,
        block: other.clone(),
    });
    assert_eq!(
        out,
        vec![Action::ClientDone {
            token: 2,
            outcome: ClientOutcome::Failed(Failure::Collision)
        }]
    );

    // Downstream reports: a relay passes a valid collision back upstream,
    // and reports a peer that claims a collision with a bogus block.
    let mut relay = Node::new();
    let out = relay.from(
        1,
        Message::InsertRequest {
            uid: 11,
            key,
            htl: 10,
            block: other.clone(),
        },
    );
    let (down, uid) = out
        .iter()
        .find_map(|a| match a {
            Action::Send {
                to,
                msg: Message::InsertRequest { uid, .. },
            } => Some((*to, *uid)),
            _ => None,
        })
        .expect("the insert is forwarded");
    let back = relay.from(
        down,
        Message::InsertCollision {
            uid,
            block: original.clone(),
        },
    );
    assert!(back.contains(&Action::Send {
        to: 1,
        msg: Message::InsertCollision {
            uid: 11,
            block: original
        }
    }));
}

#[test]
fn a_bogus_collision_claim_is_misbehaviour() {
    let (key, block) = owner().sign("site-0", b"CHK@mine").unwrap();
    let mut node = Node::new();
    let out = node.at(Event::ClientPut {
        token: 3,
        block: block.clone(),
    });
    let (down, uid) = out
        .iter()
        .find_map(|a| match a {
            Action::Send {
                to,
                msg: Message::InsertRequest { uid, key: k, .. },
            } if *k == key => Some((*to, *uid)),
            _ => None,
        })
        .expect("the insert is forwarded");
    // Claiming the inserted block itself as the "original" is no collision.
    let out = node.from(down, Message::InsertCollision { uid, block });
    assert!(misbehaved(&out, down), "{out:?}");
}
