//! Unit tests of one search's state machine (`routing/search.rs`).

use std::sync::LazyLock;

use super::*;
use crate::keys::{Chk, Location};
use crate::routing::htl::LinkCoins;

const NOW: Time = 1_000;

fn key_at(x: u64) -> RoutingKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&x.to_be_bytes());
    RoutingKey(bytes)
}

fn block() -> Block {
    Chk::encode(b"search unit test").map(|(_, b)| b).unwrap()
}

fn peers(list: &[(u32, u64)]) -> Neighbours<u32> {
    let mut n = Neighbours::default();
    for &(p, l) in list {
        n.insert(p, Location(l), LinkCoins::default());
    }
    n
}

static CONFIG: LazyLock<RouterConfig> = LazyLock::new(RouterConfig::default);

fn view(neighbours: &Neighbours<u32>) -> View<'_, u32> {
    View {
        now: NOW,
        neighbours,
        config: &CONFIG,
    }
}

fn hop(search: &mut Search<u32>, neighbours: &Neighbours<u32>) -> Step<u32> {
    search.next_hop(&view(neighbours))
}

fn reply(s: &mut Search<u32>, n: &Neighbours<u32>, from: u32, msg: Message) -> OnReply<u32> {
    s.on_reply(&from, msg, &view(n))
}

/// A local get that has already gone to its first hop.
fn asked(n: &Neighbours<u32>, budget: Htl) -> Search<u32> {
    let mut s = get(Origin::Client(5), budget);
    hop(&mut s, n);
    s
}

/// The misbehaviour reported and the step taken after a reply.
fn stepped(r: OnReply<u32>) -> (Option<Misbehaviour>, Step<u32>) {
    match r {
        OnReply::Step { misbehaved, step } => (misbehaved, step),
        OnReply::Ignored => panic!("reply ignored"),
    }
}

fn get(origin: Origin<u32>, budget: Htl) -> Search<u32> {
    Search::new(7, Request::Get { key: key_at(1_000) }, origin, budget)
}

fn put(origin: Origin<u32>, budget: Htl) -> Search<u32> {
    Search::new(7, Request::Put { block: block() }, origin, budget)
}

/// The peer a step forwards to, and the htl it hands on.
fn forwarded(step: &Step<u32>) -> (u32, Option<Htl>) {
    match step {
        Step::Forward { to, msg } => (*to, msg.htl()),
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn client(outcome: ClientOutcome) -> Step<u32> {
    Step::Finished(Answer::Client { token: 5, outcome })
}

fn to_peer(keep: Option<Keep>, msg: Message) -> Step<u32> {
    Step::Finished(Answer::Peer { peer: 1, keep, msg })
}

fn carry_on(step: Step<u32>) -> OnReply<u32> {
    OnReply::Step {
        misbehaved: None,
        step,
    }
}

#[test]
fn next_hop_is_the_closest_neighbour_and_arms_the_timer() {
    // Key at 1000: 900 is 100 away, 5000 is 4000 away, MAX-50 is 1051
    // away round the wrap.
    let n = peers(&[(1, 5_000), (2, 900), (3, u64::MAX - 50)]);
    let mut s = get(Origin::Client(5), 10);
    let (uid, key, htl) = (7, key_at(1_000), 10);
    let msg = Message::DataRequest { uid, key, htl };
    assert_eq!(hop(&mut s, &n), Step::Forward { to: 2, msg });
    assert_eq!(s.waiting_on(), Some(&2));
    let timeout = RouterConfig::default().timeout_for(10);
    assert_eq!(s.deadline(), Some(NOW + timeout));
    // Then the wrap-around neighbour, then the far one.
    s.waiting = None;
    assert_eq!(forwarded(&hop(&mut s, &n)).0, 3);
    s.waiting = None;
    assert_eq!(forwarded(&hop(&mut s, &n)).0, 1);
}

#[test]
fn ties_go_to_the_lower_location_then_the_lower_peer() {
    // 900 and 1100 are both 100 from the key: the lower location wins,
    // although its peer ID is higher.
    let mut s = get(Origin::Client(5), 10);
    assert_eq!(
        forwarded(&hop(&mut s, &peers(&[(3, 1_100), (7, 900)]))).0,
        7
    );
    // Same location: the lower peer ID wins.
    let mut s = get(Origin::Client(5), 10);
    assert_eq!(forwarded(&hop(&mut s, &peers(&[(5, 900), (4, 900)]))).0, 4);
}

#[test]
fn the_upstream_peer_and_excluded_peers_are_never_candidates() {
    let n = peers(&[(1, 1_000), (2, 9_000), (3, 2_000)]);
    let mut s = get(Origin::Peer(1), 10);
    s.exclude(3);
    assert_eq!(forwarded(&hop(&mut s, &n)).0, 2);
}

#[test]
fn route_not_found_lowers_the_budget_and_backtracks() {
    let n = peers(&[(1, 1_000), (2, 1_300), (3, 2_000)]);
    let mut s = get(Origin::Client(5), 10);
    assert_eq!(forwarded(&hop(&mut s, &n)), (1, Some(10)));
    let r = reply(&mut s, &n, 1, Message::RouteNotFound { uid: 7, htl: 4 });
    let (misbehaved, step) = stepped(r);
    assert_eq!(misbehaved, None);
    assert_eq!(forwarded(&step), (2, Some(4)));
    // A larger figure never raises the budget.
    let r = reply(&mut s, &n, 2, Message::RouteNotFound { uid: 7, htl: 9 });
    let (_, step) = stepped(r);
    assert_eq!(forwarded(&step), (3, Some(4)));
}

#[test]
fn rejections_cost_one_hop_each() {
    let n = peers(&[(1, 1_000), (2, 1_300), (3, 2_000)]);
    let mut s = asked(&n, 10);
    let r = reply(&mut s, &n, 1, Message::RejectedLoop { uid: 7 });
    let (_, step) = stepped(r);
    assert_eq!(forwarded(&step), (2, Some(9)));
    let r = reply(&mut s, &n, 2, Message::RejectedOverload { uid: 7 });
    let (_, step) = stepped(r);
    assert_eq!(forwarded(&step), (3, Some(8)));
}

#[test]
fn a_spent_budget_ends_a_get_as_not_found() {
    let n = peers(&[(1, 1_000), (2, 1_300)]);
    let mut s = asked(&n, 1);
    let r = reply(&mut s, &n, 1, Message::RejectedLoop { uid: 7 });
    assert_eq!(
        r,
        carry_on(client(ClientOutcome::Failed(Failure::DataNotFound)))
    );
    let mut s = get(Origin::Peer(1), 0);
    assert_eq!(
        hop(&mut s, &n),
        to_peer(None, Message::DataNotFound { uid: 7 })
    );
}

#[test]
fn no_candidate_left_is_route_not_found_with_the_budget_left() {
    let n = peers(&[(1, 1_000)]);
    let mut s = get(Origin::Peer(1), 6);
    assert_eq!(
        hop(&mut s, &n),
        to_peer(None, Message::RouteNotFound { uid: 7, htl: 6 })
    );
    let mut s = get(Origin::Client(5), 6);
    assert_eq!(
        hop(&mut s, &Neighbours::default()),
        client(ClientOutcome::Failed(Failure::RouteNotFound))
    );
}

#[test]
fn giving_up_is_a_timeout_for_the_client_and_a_failure_upstream() {
    let timeout = client(ClientOutcome::Failed(Failure::Timeout));
    let end = |s: Search<u32>| Step::Finished(s.give_up());
    assert_eq!(end(get(Origin::Client(5), 3)), timeout);
    assert_eq!(end(put(Origin::Client(5), 3)), timeout);
    let not_found = Message::DataNotFound { uid: 7 };
    assert_eq!(end(get(Origin::Peer(1), 3)), to_peer(None, not_found));
    let failed = Message::InsertFailed { uid: 7 };
    assert_eq!(end(put(Origin::Peer(1), 3)), to_peer(None, failed));
}

#[test]
fn a_relaying_insert_sink_stores_the_block() {
    let keep = Some(Keep::Store(block()));
    let mut s = put(Origin::Peer(1), 0);
    let n = peers(&[(1, 0), (2, 0)]);
    assert_eq!(
        hop(&mut s, &n),
        to_peer(keep.clone(), Message::InsertSucceeded { uid: 7 })
    );
    let mut s = put(Origin::Peer(1), 5);
    assert_eq!(
        hop(&mut s, &peers(&[(1, 0)])),
        to_peer(keep, Message::RouteNotFound { uid: 7, htl: 5 })
    );
}

#[test]
fn an_insert_goes_out_under_its_blocks_key() {
    let mut s = put(Origin::Client(5), 4);
    let (uid, key, htl, block) = (7, block().routing_key(), 4, block());
    let msg = Message::InsertRequest {
        uid,
        key,
        htl,
        block,
    };
    assert_eq!(hop(&mut s, &peers(&[(2, 0)])), Step::Forward { to: 2, msg });
}

#[test]
fn a_local_insert_counts_once_a_peer_accepted_it() {
    let n = peers(&[(1, 0), (2, 0)]);
    // Nobody took it: no route is an overload, a spent budget not found.
    let mut s = put(Origin::Client(5), 3);
    assert_eq!(
        hop(&mut s, &Neighbours::default()),
        client(ClientOutcome::Failed(Failure::Overloaded))
    );
    let mut s = put(Origin::Client(5), 1);
    hop(&mut s, &n);
    let r = reply(&mut s, &n, 1, Message::RejectedOverload { uid: 7 });
    let failed = client(ClientOutcome::Failed(Failure::DataNotFound));
    assert_eq!(r, carry_on(failed));
    // Peer 1 accepted it and ran out of routes: inserted.
    let mut s = put(Origin::Client(5), 3);
    hop(&mut s, &n);
    let r = reply(&mut s, &n, 1, Message::RouteNotFound { uid: 7, htl: 2 });
    assert!(matches!(
        r,
        OnReply::Step {
            step: Step::Forward { to: 2, .. },
            ..
        }
    ));
    let r = reply(&mut s, &n, 2, Message::RouteNotFound { uid: 7, htl: 2 });
    assert_eq!(r, carry_on(client(ClientOutcome::Inserted)));
    // Acknowledged and refused inserts.
    let mut s = put(Origin::Client(5), 3);
    hop(&mut s, &n);
    let r = reply(&mut s, &n, 1, Message::InsertSucceeded { uid: 7 });
    assert_eq!(r, carry_on(client(ClientOutcome::Inserted)));
    let mut s = put(Origin::Client(5), 3);
    hop(&mut s, &n);
    let r = reply(&mut s, &n, 1, Message::InsertFailed { uid: 7 });
    let not_stored = client(ClientOutcome::Failed(Failure::NotStored));
    assert_eq!(r, carry_on(not_stored));
}

#[test]
fn a_found_block_is_verified_and_cached_only_by_relays() {
    let b = block();
    let key = b.routing_key();
    let n = peers(&[(1, 0), (2, 0), (3, 0)]);
    let relay = |s: &mut Search<u32>| hop(s, &n);
    // Wrong block: the sender misbehaved, the search carries on one hop poorer.
    let mut s = Search::new(7, Request::Get { key }, Origin::Peer(1), 5);
    relay(&mut s);
    let bad = Message::DataFound {
        uid: 7,
        block: Chk::encode(b"other").map(|(_, b)| b).unwrap(),
    };
    let r = reply(&mut s, &n, 2, bad);
    let (misbehaved, step) = stepped(r);
    assert_eq!(misbehaved, Some(Misbehaviour::BadBlock));
    assert_eq!(forwarded(&step), (3, Some(4)));
    // The right block: cached and passed up.
    let found = Message::DataFound {
        uid: 7,
        block: b.clone(),
    };
    let r = reply(&mut s, &n, 3, found.clone());
    assert_eq!(r, carry_on(to_peer(Some(Keep::Cache(b.clone())), found)));
    // At the originator: an answer, nothing cached.
    let mut s = Search::new(7, Request::Get { key }, Origin::Client(5), 5);
    relay(&mut s);
    let r = reply(
        &mut s,
        &n,
        1,
        Message::DataFound {
            uid: 7,
            block: b.clone(),
        },
    );
    assert_eq!(r, carry_on(client(ClientOutcome::Found(b))));
}

#[test]
fn replies_from_others_are_ignored_and_wrong_kinds_cost_a_hop() {
    let n = peers(&[(1, 1_000), (2, 1_300)]);
    let mut s = asked(&n, 10);
    let r = reply(&mut s, &n, 2, Message::DataNotFound { uid: 7 });
    assert_eq!(r, OnReply::Ignored);
    assert_eq!(s.waiting_on(), Some(&1));
    let r = reply(&mut s, &n, 1, Message::InsertSucceeded { uid: 7 });
    let (misbehaved, step) = stepped(r);
    assert_eq!(misbehaved, Some(Misbehaviour::WrongReply));
    assert_eq!(forwarded(&step), (2, Some(9)));
}

#[test]
fn a_free_hop_is_paid_back_on_retry_and_in_route_not_found() {
    let n = peers(&[(1, 1_000), (2, 1_300), (3, 2_000)]);
    // Kept 18 of the 18 it received: the first try goes out at 18 ...
    let mut s = get(Origin::Peer(1), 18);
    s.set_retry_cap(17);
    assert_eq!(forwarded(&hop(&mut s, &n)), (2, Some(18)));
    // ... a retry after RouteNotFound(18) goes out at 17, never 18.
    let r = reply(&mut s, &n, 2, Message::RouteNotFound { uid: 7, htl: 18 });
    assert_eq!(forwarded(&stepped(r).1), (3, Some(17)));
    // With no candidate left at all, the unspent budget it reports is capped.
    let mut s = get(Origin::Peer(1), 1);
    s.set_retry_cap(0);
    assert_eq!(
        hop(&mut s, &peers(&[(1, 0)])),
        to_peer(None, Message::RouteNotFound { uid: 7, htl: 0 })
    );
}

#[test]
fn a_search_told_not_to_cache_passes_the_block_up_uncached() {
    let b = block();
    let key = b.routing_key();
    let n = peers(&[(1, 0), (2, 0)]);
    let mut s = Search::new(7, Request::Get { key }, Origin::Peer(1), 5);
    s.set_may_cache(false);
    hop(&mut s, &n);
    let found = Message::DataFound { uid: 7, block: b };
    let r = reply(&mut s, &n, 2, found.clone());
    assert_eq!(r, carry_on(to_peer(None, found)));
}
