//! The swap protocol (`routing::swap::Swapper`) driven in-process on a
//! virtual clock: whole networks of routers and swappers exchanging the real
//! swap messages (encoded and decoded on every hop), and single nodes fed
//! malformed, unexpected and late messages.

use std::collections::VecDeque;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use veil::keys::{Block, Location, RoutingKey};
use veil::message::swap::{SwapMessage, WireOffer};
use veil::message::PeerFrame;
use veil::routing::swap::{
    offer_commitment, SwapAction, SwapConfig, SwapEvent, SwapOffer, Swapper,
};
use veil::routing::{BlockSource, Event, LinkCoins, Router, RouterConfig};
use veil::sim::graphs;
use veil::sim::model::Graph;
use veil::sim::swap::mean_link_length;

struct NoBlocks;
impl BlockSource for NoBlocks {
    fn lookup(&self, _: &RoutingKey) -> Option<Block> {
        None
    }
}

/// Latency of every link, virtual ms.
const LATENCY: u64 = 10;

struct Net {
    routers: Vec<Router<u32>>,
    swappers: Vec<Swapper<u32>>,
    adj: Vec<Vec<u32>>,
    /// (arrival, from, to, message), in arrival order.
    queue: VecDeque<(u64, u32, u32, SwapMessage)>,
    now: u64,
    rng: ChaCha8Rng,
    misbehaved: Vec<(u32, u32)>,
}

impl Net {
    fn new(graph: &Graph, config: &SwapConfig, seed: u64) -> Net {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = graph.nodes();
        let mut routers: Vec<Router<u32>> = (0..n)
            .map(|i| {
                Router::new(
                    RouterConfig::default(),
                    Location::from_f64(graph.location[i]),
                )
            })
            .collect();
        for (i, router) in routers.iter_mut().enumerate() {
            for &j in &graph.adj[i] {
                router.handle(
                    0,
                    &mut rng,
                    &NoBlocks,
                    Event::LinkUp {
                        peer: j,
                        location: Location::from_f64(graph.location[j as usize]),
                        coins: LinkCoins::default(),
                    },
                );
            }
        }
        let swappers = (0..n)
            .map(|_| Swapper::new(config.clone(), true, 0, &mut rng))
            .collect();
        Net {
            routers,
            swappers,
            adj: graph.adj.clone(),
            queue: VecDeque::new(),
            now: 0,
            rng,
            misbehaved: Vec::new(),
        }
    }

    fn feed(&mut self, node: u32, event: SwapEvent<u32>) {
        let i = node as usize;
        let actions = self.swappers[i].handle(self.now, &mut self.rng, &mut self.routers[i], event);
        for action in actions {
            match action {
                SwapAction::Send { to, msg } => {
                    // Every message crosses the wire encoding.
                    let bytes = PeerFrame::Swap(msg).encode();
                    let Ok(PeerFrame::Swap(msg)) = PeerFrame::decode(&bytes) else {
                        panic!("a swap frame did not decode");
                    };
                    self.queue.push_back((self.now + LATENCY, node, to, msg));
                }
                SwapAction::Misbehaved { peer, .. } => self.misbehaved.push((node, peer)),
                SwapAction::Swapped { .. } | SwapAction::NeighbourMoved { .. } => {}
            }
        }
    }

    /// Run until `until` (virtual ms): deliver messages, tick due nodes.
    fn run(&mut self, until: u64) {
        let mut steps = 0u64;
        while self.now < until {
            steps += 1;
            assert!(steps < 10_000_000, "the run does not end");
            while self.queue.front().is_some_and(|m| m.0 <= self.now) {
                let Some((_, from, to, msg)) = self.queue.pop_front() else {
                    break;
                };
                self.feed(to, SwapEvent::Message { from, msg });
            }
            for i in 0..self.swappers.len() {
                if self.swappers[i]
                    .next_deadline()
                    .is_some_and(|d| d <= self.now)
                {
                    self.feed(i as u32, SwapEvent::Tick);
                }
            }
            let next_message = self.queue.front().map(|m| m.0);
            let next_tick = self.swappers.iter().filter_map(|s| s.next_deadline()).min();
            let next = [next_message, next_tick]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            self.now = next.max(self.now + 1).min(until);
        }
    }

    fn locations(&self) -> Vec<f64> {
        self.routers.iter().map(|r| r.location().as_f64()).collect()
    }

    fn graph(&self) -> Graph {
        Graph {
            adj: self.adj.clone(),
            location: self.locations(),
        }
    }

    /// Every router's view of its neighbours matches where they are.
    fn views_agree(&self) -> bool {
        self.routers.iter().all(|r| {
            r.neighbours()
                .all(|(&j, &l)| self.routers[j as usize].location() == l)
        })
    }
}

fn fast() -> SwapConfig {
    SwapConfig {
        interval_ms: 1_000,
        walk_htl: 10,
        step_timeout_ms: 500,
        max_relays: 64,
        paused: false,
        ..SwapConfig::default()
    }
}

#[test]
fn swapping_shortens_links_and_keeps_every_view_and_location() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let graph = graphs::swap_start(128, 6, &mut rng);
    let before = mean_link_length(&graph);
    let mut net = Net::new(&graph, &fast(), 1);
    net.run(150_000);
    let after = mean_link_length(&net.graph());
    let swaps: u64 = net.swappers.iter().map(|s| s.stats().swaps).sum();
    let attempts: u64 = net.swappers.iter().map(|s| s.stats().attempts).sum();
    eprintln!("mean link length {before:.4} -> {after:.4}; {swaps} swaps in {attempts} attempts");
    assert!(attempts > 10_000, "{attempts} attempts");
    assert!(swaps > 500, "{swaps} swaps");
    assert!(after < 0.6 * before, "{before} -> {after}");
    // Let the last attempts finish, starting no more.
    for s in &mut net.swappers {
        s.set_paused(true);
    }
    net.run(200_000);
    // Swaps exchange locations: the multiset is the same.
    let mut start: Vec<u64> = graph
        .location
        .iter()
        .map(|&x| Location::from_f64(x).0)
        .collect();
    let mut end: Vec<u64> = net.routers.iter().map(|r| r.location().0).collect();
    start.sort_unstable();
    end.sort_unstable();
    assert_eq!(start, end);
    // Every LocationChanged arrived: every neighbour table is current.
    assert!(net.views_agree());
    assert!(net.misbehaved.is_empty());
}

#[test]
fn the_same_seed_gives_the_same_swaps() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let graph = graphs::swap_start(48, 4, &mut rng);
    let run = |seed| {
        let mut net = Net::new(&graph, &fast(), seed);
        net.run(30_000);
        net.locations()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

/// Two linked nodes and one more neighbour of each.
fn square() -> Graph {
    Graph {
        adj: vec![vec![1, 2], vec![0, 3], vec![0], vec![1]],
        location: vec![0.1, 0.9, 0.85, 0.15],
    }
}

#[test]
fn two_neighbours_that_gain_swap_and_everyone_follows() {
    // 0 at 0.1 has a friend at 0.85; 1 at 0.9 has a friend at 0.15.
    // Exchanging puts both next to their friends: D2 < D1, always swap.
    let config = SwapConfig {
        walk_htl: 1,
        ..fast()
    };
    let mut net = Net::new(&square(), &config, 2);
    for s in [1, 2, 3] {
        net.swappers[s].set_paused(true);
    }
    let mut swapped = false;
    for _ in 0..50 {
        let t = net.now + 1_000;
        net.run(t);
        if net.routers[0].location() == Location::from_f64(0.9) {
            swapped = true;
            break;
        }
    }
    assert!(swapped, "node 0 never swapped with node 1");
    net.swappers[0].set_paused(true);
    let t = net.now + 10_000;
    net.run(t);
    assert!(net.views_agree());
    // Each swap is counted at both of its ends.
    let swaps: u64 = net.swappers.iter().map(|s| s.stats().swaps).sum();
    assert!(swaps >= 2 && swaps.is_multiple_of(2), "{swaps}");
    let mut end = net.locations();
    end.sort_by(f64::total_cmp);
    assert_eq!(end, vec![0.1, 0.15, 0.85, 0.9]);
}

/// One node with neighbours 1 and 2, fed messages by hand.
fn lone(active: bool) -> (Router<u32>, Swapper<u32>, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut router = Router::new(RouterConfig::default(), Location::from_f64(0.5));
    for (peer, at) in [(1u32, 0.2), (2, 0.7)] {
        router.handle(
            0,
            &mut rng,
            &NoBlocks,
            Event::LinkUp {
                peer,
                location: Location::from_f64(at),
                coins: LinkCoins::default(),
            },
        );
    }
    // Walks arrive below the maximum (5) with htl 1: they end here.
    let config = SwapConfig {
        walk_htl: 5,
        paused: true,
        ..fast()
    };
    (router, Swapper::new(config, active, 0, &mut rng), rng)
}

fn sent(actions: &[SwapAction<u32>]) -> Vec<(u32, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            SwapAction::Send { to, msg } => Some((*to, msg.kind())),
            _ => None,
        })
        .collect()
}

#[test]
fn malformed_unexpected_and_late_messages_are_refused() {
    let (mut router, mut swapper, mut rng) = lone(true);
    let msg = |from, msg| SwapEvent::Message { from, msg };
    // Hops-to-live zero breaks the protocol.
    let zero = SwapMessage::SwapRequest {
        uid: 1,
        htl: 0,
        commit: [0; 32],
    };
    let out = swapper.handle(0, &mut rng, &mut router, msg(1, zero));
    assert!(matches!(out[..], [SwapAction::Misbehaved { peer: 1, .. }]));
    // Replies, reveals and completions for walks this node never saw, and
    // anything from a node that is not a neighbour: ignored.
    let offer = WireOffer {
        location: 1,
        neighbours: vec![2],
    };
    for m in [
        SwapMessage::SwapReply {
            uid: 5,
            nonce: [1; 32],
            offer: offer.clone(),
        },
        SwapMessage::SwapCommit {
            uid: 5,
            nonce: [1; 32],
            offer: offer.clone(),
        },
        SwapMessage::SwapComplete { uid: 5 },
        SwapMessage::SwapRejected { uid: 5 },
    ] {
        assert!(swapper
            .handle(0, &mut rng, &mut router, msg(1, m))
            .is_empty());
    }
    let stranger = SwapMessage::LocationChanged { location: 7 };
    assert!(swapper
        .handle(0, &mut rng, &mut router, msg(9, stranger))
        .is_empty());

    // A walk ending here: the node answers with its nonce and offer...
    let nonce = [4u8; 32];
    let theirs = SwapOffer::new(Location(1), vec![Location(2)]).unwrap();
    let request = SwapMessage::SwapRequest {
        uid: 6,
        htl: 1,
        commit: offer_commitment(&nonce, &theirs),
    };
    let out = swapper.handle(0, &mut rng, &mut router, msg(2, request.clone()));
    assert_eq!(sent(&out), vec![(2, "SwapReply")]);
    // ... refuses a second walk while busy, and the same uid again ...
    let other = SwapMessage::SwapRequest {
        uid: 8,
        htl: 1,
        commit: [0; 32],
    };
    let out = swapper.handle(0, &mut rng, &mut router, msg(1, other));
    assert_eq!(sent(&out), vec![(1, "SwapRejected")]);
    let out = swapper.handle(0, &mut rng, &mut router, msg(1, request));
    assert_eq!(sent(&out), vec![(1, "SwapRejected")]);
    // ... ignores the reveal from the wrong neighbour, and refuses a reveal
    // that does not match the commitment (a nonce or an offer other than
    // the committed ones): no swap.
    let reveal = |nonce| SwapMessage::SwapCommit {
        uid: 6,
        nonce,
        offer: offer.clone(),
    };
    assert!(swapper
        .handle(0, &mut rng, &mut router, msg(1, reveal(nonce)))
        .is_empty());
    let out = swapper.handle(0, &mut rng, &mut router, msg(2, reveal([5; 32])));
    assert_eq!(sent(&out), vec![(2, "SwapRejected")]);
    let request = SwapMessage::SwapRequest {
        uid: 7,
        htl: 1,
        commit: offer_commitment(&nonce, &theirs),
    };
    let out = swapper.handle(0, &mut rng, &mut router, msg(2, request));
    assert_eq!(sent(&out), vec![(2, "SwapReply")]);
    let shaped = SwapMessage::SwapCommit {
        uid: 7,
        nonce,
        offer: WireOffer {
            location: 1,
            neighbours: vec![3],
        },
    };
    let out = swapper.handle(0, &mut rng, &mut router, msg(2, shaped));
    assert_eq!(sent(&out), vec![(2, "SwapRejected")]);
    assert_eq!(router.location(), Location::from_f64(0.5));
    assert_eq!(swapper.stats().swaps, 0);
}

#[test]
fn every_step_times_out() {
    let (mut router, mut swapper, mut rng) = lone(true);
    // A walk arriving with htl 3 (below the maximum, 5) is relayed.
    let request = |uid| SwapEvent::Message {
        from: 1,
        msg: SwapMessage::SwapRequest {
            uid,
            htl: 3,
            commit: [0; 32],
        },
    };
    let out = swapper.handle(0, &mut rng, &mut router, request(11));
    assert_eq!(sent(&out), vec![(2, "SwapRequest")]);
    assert_eq!(swapper.relay_count(), 1);
    let deadline = swapper.next_deadline().unwrap();
    assert!(swapper
        .handle(deadline - 1, &mut rng, &mut router, SwapEvent::Tick)
        .iter()
        .all(|a| !matches!(
            a,
            SwapAction::Send {
                msg: SwapMessage::SwapRejected { .. },
                ..
            }
        )));
    let out = swapper.handle(deadline, &mut rng, &mut router, SwapEvent::Tick);
    let rejected: Vec<_> = sent(&out)
        .into_iter()
        .filter(|(_, k)| *k == "SwapRejected")
        .collect();
    assert_eq!(rejected, vec![(1, "SwapRejected"), (2, "SwapRejected")]);
    assert_eq!(swapper.relay_count(), 0);
    assert_eq!(swapper.stats().timed_out, 1);

    // An own attempt whose walk never answers ends at its deadline.
    swapper.set_paused(false);
    let mut now = deadline;
    let mut started = false;
    for _ in 0..100 {
        now = swapper.next_deadline().unwrap().max(now);
        let out = swapper.handle(now, &mut rng, &mut router, SwapEvent::Tick);
        if sent(&out).iter().any(|(_, k)| *k == "SwapRequest") {
            started = true;
            break;
        }
    }
    assert!(started);
    swapper.set_paused(true);
    let end = swapper.next_deadline().unwrap();
    let out = swapper.handle(end, &mut rng, &mut router, SwapEvent::Tick);
    assert_eq!(sent(&out).len(), 1, "{out:?}");
    assert_eq!(swapper.stats().timed_out, 2);
    assert_eq!(swapper.next_deadline(), None);
}

#[test]
fn a_node_that_does_not_swap_refuses_walks_but_follows_its_neighbours() {
    let (mut router, mut swapper, mut rng) = lone(false);
    let request = SwapEvent::Message {
        from: 1,
        msg: SwapMessage::SwapRequest {
            uid: 3,
            htl: 1,
            commit: [0; 32],
        },
    };
    let out = swapper.handle(0, &mut rng, &mut router, request);
    assert_eq!(sent(&out), vec![(1, "SwapRejected")]);
    let moved = SwapEvent::Message {
        from: 2,
        msg: SwapMessage::LocationChanged {
            location: Location::from_f64(0.3).0,
        },
    };
    swapper.handle(0, &mut rng, &mut router, moved);
    let view: Vec<_> = router.neighbours().map(|(p, l)| (*p, *l)).collect();
    assert_eq!(
        view,
        vec![(1, Location::from_f64(0.2)), (2, Location::from_f64(0.3))]
    );
    assert_eq!(swapper.next_deadline(), None);
    let _ = rng.next_u64();
}

#[test]
fn a_neighbour_gets_a_limited_number_of_walks_per_interval() {
    let (mut router, mut swapper, mut rng) = lone(true);
    let limit = SwapConfig::default().walks_per_peer;
    // Walks below the maximum htl are relayed to the other neighbour,
    // until neighbour 1 has used its share of this interval.
    let walk = |uid| SwapEvent::Message {
        from: 1,
        msg: SwapMessage::SwapRequest {
            uid,
            htl: 3,
            commit: [0; 32],
        },
    };
    for uid in 0..u64::from(limit) {
        let out = swapper.handle(10, &mut rng, &mut router, walk(uid));
        assert_eq!(sent(&out), vec![(2, "SwapRequest")], "walk {uid}");
    }
    let out = swapper.handle(10, &mut rng, &mut router, walk(99));
    assert_eq!(sent(&out), vec![(1, "SwapRejected")]);
    assert_eq!(swapper.stats().limited, 1);
    // The other neighbour still has its own; the next interval a new one.
    let from2 = SwapEvent::Message {
        from: 2,
        msg: SwapMessage::SwapRequest {
            uid: 100,
            htl: 3,
            commit: [0; 32],
        },
    };
    let out = swapper.handle(10, &mut rng, &mut router, from2);
    assert_eq!(sent(&out), vec![(1, "SwapRequest")]);
    let next = 10 + fast().interval_ms;
    let out = swapper.handle(next, &mut rng, &mut router, walk(101));
    assert_eq!(sent(&out), vec![(2, "SwapRequest")]);
}
