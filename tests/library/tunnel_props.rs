//! Tunnels in the sans-IO core, driven by the deterministic harness: per-link
//! ids, builds that look alike wherever they start, the walk length, where
//! blocks are (not) cached, the client cache, resuming after the exit dies,
//! and properties on random graphs (one answer per session, traffic only
//! between neighbours, same seed same run).

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use veil::keys::{Block, Chk, RoutingKey};
use veil::message::{Message, MessageKind, BATCH_KEYS, PAD_KEY};
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
    // Batches have one size whatever they carry.
    let key = b.routing_key();
    let mut one = [PAD_KEY; BATCH_KEYS];
    one[0] = key;
    let full = [key; BATCH_KEYS];
    let a = Message::TunnelGet {
        tunnel: 1 << 63,
        keys: Box::new(one),
    };
    let z = Message::TunnelGet {
        tunnel: u64::MAX,
        keys: Box::new(full),
    };
    assert_eq!(a.encode().len(), z.encode().len());
}

/// Mean walk length (builds per originated tunnel) for `p`.
fn mean_walk(p: f64, seed: u64) -> f64 {
    let tunnel = TunnelConfig {
        p_forward: p,
        reuse_ms: 0,
        batch_delay_min_ms: 0,
        batch_delay_max_ms: 0,
        ..TunnelConfig::default()
    };
    let mut h = harness(20, 25, seed, tunnel);
    let b = block("walk", 0);
    for n in (0..20).filter(|n| *n != 3) {
        h.place(n, b.clone());
    }
    let walks = 2_000;
    for _ in 0..walks {
        let token = h.session_get(3, vec![b.routing_key()]);
        h.run(MAX_STEPS);
        assert_eq!(h.clients[&token].answers, 1);
        h.stores[3].client.clear();
    }
    let builds = h
        .sent
        .iter()
        .filter(|s| kind(s) == MessageKind::TunnelBuild)
        .count();
    builds as f64 / walks as f64
}

#[test]
fn the_mean_walk_length_is_one_over_one_minus_p() {
    for (p, seed) in [(0.75, 3), (0.5, 4)] {
        let expected = 1.0 / (1.0 - p);
        let mean = mean_walk(p, seed);
        assert!(
            (mean - expected).abs() <= 0.1 * expected,
            "p = {p}: mean {mean}, expected {expected}"
        );
    }
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
            batch_delay_min_ms: 0,
            batch_delay_max_ms: 0,
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
        // Step until the exit starts searching: the first DataRequest's sender.
        let mut exit = None;
        for _ in 0..MAX_STEPS {
            if h.run(1) == 0 {
                break;
            }
            let got_batch: BTreeSet<usize> = h
                .sent
                .iter()
                .filter(|s| kind(s) == MessageKind::TunnelGet)
                .map(|s| s.to)
                .collect();
            exit = h
                .sent
                .iter()
                .find(|s| kind(s) == MessageKind::DataRequest && got_batch.contains(&s.from))
                .map(|s| s.from);
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
            .filter(|s| s.to == origin && kind(s) == MessageKind::TunnelData)
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
    // One announcement per build and batch the originator sent on its own
    // tunnels (a build node 3 extends for another walk is not announced).
    let announced_kinds = [
        MessageKind::TunnelBuild,
        MessageKind::TunnelGet,
        MessageKind::TunnelPut,
    ];
    let own_sends = h
        .sent
        .iter()
        .filter(|s| s.from == 3 && own.contains(&s.msg.uid()))
        .filter(|s| announced_kinds.contains(&kind(s)))
        .count();
    assert_eq!(own_sends, h.flows_originated.len());
}

#[test]
fn a_first_batch_waits_for_the_build_answer_and_a_random_delay() {
    // Sent on the heels of its build, a first batch reached the first hop a
    // few hundred microseconds after that hop's `TunnelBuilt`, sooner than a
    // relay's copy: a timing signal. It must leave at least the minimum
    // batch delay after the originator heard `TunnelBuilt`.
    let tunnel = TunnelConfig {
        reuse_ms: 0,
        batch_delay_min_ms: 30,
        batch_delay_max_ms: 60,
        ..TunnelConfig::default()
    };
    let mut h = harness(12, 10, 9, tunnel);
    let b = block("first batch", 0);
    for n in 1..12 {
        h.place(n, b.clone());
    }
    for _ in 0..20 {
        let token = h.session_get(0, vec![b.routing_key()]);
        h.run(MAX_STEPS);
        assert!(found(&h.clients[&token].outcomes[0]));
        h.stores[0].client.clear();
    }
    let mut checked = 0;
    for (i, s) in h.sent.iter().enumerate() {
        if s.from != 0 || !matches!(s.msg, Message::TunnelGet { .. }) {
            continue;
        }
        // The build answer for this tunnel, received by the originator.
        let tunnel = s.msg.uid();
        let built = h.sent[..i]
            .iter()
            .rev()
            .find(|r| {
                r.to == 0 && matches!(r.msg, Message::TunnelBuilt { .. }) && r.msg.uid() == tunnel
            })
            .unwrap_or_else(|| panic!("batch {s:?} sent before its tunnel was answered"));
        assert!(
            s.at >= built.at + 30,
            "batch at {} after TunnelBuilt at {}",
            s.at,
            built.at
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} first batches");
}
