use std::collections::VecDeque;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

/// Run `adj`'s embedders until nothing changes for a few periods;
/// messages arrive in order, one at a time.
fn settle(adj: &[Vec<usize>], seed: u64) -> Vec<Embedder<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = EmbedConfig { period_ms: 10 };
    let mut nodes: Vec<Embedder<usize>> = (0..adj.len())
        .map(|_| Embedder::new(config.clone(), 0, &mut rng))
        .collect();
    let mut queue = VecDeque::new();
    for (i, list) in adj.iter().enumerate() {
        for &j in list {
            for a in nodes[i].handle(0, EmbedEvent::LinkUp { peer: j }) {
                queue.push_back((i, a));
            }
        }
    }
    let mut now = 0;
    for _ in 0..400 {
        while let Some((from, action)) = queue.pop_front() {
            if let EmbedAction::Send { to, msg } = action {
                let event = EmbedEvent::Message { from, msg };
                for a in nodes[to].handle(now, event) {
                    queue.push_back((to, a));
                }
            }
        }
        now += 10;
        for (i, node) in nodes.iter_mut().enumerate() {
            for a in node.handle(now, EmbedEvent::Tick) {
                queue.push_back((i, a));
            }
        }
    }
    nodes
}

/// A ring of `n` with a chord from every third node halfway round.
fn graph(n: usize) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    let mut link = |a: usize, b: usize| {
        if a != b && !adj[a].contains(&b) {
            adj[a].push(b);
            adj[b].push(a);
        }
    };
    for i in 0..n {
        link(i, (i + 1) % n);
        if i % 3 == 0 {
            link(i, (i + n / 2) % n);
        }
    }
    adj
}

#[test]
fn every_node_agrees_on_one_root_and_takes_a_distinct_location() {
    let adj = graph(60);
    let nodes = settle(&adj, 1);
    let root = nodes.iter().map(|n| n.ticket).min().unwrap();
    assert!(nodes.iter().all(|n| n.root().0 == root));
    let top: Vec<&Embedder<usize>> = nodes.iter().filter(|n| n.root().1 == 0).collect();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].size(), 60, "the root's subtree is everyone");
    // Pre-order ranks spread evenly: every location distinct, one slot
    // (2^64 / 60, up to rounding at each level) apart from its nearest.
    let mut at: Vec<u64> = nodes.iter().map(|n| n.location().unwrap().0).collect();
    at.sort_unstable();
    at.dedup();
    assert_eq!(at.len(), 60);
    let slot = u64::MAX / 60;
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap.abs_diff(slot) < 64, "gap {gap}, slot {slot}");
    }
    // Each node sits inside its parent's interval: depth 1 below it.
    for n in &nodes {
        if let Some(parent) = &n.best.2 {
            let p = &nodes[*parent];
            assert_eq!(p.root().1 + 1, n.root().1);
            let (start, width) = p.interval.unwrap();
            let off = n.location().unwrap().0.wrapping_sub(start);
            assert!(u128::from(off) < width);
        }
    }
}

#[test]
fn a_cut_off_part_elects_its_own_root_and_the_old_ticket_dies_out() {
    // Two rings joined by one link; the link goes down.
    let mut adj = graph(20);
    let other = graph(20);
    for (i, list) in other.iter().enumerate() {
        adj.push(list.iter().map(|j| j + 20).collect());
        let _ = i;
    }
    adj[0].push(20);
    adj[20].push(0);
    let mut nodes = settle(&adj, 2);
    let all = nodes.iter().map(|n| n.ticket).min().unwrap();
    assert!(nodes.iter().all(|n| n.root().0 == all));
    // Cut: each half keeps going on its own.
    let mut queue: VecDeque<(usize, EmbedAction<usize>)> = VecDeque::new();
    for (a, b) in [(0usize, 20usize), (20, 0)] {
        for act in nodes[a].handle(0, EmbedEvent::LinkDown { peer: b }) {
            queue.push_back((a, act));
        }
    }
    let mut now = 10_000;
    for _ in 0..(2 * MAX_DEPTH as usize + 50) {
        while let Some((from, action)) = queue.pop_front() {
            if let EmbedAction::Send { to, msg } = action {
                let keep = !((from, to) == (0, 20) || (from, to) == (20, 0));
                if keep {
                    for a in nodes[to].handle(now, EmbedEvent::Message { from, msg }) {
                        queue.push_back((to, a));
                    }
                }
            }
        }
        now += 10;
        for (i, node) in nodes.iter_mut().enumerate() {
            for a in node.handle(now, EmbedEvent::Tick) {
                queue.push_back((i, a));
            }
        }
    }
    let left = nodes[..20].iter().map(|n| n.ticket).min().unwrap();
    let right = nodes[20..].iter().map(|n| n.ticket).min().unwrap();
    assert!(nodes[..20].iter().all(|n| n.root().0 == left));
    assert!(nodes[20..].iter().all(|n| n.root().0 == right));
}
