//! Properties of the routing core on random connected graphs, driven through
//! the deterministic harness: one answer per request, replies only to the
//! asking peer, the HTL bounds the number of requests, trees are searched
//! completely, messages only cross edges, runs are reproducible, and inserts
//! obey the same bounds. Plus a put-then-get success rate on random graphs.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use veil::keys::{Block, Chk, Location};
use veil::message::{Htl, Message, Uid};
use veil::routing::{ClientOutcome, ClientToken, Failure, InsertEnd, Op, RouterConfig};
use veil::sim::harness::Harness;
use veil::sim::topology::{generate, NodeSpec, Shape, Topology};

/// Far more than any run here needs; a run that hits it is a failure.
const MAX_STEPS: usize = 200_000;

/// A connected graph: a random spanning tree over a shuffled node order, plus
/// `extra` random edges (duplicates and self-loops are dropped).
fn random_graph(n: usize, extra: usize, rng: &mut ChaCha8Rng) -> Topology {
    let nodes: Vec<NodeSpec> = (0..n)
        .map(|i| NodeSpec {
            name: format!("n{i}"),
            location: Location(rng.gen()),
        })
        .collect();
    let mut edges = BTreeSet::new();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    for i in 1..n {
        let parent = order[rng.gen_range(0..i)];
        let child = order[i];
        edges.insert((parent.min(child), parent.max(child)));
    }
    for _ in 0..extra {
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    let t = Topology {
        nodes,
        edges: edges.into_iter().collect(),
        scenario: None,
    };
    assert!(t.is_connected());
    t
}

fn make_block(tag: &str, seed: u64, i: usize) -> (Chk, Block) {
    Chk::encode(format!("routing props {tag} {seed} {i}").as_bytes()).unwrap()
}

/// One client request made in a run, and what the test knows about it.
#[derive(Debug)]
struct Req {
    token: ClientToken,
    op: Op,
    key: veil::keys::RoutingKey,
    /// Nodes that held the block before the run started (gets only).
    holders: Vec<usize>,
    requester: usize,
}

struct Run {
    harness: Harness,
    reqs: Vec<Req>,
    htl: Htl,
}

/// Draw a graph, place blocks, start `requests` concurrent requests (gets,
/// and inserts when `with_puts`), and run to quiescence.
fn scenario(
    n: usize,
    extra: usize,
    config: RouterConfig,
    requests: usize,
    with_puts: bool,
    seed: u64,
) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let topology = random_graph(n, extra, &mut rng);
    let htl = config.max_htl;
    let mut harness = Harness::new(&topology, config, seed);
    let mut reqs = Vec::new();
    for i in 0..requests {
        let (chk, block) = make_block("req", seed, i);
        let requester = rng.gen_range(0..n);
        if with_puts && rng.gen_bool(0.5) {
            let token = harness.put(requester, block.clone());
            reqs.push(Req {
                token,
                op: Op::Put,
                key: chk.routing,
                holders: Vec::new(),
                requester,
            });
        } else {
            // Zero to three holders, anywhere (possibly the requester).
            let holders: Vec<usize> = (0..rng.gen_range(0..=3))
                .map(|_| rng.gen_range(0..n))
                .collect();
            for &h in &holders {
                harness.place(h, block.clone());
            }
            let token = harness.get(requester, chk.routing);
            reqs.push(Req {
                token,
                op: Op::Get,
                key: chk.routing,
                holders,
                requester,
            });
        }
    }
    let steps = harness.run(MAX_STEPS);
    assert!(steps < MAX_STEPS, "run did not settle");
    Run { harness, reqs, htl }
}

fn with_htl(htl: Htl) -> RouterConfig {
    RouterConfig {
        max_htl: htl,
        ..RouterConfig::default()
    }
}

fn uid_of(h: &Harness, token: ClientToken) -> Option<Uid> {
    h.clients[&token].uid
}

/// Property 1: exactly one answer per request.
fn check_one_answer(run: &Run) -> Result<(), TestCaseError> {
    for r in &run.reqs {
        let c = &run.harness.clients[&r.token];
        prop_assert_eq!(c.outcomes.len(), 1, "request {:?}: {:?}", r, c.outcomes);
        prop_assert_eq!(c.node, r.requester);
    }
    Ok(())
}

/// Property 2: replies only go to the peer the request came from, and every
/// request is answered.
fn check_replies_follow_requests(h: &Harness) -> Result<(), TestCaseError> {
    // (requester, node, uid) -> how many such requests are open.
    let mut open: HashMap<(usize, usize, Uid), usize> = HashMap::new();
    for (i, s) in h.sent.iter().enumerate() {
        let uid = s.msg.uid();
        if s.msg.is_request() {
            *open.entry((s.from, s.to, uid)).or_insert(0) += 1;
        } else {
            let slot = open.get_mut(&(s.to, s.from, uid));
            match slot {
                Some(n) if *n > 0 => *n -= 1,
                _ => prop_assert!(
                    false,
                    "message {} ({} {} -> {}) answers no open request",
                    i,
                    s.msg.kind(),
                    s.from,
                    s.to
                ),
            }
        }
    }
    let left: Vec<_> = open.iter().filter(|(_, &n)| n > 0).collect();
    prop_assert!(left.is_empty(), "unanswered requests: {:?}", left);
    Ok(())
}

/// Property 3 (and 7): requests of one uid never outnumber its HTL.
fn check_htl_bounds(run: &Run) -> Result<(), TestCaseError> {
    let mut per_uid: HashMap<Uid, (usize, usize)> = HashMap::new();
    for s in &run.harness.sent {
        let e = per_uid.entry(s.msg.uid()).or_insert((0, 0));
        match s.msg {
            Message::DataRequest { .. } => e.0 += 1,
            Message::InsertRequest { .. } => e.1 += 1,
            _ => {}
        }
    }
    for r in &run.reqs {
        let Some(uid) = uid_of(&run.harness, r.token) else {
            // Never routed: answered from the local store, or refused at
            // once because the node was full.
            let outcome = run.harness.outcome(r.token);
            prop_assert!(
                matches!(
                    (r.op, outcome),
                    (Op::Get, Some(ClientOutcome::Found(_)))
                        | (_, Some(ClientOutcome::Failed(Failure::Overloaded)))
                ),
                "unrouted {:?}: {:?}",
                r.op,
                outcome
            );
            continue;
        };
        let (gets, puts) = per_uid.get(&uid).copied().unwrap_or((0, 0));
        let (mine, other) = match r.op {
            Op::Get => (gets, puts),
            Op::Put => (puts, gets),
        };
        prop_assert!(
            mine <= usize::from(run.htl),
            "{:?} uid {} sent {} requests with htl {}",
            r.op,
            uid,
            mine,
            run.htl
        );
        prop_assert_eq!(other, 0, "a {:?} uid carried the other kind", r.op);
        prop_assert!(mine >= 1, "a routed request sends at least one message");
    }
    Ok(())
}

/// Property 5: messages only cross edges.
fn check_neighbours_only(h: &Harness) -> Result<(), TestCaseError> {
    for s in &h.sent {
        prop_assert!(
            h.adjacency[s.from].contains(&s.to),
            "{} -> {} is not an edge",
            s.from,
            s.to
        );
    }
    Ok(())
}

fn check_all(run: &Run) -> Result<(), TestCaseError> {
    check_htl_bounds(run)?;
    check_all_but_the_bound(run)
}

/// Every property but the HTL bound on messages, which the progress rule
/// changes (`docs/protocol.md`, "The progress rule").
fn check_all_but_the_bound(run: &Run) -> Result<(), TestCaseError> {
    check_one_answer(run)?;
    check_replies_follow_requests(&run.harness)?;
    check_neighbours_only(&run.harness)?;
    // Honest nodes never report each other.
    prop_assert!(
        run.harness.misbehaviour.is_empty(),
        "{:?}",
        run.harness.misbehaviour
    );
    // Gets whose requester holds the block are answered without a message;
    // a Found answer always verifies.
    for r in &run.reqs {
        if let Some(ClientOutcome::Found(b)) = run.harness.outcome(r.token) {
            prop_assert_eq!(r.op, Op::Get);
            prop_assert!(b.verify(&r.key).is_ok(), "found the wrong block");
        }
        if r.op == Op::Get && r.holders.contains(&r.requester) {
            prop_assert!(matches!(
                run.harness.outcome(r.token),
                Some(ClientOutcome::Found(_))
            ));
            prop_assert_eq!(uid_of(&run.harness, r.token), None);
        }
    }
    // Everything finished: no router still holds state for a request.
    for n in 0..run.harness.len() {
        prop_assert_eq!(run.harness.router(n).pending_count(), 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Regression files would land outside the files this suite owns.
        failure_persistence: None,
        ..ProptestConfig::with_cases(128)
    })]

    /// Properties 1, 2, 3 and 5 for concurrent gets on random graphs.
    #[test]
    fn gets_on_random_graphs(
        n in 5usize..=200,
        extra_per_node in 0usize..=3,
        htl in 1u8..=25,
        requests in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let run = scenario(n, n * extra_per_node / 2, with_htl(htl), requests, false, seed);
        check_all(&run)?;
    }

    /// Under the progress rule every search still ends (the run settles),
    /// with one answer each, replies only for requests, messages only to
    /// neighbours, nothing left pending.
    #[test]
    fn the_progress_rule_ends_every_search(
        n in 5usize..=200,
        extra_per_node in 0usize..=3,
        htl in 1u8..=25,
        requests in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let config = RouterConfig {
            htl_rule: veil::routing::HtlRule::Progress,
            ..with_htl(htl)
        };
        let run = scenario(n, n * extra_per_node / 2, config, requests, true, seed);
        check_all_but_the_bound(&run)?;
    }

    /// Property 7 (and 1, 2, 5) with inserts and gets mixed.
    #[test]
    fn inserts_and_gets_on_random_graphs(
        n in 5usize..=200,
        extra_per_node in 0usize..=3,
        htl in 1u8..=25,
        requests in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let run = scenario(n, n * extra_per_node / 2, with_htl(htl), requests, true, seed);
        check_all(&run)?;
        for r in run.reqs.iter().filter(|r| r.op == Op::Put) {
            // In a healthy network an insert with budget always lands
            // somewhere: the last node it reaches stores it.
            let outcome = run.harness.outcome(r.token).unwrap();
            prop_assert_eq!(outcome, &ClientOutcome::Inserted);
        }
    }

    /// Property 4: on a tree with HTL >= node count, a held block is found.
    #[test]
    fn trees_are_searched_completely(
        n in 5usize..=200,
        slack in 0u8..=30,
        requests in 1usize..=4,
        seed in any::<u64>(),
    ) {
        let htl = (n as u8).saturating_add(slack);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7eee);
        let topology = random_graph(n, 0, &mut rng);
        prop_assert_eq!(topology.edges.len(), n - 1);
        let config = RouterConfig { max_htl: htl, ..RouterConfig::default() };
        let mut harness = Harness::new(&topology, config, seed);
        let mut tokens = Vec::new();
        for i in 0..requests {
            let (chk, block) = make_block("tree", seed, i);
            let holder = rng.gen_range(0..n);
            harness.place(holder, block);
            let requester = rng.gen_range(0..n);
            tokens.push(harness.get(requester, chk.routing));
        }
        prop_assert!(harness.run(MAX_STEPS) < MAX_STEPS);
        for t in tokens {
            prop_assert_eq!(harness.clients[&t].outcomes.len(), 1);
            prop_assert!(
                matches!(harness.outcome(t), Some(ClientOutcome::Found(_))),
                "not found on a tree: {:?}", harness.outcome(t)
            );
        }
        // A tree search never loops: the upstream is always excluded.
        let loops = harness
            .sent
            .iter()
            .filter(|s| matches!(s.msg, Message::RejectedLoop { .. }))
            .count();
        prop_assert_eq!(loops, 0);
        check_replies_follow_requests(&harness)?;
        check_neighbours_only(&harness)?;
    }

    /// Property 6: the same seed gives the same run.
    #[test]
    fn same_seed_same_run(
        n in 5usize..=120,
        extra_per_node in 0usize..=3,
        htl in 1u8..=25,
        requests in 1usize..=5,
        seed in any::<u64>(),
    ) {
        let a = scenario(n, n * extra_per_node / 2, with_htl(htl), requests, true, seed);
        let b = scenario(n, n * extra_per_node / 2, with_htl(htl), requests, true, seed);
        prop_assert_eq!(&a.harness.sent, &b.harness.sent);
        prop_assert_eq!(a.harness.now(), b.harness.now());
        for (ra, rb) in a.reqs.iter().zip(&b.reqs) {
            prop_assert_eq!(&a.harness.clients[&ra.token], &b.harness.clients[&rb.token]);
        }
    }

    /// Properties 1, 2, 3 and 5 still hold under pressure: tiny per-peer and
    /// global limits (so `RejectedOverload` happens) and timeouts short
    /// enough to fire while honest peers are still searching (so late
    /// replies arrive for forgotten uids).
    #[test]
    fn properties_hold_under_overload_and_timeouts(
        n in 5usize..=80,
        extra_per_node in 0usize..=3,
        htl in 1u8..=25,
        requests in 1usize..=12,
        max_inflight_per_peer in 1usize..=3,
        max_pending in 1usize..=6,
        timeout_base_ms in 0u64..=80,
        timeout_per_hop_ms in 0u64..=10,
        seed in any::<u64>(),
    ) {
        let config = RouterConfig {
            max_htl: htl,
            timeout_base_ms,
            timeout_per_hop_ms,
            max_inflight_per_peer,
            max_pending,
            replicate_htl: 2,
            tunnel: Default::default(),
            lookahead: Default::default(),
            htl_rule: Default::default(),
            insert_end: Default::default(),
        };
        let run = scenario(n, n * extra_per_node / 2, config, requests, true, seed);
        check_all(&run)?;
    }
}

/// A lower HTL must actually bite: on a long path with the block at the far
/// end, the search stops after exactly `htl` requests.
#[test]
fn htl_bounds_a_path_search_exactly() {
    let n = 30;
    let topology = Topology {
        nodes: (0..n)
            .map(|i| NodeSpec {
                name: format!("p{i}"),
                location: Location::from_f64(i as f64 / n as f64),
            })
            .collect(),
        edges: (0..n - 1).map(|i| (i, i + 1)).collect(),
        scenario: None,
    };
    let (chk, block) = make_block("path", 0, 0);
    for htl in [1u8, 5, 10, 29] {
        let config = RouterConfig {
            max_htl: htl,
            ..RouterConfig::default()
        };
        let mut h = Harness::new(&topology, config, 3);
        h.place(n - 1, block.clone());
        let t = h.get(0, chk.routing);
        h.run(MAX_STEPS);
        let requests = h.sent.iter().filter(|s| s.msg.is_request()).count();
        if usize::from(htl) >= n - 1 {
            assert!(matches!(h.outcome(t), Some(ClientOutcome::Found(_))));
            assert_eq!(requests, n - 1);
        } else {
            assert_eq!(
                h.outcome(t),
                Some(&ClientOutcome::Failed(Failure::DataNotFound))
            );
            assert_eq!(requests, usize::from(htl), "htl {htl}");
        }
    }
}

/// Put from one random node, get from another, on 200 random 50-node graphs
/// of mean degree 4 with the default HTL.
#[test]
fn put_then_get_succeeds_at_least_90_percent() {
    let trials = 200u64;
    let mut found = 0u64;
    let mut inserted = 0u64;
    for seed in 0..trials {
        let topology = generate(50, 4, Shape::Random, seed).unwrap();
        let mut h = Harness::new(&topology, RouterConfig::default(), seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (chk, block) = make_block("put-get", seed, 0);
        let a = rng.gen_range(0..50);
        let b = loop {
            let b = rng.gen_range(0..50);
            if b != a {
                break b;
            }
        };
        let put = h.put(a, block);
        assert!(h.run(MAX_STEPS) < MAX_STEPS);
        assert_eq!(h.clients[&put].outcomes.len(), 1);
        if h.outcome(put) == Some(&ClientOutcome::Inserted) {
            inserted += 1;
        }
        let get = h.get(b, chk.routing);
        assert!(h.run(MAX_STEPS) < MAX_STEPS);
        assert_eq!(h.clients[&get].outcomes.len(), 1);
        if matches!(h.outcome(get), Some(ClientOutcome::Found(_))) {
            found += 1;
        }
    }
    let rate = found as f64 / trials as f64;
    println!(
        "put-then-get: found {found}/{trials} = {:.1} % (inserts acknowledged: {inserted}/{trials})",
        rate * 100.0
    );
    assert!(rate >= 0.90, "put-then-get rate {rate}");
}

/// A tiny hand-driven network for what the harness cannot do: drop a link in
/// the middle of a search. FIFO delivery, no clock (no timeouts fire).
struct LinkNet {
    routers: Vec<veil::routing::Router<usize>>,
    stores: Vec<veil::sim::harness::MemStore>,
    links: BTreeSet<(usize, usize)>,
    queue: std::collections::VecDeque<(usize, usize, Message)>,
    /// Every Send action, delivered or not: (from, to, message).
    log: Vec<(usize, usize, Message)>,
    outcomes: Vec<ClientOutcome>,
    rng: ChaCha8Rng,
}

impl LinkNet {
    fn new(locations: &[f64], edges: &[(usize, usize)], htl: Htl) -> LinkNet {
        let config = with_htl(htl);
        let mut net = LinkNet {
            routers: locations
                .iter()
                .map(|&l| veil::routing::Router::new(config.clone(), Location::from_f64(l)))
                .collect(),
            stores: vec![Default::default(); locations.len()],
            links: BTreeSet::new(),
            queue: Default::default(),
            log: Vec::new(),
            outcomes: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(5),
        };
        for &(a, b) in edges {
            net.links.insert((a.min(b), a.max(b)));
            for (x, y) in [(a, b), (b, a)] {
                let location = Location::from_f64(locations[y]);
                let coins = veil::routing::LinkCoins::default();
                net.feed(
                    x,
                    veil::routing::Event::LinkUp {
                        peer: y,
                        location,
                        coins,
                    },
                );
            }
        }
        net
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn feed(&mut self, node: usize, event: veil::routing::Event<usize>) {
        let actions = self.routers[node].handle(0, &mut self.rng, &self.stores[node], event);
        for action in actions {
            match action {
                veil::routing::Action::Send { to, msg } => {
                    self.log.push((node, to, msg.clone()));
                    if self.linked(node, to) {
                        self.queue.push_back((node, to, msg));
                    }
                }
                veil::routing::Action::ClientDone { outcome, .. } => self.outcomes.push(outcome),
                _ => {}
            }
        }
    }

    fn step(&mut self) -> bool {
        let Some((from, to, msg)) = self.queue.pop_front() else {
            return false;
        };
        self.feed(to, veil::routing::Event::Message { from, msg });
        true
    }

    fn link_down(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        self.queue
            .retain(|(f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
        self.feed(a, veil::routing::Event::LinkDown { peer: b });
        self.feed(b, veil::routing::Event::LinkDown { peer: a });
    }

    fn data_requests(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::DataRequest { .. }))
            .count()
    }
}

/// R (0) asks for a key at 0.5 that nobody holds. Its neighbours are X (1,
/// at 0.5, tried first) and Y (2, at 0.45); behind each hangs a chain of ten
/// nodes. The link R-X drops after X's chain has spent part of the budget.
fn two_chains() -> (Vec<f64>, Vec<(usize, usize)>) {
    let mut locations = vec![0.0, 0.5, 0.45];
    let mut edges = vec![(0, 1), (0, 2)];
    for head in [1usize, 2] {
        let mut prev = head;
        for _ in 0..10 {
            let next = locations.len();
            locations.push(0.9);
            edges.push((prev, next));
            prev = next;
        }
    }
    (locations, edges)
}

/// Regression: a dropped link to the peer a request waits on must end the
/// search (as a timeout does), because the subtree behind that peer may have
/// spent most of the budget and keeps running; continuing would let one
/// request cause more `DataRequest`s than its HTL.
#[test]
fn link_loss_keeps_the_htl_bound() {
    let htl = 10;
    let (locations, edges) = two_chains();
    let mut net = LinkNet::new(&locations, &edges, htl);
    let (chk, _) = veil::sim::harness::block_near(Location::from_f64(0.5), 0.001);
    net.feed(
        0,
        veil::routing::Event::ClientGet {
            token: 1,
            key: chk.routing,
        },
    );
    assert_eq!((net.queue[0].0, net.queue[0].1), (0, 1), "R asks X first");
    while net.data_requests() < 5 {
        assert!(net.step());
    }
    net.link_down(0, 1);
    let mut steps = 0;
    while net.step() {
        steps += 1;
        assert!(steps < 10_000);
    }
    assert_eq!(net.outcomes.len(), 1);
    assert!(
        net.data_requests() <= usize::from(htl),
        "one request with htl {htl} caused {} DataRequests",
        net.data_requests()
    );
}

/// Regression: when the link to a request's *upstream* peer drops, the
/// node must not later emit `Action::Send` to that peer, which is no longer
/// a neighbour (`Action::Send` is documented as "to a connected neighbour").
#[test]
fn nothing_is_sent_to_a_departed_upstream_peer() {
    let (locations, edges) = two_chains();
    let mut net = LinkNet::new(&locations, &edges, 10);
    let (chk, _) = veil::sim::harness::block_near(Location::from_f64(0.5), 0.001);
    net.feed(
        0,
        veil::routing::Event::ClientGet {
            token: 1,
            key: chk.routing,
        },
    );
    assert_eq!((net.queue[0].0, net.queue[0].1), (0, 1), "R asks X first");
    while net.data_requests() < 4 {
        assert!(net.step());
    }
    let dropped_at = net.log.len();
    net.link_down(0, 1);
    let mut steps = 0;
    while net.step() {
        steps += 1;
        assert!(steps < 10_000);
    }
    let stray: Vec<_> = net.log[dropped_at..]
        .iter()
        .filter(|(f, t, _)| !net.linked(*f, *t))
        .map(|(f, t, m)| (*f, *t, m.kind()))
        .collect();
    assert!(stray.is_empty(), "sent over a dropped link: {stray:?}");
    // X (1) should have given up the request it can no longer answer.
    assert_eq!(net.routers[1].pending_count(), 0);
}

/// Rule 8 (`insert_end = "sink"`) on the README's 32-node small world: an
/// insert stores at its sink (the node closer to the key than all its
/// neighbours), goes on for at most `replicate_htl` hops, and ends at its
/// first loop. So the network is not walked end to end (under `"walk"`,
/// 5.5 loops per insert here), every sink keeps a durable copy, and every
/// block is still found from anywhere.
#[test]
fn an_insert_ends_near_its_sink_without_walking_the_network() {
    let topology =
        veil::sim::topology::Topology::load(std::path::Path::new("testnet/small-world-32.toml"))
            .unwrap();
    let n = topology.nodes.len();
    let config = RouterConfig {
        insert_end: InsertEnd::Sink,
        ..RouterConfig::default()
    };
    let mut h = Harness::new(&topology, config.clone(), 7);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (files, fetches) = (120usize, 2usize);
    let mut keys = Vec::new();
    let (mut insert_requests, mut sinks_with_copies) = (0, 0);
    for f in 0..files {
        let (chk, block) = make_block("sink", 7, f);
        let before = h.sent.len();
        let put = h.put(rng.gen_range(0..n), block);
        assert!(h.run(MAX_STEPS) < MAX_STEPS);
        assert_eq!(h.outcome(put), Some(&ClientOutcome::Inserted));
        let sent = &h.sent[before..];
        let inserts = sent.iter().filter(|s| s.msg.is_request()).count();
        assert!(
            inserts <= usize::from(config.max_htl) + 1,
            "file {f}: {inserts} insert requests"
        );
        insert_requests += inserts;
        // Every relay that is a sink (no neighbour closer to the key) holds
        // a durable copy; the originator keeps none (a store probe would
        // name it).
        let origin = sent[0].from;
        let target = chk.routing.location();
        let sinks: Vec<usize> = (0..n)
            .filter(|&i| {
                let own = topology.nodes[i].location.distance(target);
                h.adjacency[i]
                    .iter()
                    .all(|&j| topology.nodes[j].location.distance(target) > own)
            })
            .filter(|&i| i != origin && sent.iter().any(|s| s.to == i))
            .collect();
        for s in sinks {
            assert!(
                h.stores[s].store.contains_key(&chk.routing),
                "file {f}: sink {} has no durable copy",
                topology.nodes[s].name
            );
            sinks_with_copies += 1;
        }
        keys.push(chk.routing);
    }
    let mut found = 0;
    for key in &keys {
        for _ in 0..fetches {
            let get = h.get(rng.gen_range(0..n), *key);
            assert!(h.run(MAX_STEPS) < MAX_STEPS);
            found += usize::from(matches!(h.outcome(get), Some(ClientOutcome::Found(_))));
        }
    }
    let loops = h
        .sent
        .iter()
        .filter(|s| matches!(s.msg, Message::RejectedLoop { .. }))
        .count();
    let per_insert = loops as f64 / files as f64;
    println!(
        "sink rule: {found}/{} found, {per_insert:.2} loops and {:.1} insert requests per insert",
        files * fetches,
        insert_requests as f64 / files as f64
    );
    assert_eq!(found, files * fetches);
    assert!(
        sinks_with_copies >= files * 9 / 10,
        "{sinks_with_copies} sinks"
    );
    assert!(per_insert <= 1.5, "{per_insert} loops per insert");
}
