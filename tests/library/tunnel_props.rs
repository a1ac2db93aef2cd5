//! Tunnels in the sans-IO core, driven by the deterministic harness: per-link
//! ids, builds that look alike wherever they start, the walk length, the
//! exit never the originator's neighbour, no key or block in any cell a
//! relay sees, where blocks are (not) cached, the client cache, resuming
//! after the exit dies, the send clock, and properties on random graphs (one
//! answer per session, traffic only between neighbours, same seed same run).

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use veil::keys::{Block, Chk, RoutingKey};
use veil::message::{Message, MessageKind, Sealed, BIG_CELL, CELL_KEYS, SMALL_CELL};
use veil::routing::{ClientOutcome, RouterConfig, TunnelConfig};
use veil::sim::harness::{Harness, Sent};
use veil::sim::topology::{generate, Shape};

const MAX_STEPS: usize = 2_000_000;

fn block(tag: &str, i: usize) -> Block {
    Chk::encode(format!("tunnel props {tag} {i}").as_bytes())
        .unwrap()
        .1
}

fn config(tunnel: TunnelConfig) -> RouterConfig {
    RouterConfig {
        tunnel,
        ..RouterConfig::default()
    }
}

fn harness(n: usize, extra: usize, seed: u64, tunnel: TunnelConfig) -> Harness {
    // Mean degree about 2 + 2 * extra / n: a random tree plus extra edges.
    let degree = (2 + 2 * extra / n).min(n - 1);
    let topology = generate(n, degree, Shape::Random, seed).unwrap();
    let mut h = Harness::new(&topology, config(tunnel), seed);
    h.use_tunnels();
    h
}

/// Put `b` in the store of the node closest to its key (where routing
/// converges), and say which node that is.
fn place_near(h: &mut Harness, b: &Block) -> usize {
    let target = b.routing_key().location();
    let node = (0..h.len())
        .min_by_key(|n| h.router(*n).location().distance(target))
        .unwrap();
    h.place(node, b.clone());
    node
}

fn kind(s: &Sent) -> MessageKind {
    s.msg.message_kind()
}

fn found(outcome: &ClientOutcome) -> bool {
    matches!(outcome, ClientOutcome::Found(_))
}

#[test]
fn tunnel_ids_are_chosen_per_link() {
    let mut h = harness(30, 30, 1, TunnelConfig::default());
    let blocks: Vec<Block> = (0..40).map(|i| block("ids", i)).collect();
    for (i, b) in blocks.iter().enumerate() {
        h.place((i * 7) % 30, b.clone());
    }
    for origin in [0, 5, 11] {
        let keys = blocks.iter().map(Block::routing_key).collect();
        let token = h.session_get(origin, keys);
        h.run(MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
    }
    let builds: Vec<&Sent> = h
        .sent
        .iter()
        .filter(|s| kind(s) == MessageKind::TunnelBuild)
        .collect();
    assert!(builds.len() >= 3, "{} builds", builds.len());
    let ids: BTreeSet<u64> = builds.iter().map(|s| s.msg.uid()).collect();
    assert_eq!(ids.len(), builds.len(), "an id was used on two links");
    // Every tunnel message uses the id of a build on its own link.
    let on_link: HashMap<u64, (usize, usize)> = builds
        .iter()
        .map(|s| (s.msg.uid(), (s.from.min(s.to), s.from.max(s.to))))
        .collect();
    for s in h.sent.iter().filter(|s| kind(s).is_tunnel()) {
        let link = (s.from.min(s.to), s.from.max(s.to));
        assert_eq!(on_link.get(&s.msg.uid()), Some(&link), "{s:?}");
    }
}

#[test]
fn originated_and_extended_builds_look_the_same() {
    let tunnel = TunnelConfig {
        reuse_ms: 0,
        ..TunnelConfig::default()
    };
    let mut h = harness(12, 10, 2, tunnel);
    let b = block("shape", 0);
    for n in 1..12 {
        h.place(n, b.clone());
    }
    for _ in 0..300 {
        let token = h.session_get(0, vec![b.routing_key()]);
        h.run(MAX_STEPS);
        assert!(found(&h.clients[&token].outcomes[0]));
        h.stores[0].client.clear();
    }
    // Node 0 originates every walk; builds from others are extensions (and
    // node 0 also extends walks that come back through it: counted apart by
    // whether node 0 had just received a build).
    let mut originated = Vec::new();
    let mut extended = Vec::new();
    for s in h
        .sent
        .iter()
        .filter(|s| kind(s) == MessageKind::TunnelBuild)
    {
        if s.from == 0 {
            originated.push(s.msg.clone());
        } else {
            extended.push(s.msg.clone());
        }
    }
    assert!(originated.len() >= 300 && extended.len() > 300);
    let sizes: BTreeSet<usize> = originated
        .iter()
        .chain(&extended)
        .map(|m| m.encode().len())
        .collect();
    assert_eq!(sizes.len(), 1, "builds of different sizes: {sizes:?}");
    // The only field is the id: top bit always set, other bits fair coins
    // in both groups.
    for group in [&originated, &extended] {
        assert!(group.iter().all(|m| m.uid() >> 63 == 1));
        for bit in [0, 17, 62] {
            let ones = group.iter().filter(|m| m.uid() >> bit & 1 == 1).count();
            let share = ones as f64 / group.len() as f64;
            assert!((0.4..0.6).contains(&share), "bit {bit}: {share}");
        }
    }
    // Cells have one of two sizes whatever they carry.
    let key = b.routing_key();
    let one = Sealed::Get {
        keys: vec![key],
        more: false,
    }
    .to_cell_bytes()
    .unwrap();
    let full = Sealed::Get {
        keys: vec![key; CELL_KEYS],
        more: true,
    }
    .to_cell_bytes()
    .unwrap();
    assert_eq!((one.len(), full.len()), (SMALL_CELL, SMALL_CELL));
    for s in h.sent.iter().filter(|s| kind(s).is_tunnel()) {
        if let Message::TunnelForward { cell, .. } | Message::TunnelBackward { cell, .. } = &s.msg {
            let len = cell.as_bytes().len();
            assert!(len == SMALL_CELL || len == BIG_CELL, "{len}");
        }
    }
}

/// Mean tunnel length (hops that answered a build, per tunnel) for `p`.
fn mean_walk(p: f64, seed: u64) -> f64 {
    let tunnel = TunnelConfig {
        p_extend: p,
        max_walk: 64,
        reuse_ms: 0,
        delay_min_ms: 0,
        delay_max_ms: 0,
        ..TunnelConfig::default()
    };
    let mut h = harness(20, 25, seed, tunnel);
    let b = block("walk", 0);
    for n in (0..20).filter(|n| *n != 3) {
        h.place(n, b.clone());
    }
    let walks = 1_000;
    for _ in 0..walks {
        let token = h.session_get(3, vec![b.routing_key()]);
        h.run(MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        h.stores[3].client.clear();
    }
    let tunnels = h
        .sent
        .iter()
        .filter(|s| s.from == 3 && kind(s) == MessageKind::TunnelBuild)
        .count();
    let hops = h
        .sent
        .iter()
        .filter(|s| kind(s) == MessageKind::TunnelBuilt)
        .count();
    hops as f64 / tunnels as f64
}

#[test]
fn the_mean_tunnel_length_is_min_walk_plus_p_over_one_minus_p() {
    let min = TunnelConfig::default().min_walk as f64;
    for (p, seed) in [(0.5, 3), (0.25, 4)] {
        let expected = min + p / (1.0 - p);
        let mean = mean_walk(p, seed);
        assert!(
            (mean - expected).abs() <= 0.1 * expected,
            "p = {p}: mean {mean}, expected {expected}"
        );
    }
}

#[test]
fn only_exits_open_keys_and_no_exit_is_the_originators_first_hop() {
    let tunnel = TunnelConfig {
        reuse_ms: 0,
        ..TunnelConfig::default()
    };
    let mut h = harness(30, 40, 8, tunnel);
    let blocks: Vec<Block> = (0..40).map(|i| block("sealed", i)).collect();
    for b in &blocks {
        place_near(&mut h, b);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut origins = Vec::new();
    for round in 0..40 {
        let origin = rng.gen_range(0..30);
        origins.push(origin);
        let keys = blocks
            .iter()
            .skip(round % 10)
            .take(12)
            .map(Block::routing_key)
            .collect();
        let token = h.session_get(origin, keys);
        h.run(MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        h.stores[origin].client.clear();
        // Every exit opened its keys from a hop, never from the originator.
        for (exit, from, _) in &h.exits {
            assert_ne!(*exit, origin, "the originator exited its own tunnel");
            assert_ne!(
                *from, origin,
                "the exit is the originator's neighbour on it"
            );
        }
        h.exits.clear();
    }
    // No routing key and no block's bytes in any cell on any link.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for b in &blocks {
        needles.push(b.routing_key().0.to_vec());
        needles.push(b.as_bytes()[..32].to_vec());
        needles.push(b.as_bytes()[1000..1032].to_vec());
    }
    let mut cells = 0;
    for s in &h.sent {
        let (Message::TunnelForward { cell, .. } | Message::TunnelBackward { cell, .. }) = &s.msg
        else {
            continue;
        };
        cells += 1;
        let bytes = cell.as_bytes();
        for n in &needles {
            assert!(
                !bytes.windows(32).any(|w| w == n.as_slice()),
                "a cell from {} to {} shows a key or block",
                s.from,
                s.to
            );
        }
    }
    assert!(cells > 200, "{cells} cells");
}

#[test]
fn tunnel_hops_and_the_originator_never_cache_but_the_exit_path_does() {
    let mut h = harness(30, 25, 5, TunnelConfig::default());
    let blocks: Vec<Block> = (0..30).map(|i| block("cache", i)).collect();
    let mut holder = HashMap::new();
    for b in &blocks {
        let n = place_near(&mut h, b);
        holder.insert(b.routing_key(), n);
    }
    let origin = 0;
    let keys: Vec<RoutingKey> = blocks.iter().map(Block::routing_key).collect();
    let token = h.session_get(origin, keys.clone());
    h.run(MAX_STEPS);
    let record = &h.clients[&token];
    assert_eq!(record.answers, 1);
    let hits = record.outcomes.iter().filter(|o| found(o)).count();
    assert!(hits >= 20, "{:?}", record.outcomes);
    let mut cached_somewhere = 0;
    for key in &keys {
        // Who relayed a found block back along a search path (not its holder).
        let relayers: BTreeSet<usize> = h
            .sent
            .iter()
            .filter(|s| matches!(&s.msg, Message::DataFound { block, .. } if block.routing_key() == *key))
            .map(|s| s.from)
            .filter(|n| *n != holder[key])
            .collect();
        let cachers: BTreeSet<usize> = (0..h.len())
            .filter(|n| h.stores[*n].cache.contains_key(key))
            .collect();
        assert_eq!(cachers, relayers, "key cached off the search path");
        cached_somewhere += cachers.len();
        let i = keys.iter().position(|k| k == key).unwrap();
        // (Even a block in the originator's own store is fetched: its
        // client reads only the client cache.)
        let fetched = found(&record.outcomes[i]);
        assert_eq!(h.stores[origin].client.contains_key(key), fetched);
        assert!(!h.stores[origin].cache.contains_key(key) || relayers.contains(&origin));
    }
    assert!(
        cached_somewhere > 0,
        "no node after an exit cached anything"
    );
    // The originator routed nothing itself.
    assert_eq!(h.router(origin).stats().requests_originated, 0);
    assert!(record.uid.is_none());
}

#[test]
fn a_client_cache_hit_sends_nothing() {
    let mut h = harness(15, 10, 6, TunnelConfig::default());
    let b = block("client cache", 0);
    place_near(&mut h, &b);
    let first = h.session_get(2, vec![b.routing_key()]);
    h.run(MAX_STEPS);
    assert!(found(&h.clients[&first].outcomes[0]));
    let before = h.sent.len();
    let again = h.get(2, b.routing_key());
    h.run(MAX_STEPS);
    assert_eq!(h.sent.len(), before, "a client-cache hit sent traffic");
    assert_eq!(h.outcome(again), Some(&ClientOutcome::Found(b)));
    assert_eq!(h.clients[&again].answers, 1);
}

#[test]
fn a_session_resumes_through_a_new_tunnel_after_its_exit_dies() {
    let mut survived = 0;
    for seed in 10..16 {
        let tunnel = TunnelConfig {
            delay_min_ms: 0,
            delay_max_ms: 0,
            ..TunnelConfig::default()
        };
        let mut h = harness(25, 35, seed, tunnel);
        let blocks: Vec<Block> = (0..20).map(|i| block("resume", i)).collect();
        for b in &blocks {
            place_near(&mut h, b);
        }
        let origin = 0;
        let keys: Vec<RoutingKey> = blocks.iter().map(Block::routing_key).collect();
        let token = h.session_get(origin, keys);
        // Step until the exit opens the keys.
        let mut exit = None;
        for _ in 0..MAX_STEPS {
            if h.run(1) == 0 {
                break;
            }
            exit = h.exits.first().map(|(exit, _, _)| *exit);
            if exit.is_some() {
                break;
            }
        }
        let Some(exit) = exit else { continue };
        if exit == origin {
            continue;
        }
        let builds_before = h
            .sent
            .iter()
            .filter(|s| s.from == origin && kind(s) == MessageKind::TunnelBuild)
            .count();
        let cut = h.sent.len();
        h.isolate(exit);
        h.run(MAX_STEPS);
        let record = &h.clients[&token];
        assert_eq!(record.answers, 1, "seed {seed}");
        let builds_after = h
            .sent
            .iter()
            .filter(|s| s.from == origin && kind(s) == MessageKind::TunnelBuild)
            .count();
        assert!(builds_after > builds_before, "seed {seed}: no rebuild");
        assert_eq!(
            h.router(origin).stats().requests_originated,
            0,
            "seed {seed}"
        );
        // Blocks arrive through the new tunnel after the exit died.
        let hits = record.outcomes.iter().filter(|o| found(o)).count();
        assert!(hits > 0, "seed {seed}: nothing found");
        let late_data = h.sent[cut..]
            .iter()
            .filter(|s| {
                s.to == origin
                    && matches!(&s.msg, Message::TunnelBackward { cell, .. } if cell.is_big())
            })
            .count();
        assert!(
            late_data > 0,
            "seed {seed}: nothing came through the new tunnel"
        );
        survived += 1;
    }
    assert!(survived >= 3, "only {survived} runs reached an exit");
}

/// One random run: sessions and single requests from random nodes.
fn random_run(seed: u64, n: usize, extra: usize, sessions: usize) -> Harness {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e11);
    let mut h = harness(n, extra, seed, TunnelConfig::default());
    let blocks: Vec<Block> = (0..12).map(|i| block(&format!("prop {seed}"), i)).collect();
    for b in &blocks {
        if rng.gen_bool(0.7) {
            h.place(rng.gen_range(0..n), b.clone());
        }
    }
    for s in 0..sessions {
        let origin = rng.gen_range(0..n);
        match s % 3 {
            0 => {
                let k = rng.gen_range(1..=blocks.len());
                let keys = blocks.iter().take(k).map(Block::routing_key).collect();
                h.session_get(origin, keys);
            }
            1 => {
                let b = block(&format!("prop put {seed}"), s);
                h.session_put(origin, vec![b]);
            }
            _ => {
                h.get(origin, blocks[rng.gen_range(0..blocks.len())].routing_key());
            }
        }
    }
    h.run(MAX_STEPS);
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn tunnel_sessions_on_random_graphs(seed in any::<u64>(), n in 3usize..18, extra in 0usize..20) {
        let h = random_run(seed, n, extra, 6);
        for (token, c) in &h.clients {
            prop_assert_eq!(c.answers, 1, "token {} answered {} times", token, c.answers);
        }
        for s in &h.sent {
            prop_assert!(h.adjacency[s.from].contains(&s.to), "{:?} crossed no edge", s);
        }
        for n in 0..h.len() {
            prop_assert_eq!(h.router(n).stats().requests_originated, 0);
        }
        let again = random_run(seed, n, extra, 6);
        prop_assert_eq!(&h.sent, &again.sent);
    }
}

#[test]
fn the_originator_announces_each_tunnel_build_and_batch_it_sends() {
    let mut h = harness(20, 20, 4, TunnelConfig::default());
    let blocks: Vec<Block> = (0..12).map(|i| block("flows", i)).collect();
    for b in &blocks {
        place_near(&mut h, b);
    }
    let keys = blocks.iter().map(Block::routing_key).collect();
    let token = h.session_get(3, keys);
    h.run(MAX_STEPS);
    assert_eq!(h.clients[&token].answers, 1);
    // Only the originator announces flows, and each one is the id of a
    // build it sent on that link.
    assert!(!h.flows_originated.is_empty());
    assert!(h.flows_originated.iter().all(|(node, _)| *node == 3));
    let own: BTreeSet<u64> = h.flows_originated.iter().map(|(_, f)| *f).collect();
    let built_by_3: BTreeSet<u64> = h
        .sent
        .iter()
        .filter(|s| s.from == 3 && kind(s) == MessageKind::TunnelBuild)
        .map(|s| s.msg.uid())
        .collect();
    assert!(own.is_subset(&built_by_3), "{own:?} vs {built_by_3:?}");
    // One announcement per build and cell the originator sent on its own
    // tunnels (a build node 3 extends for another walk is not announced).
    let announced_kinds = [MessageKind::TunnelBuild, MessageKind::TunnelForward];
    let own_sends = h
        .sent
        .iter()
        .filter(|s| s.from == 3 && own.contains(&s.msg.uid()))
        .filter(|s| announced_kinds.contains(&kind(s)))
        .count();
    assert_eq!(own_sends, h.flows_originated.len());
}

#[test]
fn a_reaction_waits_a_random_delay_and_a_fresh_request_does_not() {
    // Keys asked within `reaction_ms` of the tunnel's last answer may be a
    // reaction to it (a file's next level): the originator's clock starts
    // only after a delay in [delay_min, delay_max]. Keys asked after a
    // quiet spell leave within a tick.
    let tunnel = TunnelConfig {
        delay_min_ms: 30,
        delay_max_ms: 60,
        reaction_ms: 2_000,
        ..TunnelConfig::default()
    };
    let tick = tunnel.tick_ms;
    let mut h = harness(12, 10, 9, tunnel);
    let blocks: Vec<Block> = (0..40).map(|i| block("reaction", i)).collect();
    for b in &blocks {
        place_near(&mut h, b);
    }
    let first_cell_after = |h: &Harness, from: usize| {
        h.sent[from..]
            .iter()
            .find(|s| s.from == 0 && kind(s) == MessageKind::TunnelForward)
            .map(|s| s.at)
    };
    let mut reactions = 0;
    let mut fresh = 0;
    for (i, pair) in blocks.chunks(2).enumerate() {
        let quiet = i % 2 == 1;
        if quiet {
            // Let the tunnel go quiet past reaction_ms.
            h.idle_for(3_000, MAX_STEPS);
        }
        let mark = h.sent.len();
        let asked = h.now();
        let token = h.session_get(0, pair.iter().map(Block::routing_key).collect());
        // Not `run`: it would go on to the hops' idle timers, and the
        // tunnel would be gone by the next round.
        h.run_until(asked + 1_500, MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        let Some(at) = first_cell_after(&h, mark) else {
            continue;
        };
        // A tunnel being built sends its extensions first; count only
        // requests on a tunnel already built.
        let built_before = h.sent[..mark]
            .iter()
            .any(|s| s.from == 0 && kind(s) == MessageKind::TunnelForward);
        if !built_before
            || h.sent[mark..]
                .iter()
                .any(|s| s.from == 0 && kind(s) == MessageKind::TunnelBuild)
        {
            continue;
        }
        if quiet {
            assert!(at <= asked + tick, "fresh keys waited {} ms", at - asked);
            fresh += 1;
        } else {
            assert!(at >= asked + 30, "a reaction left after {} ms", at - asked);
            reactions += 1;
        }
    }
    assert!(
        reactions >= 5 && fresh >= 5,
        "{reactions} reactions, {fresh} fresh"
    );
}

#[test]
fn two_nodes_fall_back_to_a_one_hop_tunnel_and_serve_concurrent_sessions() {
    // A network of two: each node's only neighbour cannot extend, so after
    // it fails to, each builds a tunnel of one hop (its neighbour already
    // knows that everything it sends is its own). Gets and puts leave in
    // one send, in the order the exit numbers them.
    let topology = generate(2, 1, Shape::Random, 3).unwrap();
    let mut h = Harness::new(&topology, config(TunnelConfig::default()), 3);
    h.use_tunnels();
    let stored: Vec<Block> = (0..64).map(|i| block("pair stored", i)).collect();
    for b in &stored {
        let token = h.put(0, b.clone());
        h.run_until(h.now() + 60_000, MAX_STEPS);
        assert_eq!(h.outcome(token), Some(&ClientOutcome::Inserted));
    }
    let mut tokens = Vec::new();
    for b in &stored {
        tokens.push(h.get(1, b.routing_key()));
    }
    for i in 0..64 {
        tokens.push(h.put(1, block("pair fresh", i)));
    }
    h.run_until(h.now() + 120_000, MAX_STEPS);
    for t in tokens {
        let outcome = h.outcome(t);
        assert!(
            matches!(
                outcome,
                Some(ClientOutcome::Found(_) | ClientOutcome::Inserted)
            ),
            "{outcome:?}"
        );
    }
}

#[test]
fn a_rebuild_after_a_tunnel_breaks_waits_like_a_reaction() {
    // The first hop passes the originator a `TunnelDown`; whatever the
    // originator builds next within `reaction_ms` is a reaction to that
    // news and waits the random delay. A relay would only pass the
    // `TunnelDown` on; a build a few milliseconds after it named the
    // originator (the audit's `gap` signal).
    let tunnel = TunnelConfig {
        delay_min_ms: 30,
        delay_max_ms: 60,
        reaction_ms: 2_000,
        ..TunnelConfig::default()
    };
    let mut h = harness(12, 10, 9, tunnel);
    let blocks: Vec<Block> = (0..16).map(|i| block("rebuild", i)).collect();
    for b in &blocks {
        place_near(&mut h, b);
    }
    let mut checked = 0;
    for pair in blocks.chunks(2) {
        let asked = h.now();
        let token = h.session_get(0, vec![pair[0].routing_key()]);
        h.run_until(asked + 1_500, MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        // Quiet past reaction_ms: what comes next reacts to nothing else.
        h.idle_for(3_000, MAX_STEPS);
        let Some(build) = h
            .sent
            .iter()
            .rev()
            .find(|s| s.from == 0 && kind(s) == MessageKind::TunnelBuild)
        else {
            continue;
        };
        let (first, tunnel_id) = (build.to, build.msg.uid());
        let mark = h.sent.len();
        let broken = h.now();
        h.inject(first, 0, Message::TunnelDown { tunnel: tunnel_id });
        // A key the client has not fetched (a cached one needs no tunnel).
        let token = h.session_get(0, vec![pair[1].routing_key()]);
        h.run_until(broken + 1_500, MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        let rebuilt = h.sent[mark..]
            .iter()
            .find(|s| s.from == 0 && kind(s) == MessageKind::TunnelBuild);
        if let Some(s) = rebuilt {
            assert!(
                s.at >= broken + 30,
                "a rebuild left {} ms after the break",
                s.at - broken
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} rebuilds checked");
}
