//! Unit tests of the router pool (`routing/mod.rs`).

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::keys::{Block, Chk, RoutingKey};

#[derive(Default)]
struct Store(HashMap<RoutingKey, Block>);

impl BlockSource for Store {
    fn lookup(&self, key: &RoutingKey) -> Option<Block> {
        self.0.get(key).cloned()
    }
}

/// A router at location 0 with neighbours 1, 2, 3 (at 0.1, 0.2, 0.3),
/// its store, and a seeded random source.
struct Node {
    router: Router<u32>,
    store: Store,
    rng: ChaCha8Rng,
}

impl Node {
    fn new(config: RouterConfig) -> Node {
        let mut node = Node {
            router: Router::new(config, Location(0)),
            store: Store::default(),
            rng: ChaCha8Rng::seed_from_u64(9),
        };
        for peer in 1..=3u32 {
            let location = Location::from_f64(f64::from(peer) / 10.0);
            let coins = LinkCoins::default();
            node.at(
                0,
                Event::LinkUp {
                    peer,
                    location,
                    coins,
                },
            );
        }
        node
    }

    fn at(&mut self, now: Time, event: Event<u32>) -> Vec<Action<u32>> {
        self.router.handle(now, &mut self.rng, &self.store, event)
    }

    fn from(&mut self, from: u32, msg: Message) -> Vec<Action<u32>> {
        self.at(0, Event::Message { from, msg })
    }
}

fn limits(max_inflight_per_peer: usize, max_pending: usize) -> RouterConfig {
    RouterConfig {
        max_inflight_per_peer,
        max_pending,
        ..RouterConfig::default()
    }
}

/// A key at 0.19: peer 2 is closest, then 1, then 3.
fn key() -> RoutingKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&Location::from_f64(0.19).0.to_be_bytes());
    RoutingKey(bytes)
}

fn request(uid: Uid, htl: Htl) -> Message {
    Message::DataRequest {
        uid,
        key: key(),
        htl,
    }
}

fn send(to: u32, msg: Message) -> Action<u32> {
    Action::Send { to, msg }
}

fn done(token: ClientToken, failure: Failure) -> Action<u32> {
    Action::ClientDone {
        token,
        outcome: ClientOutcome::Failed(failure),
    }
}

#[test]
fn a_looping_uid_is_rejected_and_its_sender_is_never_tried() {
    let mut n = Node::new(RouterConfig::default());
    assert_eq!(n.from(1, request(9, 10)), vec![send(2, request(9, 9))]);
    assert_eq!(
        n.from(3, request(9, 8)),
        vec![send(3, Message::RejectedLoop { uid: 9 })]
    );
    assert_eq!(n.router.stats().loops_rejected, 1);
    // Peer 2 found nothing: 1 is upstream and 3 looped, so no route is left.
    let back = n.from(2, Message::RouteNotFound { uid: 9, htl: 5 });
    assert_eq!(
        back,
        vec![send(1, Message::RouteNotFound { uid: 9, htl: 5 })]
    );
    assert!(!n.router.is_handling(9));
    // Forgotten once answered: the same uid is a fresh request again.
    assert_eq!(n.from(3, request(9, 4)), vec![send(2, request(9, 3))]);
}

#[test]
fn one_peer_cannot_hold_more_than_its_share() {
    let mut n = Node::new(limits(2, 100));
    assert_eq!(n.from(1, request(1, 5)).len(), 1);
    assert_eq!(n.from(1, request(2, 5)).len(), 1);
    let refused = vec![send(1, Message::RejectedOverload { uid: 3 })];
    assert_eq!(n.from(1, request(3, 5)), refused);
    assert_eq!(n.router.stats().overloads_sent, 1);
    // Another peer still gets through; and once one of peer 1's requests
    // is answered, peer 1 may send again.
    assert_eq!(n.from(3, request(4, 5)), vec![send(2, request(4, 4))]);
    let answered = n.from(2, Message::DataNotFound { uid: 1 });
    assert_eq!(answered, vec![send(1, Message::DataNotFound { uid: 1 })]);
    assert_eq!(n.from(1, request(5, 5)), vec![send(2, request(5, 4))]);
    assert_eq!(n.router.pending_count(), 3);
}

#[test]
fn the_global_limit_and_an_empty_table_fail_local_requests() {
    let mut n = Node::new(limits(100, 1));
    assert_eq!(
        n.at(
            0,
            Event::ClientGet {
                token: 1,
                key: key()
            }
        )
        .len(),
        2
    );
    let second = n.at(
        0,
        Event::ClientGet {
            token: 2,
            key: key(),
        },
    );
    assert_eq!(second, vec![done(2, Failure::Overloaded)]);
    let mut lonely = Router::<u32>::new(RouterConfig::default(), Location(0));
    let store = Store::default();
    let event = Event::ClientGet {
        token: 3,
        key: key(),
    };
    let actions = lonely.handle(0, &mut n.rng, &store, event);
    assert_eq!(actions, vec![done(3, Failure::NoPeers)]);
    assert_eq!(lonely.stats().requests_originated, 0);
}

#[test]
fn a_silent_peer_times_out_at_its_deadline() {
    let config = RouterConfig::default();
    let deadline = 100 + config.timeout_for(config.max_htl);
    let mut n = Node::new(config);
    let started = n.at(
        100,
        Event::ClientGet {
            token: 1,
            key: key(),
        },
    );
    assert!(matches!(
        started[..],
        [Action::Originated { .. }, Action::Send { to: 2, .. }]
    ));
    assert_eq!(n.router.next_deadline(), Some(deadline));
    assert!(n.at(deadline - 1, Event::Tick).is_empty());
    let ended = n.at(deadline, Event::Tick);
    assert_eq!(ended, vec![done(1, Failure::Timeout)]);
    assert_eq!(n.router.stats().timeouts, 1);
    assert_eq!(n.router.next_deadline(), None);
    assert_eq!(n.router.pending_count(), 0);
}

#[test]
fn losing_the_peer_waited_on_ends_the_search() {
    let mut n = Node::new(RouterConfig::default());
    n.at(
        0,
        Event::ClientGet {
            token: 1,
            key: key(),
        },
    );
    n.from(3, request(8, 6));
    // Both wait on peer 2 (closest to the key); an unrelated link going
    // down changes nothing.
    assert!(n.at(0, Event::LinkDown { peer: 1 }).is_empty());
    let ended = n.at(0, Event::LinkDown { peer: 2 });
    assert!(ended.contains(&done(1, Failure::Timeout)), "{ended:?}");
    assert!(ended.contains(&send(3, Message::DataNotFound { uid: 8 })));
    assert_eq!(ended.len(), 2);
    assert_eq!(n.router.pending_count(), 0);
    assert_eq!(n.router.stats().timeouts, 0);
}

#[test]
fn a_search_whose_upstream_left_runs_on_but_answers_no_one() {
    let mut n = Node::new(RouterConfig::default());
    assert_eq!(n.from(1, request(4, 6)), vec![send(2, request(4, 5))]);
    assert!(n.at(0, Event::LinkDown { peer: 1 }).is_empty());
    assert!(n.router.is_handling(4));
    assert!(n.from(2, Message::DataNotFound { uid: 4 }).is_empty());
    assert!(!n.router.is_handling(4));
}

#[test]
fn an_insert_sink_caches_stores_and_acknowledges() {
    let mut n = Node::new(RouterConfig::default());
    let (chk, block) = Chk::encode(b"router unit test").unwrap();
    let insert = Message::InsertRequest {
        uid: 6,
        key: chk.routing,
        htl: 1,
        block: block.clone(),
    };
    assert_eq!(
        n.from(1, insert),
        vec![
            Action::CacheBlock {
                block: block.clone()
            },
            Action::StoreBlock { block },
            send(1, Message::InsertSucceeded { uid: 6 }),
        ]
    );
    assert_eq!(n.router.pending_count(), 0);
}

/// What a relay does with an insert arriving at `htl` from peer 1 that the
/// peer it goes to acknowledges: the actions after the acknowledgement.
fn relay_insert(config: RouterConfig, htl: Htl) -> (Block, Vec<Action<u32>>) {
    let mut n = Node::new(config);
    let (chk, block) = Chk::encode(b"replicated").unwrap();
    let insert = |htl| Message::InsertRequest {
        uid: 8,
        key: chk.routing,
        htl,
        block: block.clone(),
    };
    let first = n.from(1, insert(htl));
    let Some(Action::Send { to, msg }) = first.last().cloned() else {
        panic!("not forwarded: {first:?}");
    };
    assert_eq!(msg, insert(htl - 1));
    (block, n.from(to, Message::InsertSucceeded { uid: 8 }))
}

#[test]
fn a_relay_at_or_below_the_replication_htl_stores_before_it_acknowledges() {
    let acked = send(1, Message::InsertSucceeded { uid: 8 });
    let two = RouterConfig {
        replicate_htl: 2,
        ..RouterConfig::default()
    };
    let (block, at_two) = relay_insert(two.clone(), 2);
    assert_eq!(at_two, vec![Action::StoreBlock { block }, acked.clone()]);
    // Above the threshold a relay only caches (on arrival), as before.
    assert_eq!(relay_insert(two, 3).1, vec![acked.clone()]);
    // Replication off: only the sink stores.
    let off = RouterConfig {
        replicate_htl: 0,
        ..RouterConfig::default()
    };
    assert_eq!(relay_insert(off, 2).1, vec![acked]);
}

#[test]
fn held_keys_are_answered_and_broken_requests_reported() {
    let mut n = Node::new(RouterConfig::default());
    let (chk, block) = Chk::encode(b"held").unwrap();
    n.store.0.insert(chk.routing, block.clone());
    let ask = Message::DataRequest {
        uid: 2,
        key: chk.routing,
        htl: 3,
    };
    let found = Message::DataFound { uid: 2, block };
    assert_eq!(n.from(3, ask), vec![send(3, found)]);
    assert_eq!(n.router.stats().answered_from_store, 1);
    let zero = vec![Action::Misbehaved {
        peer: 1,
        reason: Misbehaviour::ZeroHtl,
    }];
    assert_eq!(n.from(1, request(3, 0)), zero);
    // A stranger is not a neighbour: nothing happens.
    assert!(n.from(42, request(5, 5)).is_empty());
    assert_eq!(n.router.stats().requests_received, 1);
}

/// A key whose best peer (after excluding the prober) is peer 1.
fn other_key() -> RoutingKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&Location::from_f64(0.11).0.to_be_bytes());
    bytes[31] = 1;
    RoutingKey(bytes)
}

fn probe(uid: Uid) -> Message {
    Message::DataRequest {
        uid,
        key: other_key(),
        htl: 7,
    }
}

/// Zero the uid of every request sent downstream (the prober, peer 3, sees
/// none of them) to compare what happens.
fn anonymised(actions: Vec<Action<u32>>) -> Vec<Action<u32>> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Send {
                to,
                msg: Message::DataRequest { key, htl, .. },
            } if to != 3 => send(to, Message::DataRequest { uid: 0, key, htl }),
            other => other,
        })
        .collect()
}

#[test]
fn the_same_uid_with_another_key_is_not_a_loop() {
    let mut n = Node::new(RouterConfig::default());
    assert_eq!(n.from(1, request(9, 10)), vec![send(2, request(9, 9))]);
    // Same uid, another key: routed as its own request, never to peer 2
    // (which the first flow waits on).
    let out = n.from(3, probe(9));
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Action::Send { to: 1, msg } if msg.uid() == 9));
    assert_eq!(n.router.stats().loops_rejected, 0);
    assert_eq!(n.router.pending_count(), 2);
    // Replies find their own flow by the peer they come from.
    let back = n.from(2, Message::DataNotFound { uid: 9 });
    assert_eq!(back, vec![send(1, Message::DataNotFound { uid: 9 })]);
    let back = n.from(1, Message::DataNotFound { uid: 9 });
    assert_eq!(back, vec![send(3, Message::DataNotFound { uid: 9 })]);
    assert_eq!(n.router.pending_count(), 0);
    // Same uid and same key is still a loop.
    n.from(1, request(4, 10));
    assert_eq!(
        n.from(3, request(4, 8)),
        vec![send(3, Message::RejectedLoop { uid: 4 })]
    );
}

#[test]
fn probing_a_foreign_or_finished_uid_answers_as_a_fresh_uid_would() {
    // Traceback probe (Tian et al. 2013): peer 3 replays uid 9, in flight
    // here for another key, or finished; the answer must equal the answer
    // to a uid this node never saw.
    let replay = |finish: bool, uid: Uid| {
        let mut n = Node::new(RouterConfig::default());
        n.from(1, request(9, 10));
        if finish {
            n.from(2, Message::DataNotFound { uid: 9 });
        }
        let mut out = anonymised(n.from(3, probe(uid)));
        out.extend(anonymised(
            n.from(1, Message::RouteNotFound { uid, htl: 2 }),
        ));
        out
    };
    for finish in [false, true] {
        let fresh = replay(finish, 77);
        let probed = replay(finish, 9);
        let fresh: Vec<String> = fresh
            .iter()
            .map(|a| format!("{a:?}").replace("77", "9"))
            .collect();
        let probed: Vec<String> = probed.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(probed, fresh, "finished: {finish}");
        assert!(!probed.iter().any(|a| a.contains("RejectedLoop")));
    }
}

#[test]
fn foaf_routes_to_the_neighbour_whose_neighbour_is_closest() {
    // The key is at 0.19: peer 2 (0.2) is closest of the three, but peer 3
    // announced a neighbour at exactly 0.19.
    let foaf = RouterConfig {
        lookahead: Lookahead::Foaf,
        ..RouterConfig::default()
    };
    let mut n = Node::new(foaf.clone());
    n.router
        .set_neighbour_view(&3, &[Location::from_f64(0.19), Location::from_f64(0.7)]);
    // This node's own location (0) in a view is dropped: a request sent
    // back here would only loop.
    n.router.set_neighbour_view(&1, &[Location(0)]);
    assert_eq!(n.router.neighbour_view_len(&3), 2);
    assert_eq!(n.router.neighbour_view_len(&1), 0);
    assert_eq!(n.from(1, request(9, 10)), vec![send(3, request(9, 9))]);

    // Plain greedy routing ignores the views: peer 2.
    let mut g = Node::new(RouterConfig::default());
    g.router.set_neighbour_view(&3, &[Location::from_f64(0.19)]);
    assert_eq!(g.from(1, request(9, 10)), vec![send(2, request(9, 9))]);

    // A neighbour that announced nothing is ranked by its own location;
    // once peer 3 is tried, the next best is peer 2.
    let mut m = Node::new(foaf);
    m.router.set_neighbour_view(&3, &[Location::from_f64(0.19)]);
    m.from(1, request(9, 10));
    let next = m.from(3, Message::RouteNotFound { uid: 9, htl: 8 });
    assert_eq!(next, vec![send(2, request(9, 8))]);
}

#[test]
fn under_the_progress_rule_a_hop_towards_the_key_is_free_and_a_loop_costs_nothing() {
    let progress = RouterConfig {
        htl_rule: HtlRule::Progress,
        ..RouterConfig::default()
    };
    // This node (at 0) is farther from the key (0.19) than its sender
    // (0.1): the hop costs one, as under the hop rule.
    let mut n = Node::new(progress.clone());
    assert_eq!(n.from(1, request(9, 10)), vec![send(2, request(9, 9))]);
    // Peer 2 already has the request: the loop costs nothing here ...
    let next = n.from(2, Message::RejectedLoop { uid: 9 });
    assert_eq!(next, vec![send(3, request(9, 9))]);
    // ... and one under the hop rule.
    let mut h = Node::new(RouterConfig::default());
    assert_eq!(h.from(1, request(9, 10)), vec![send(2, request(9, 9))]);
    let next = h.from(2, Message::RejectedLoop { uid: 9 });
    assert_eq!(next, vec![send(3, request(9, 8))]);

    // A node closer to the key than its sender keeps the HTL it got ...
    let mut c = Node::new(progress);
    c.router.set_location(Location::from_f64(0.185));
    assert_eq!(c.from(1, request(7, 10)), vec![send(2, request(7, 10))]);
    // ... and pays the free hop back when it has to try another neighbour.
    let next = c.from(2, Message::RouteNotFound { uid: 7, htl: 10 });
    assert_eq!(next, vec![send(3, request(7, 9))]);
}
