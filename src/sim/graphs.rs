//! Friend graphs at simulator scale (up to and past 100,000 nodes), as
//! [`model::Graph`](crate::sim::model::Graph): a ring lattice, a Kleinberg
//! small world, a random regular graph, "swap" (random locations on a small
//! world, Sandberg's starting point) and a topology file.
//!
//! Every generator is seeded: the same seed gives the same graph. Node `i`
//! sits at location `i / n` except where said otherwise.

use std::collections::VecDeque;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use crate::sim::model::{Graph, NodeIx};
use crate::sim::topology::Topology;

/// The shapes `veil sim --topology` draws itself (anything else is a file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Ring,
    Kleinberg,
    Random,
    Swap,
}

impl Shape {
    pub fn parse(name: &str) -> Option<Shape> {
        match name {
            "ring" => Some(Shape::Ring),
            "kleinberg" => Some(Shape::Kleinberg),
            "random" => Some(Shape::Random),
            "swap" => Some(Shape::Swap),
            _ => None,
        }
    }
}

/// Draw `shape` with `n` nodes and mean degree about `degree`.
pub fn generate(shape: Shape, n: usize, degree: usize, rng: &mut dyn RngCore) -> Graph {
    match shape {
        Shape::Ring => ring(n, degree),
        Shape::Kleinberg => kleinberg(n, degree, rng),
        Shape::Random => random_regular(n, degree, rng),
        Shape::Swap => swap_start(n, degree, rng),
    }
}

fn even_locations(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 / n as f64).collect()
}

/// Sort and deduplicate every list, dropping self-loops; make it symmetric.
fn finish(n: usize, edges: &[(NodeIx, NodeIx)], location: Vec<f64>) -> Graph {
    let mut adj: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        if a != b {
            adj[a as usize].push(b);
            adj[b as usize].push(a);
        }
    }
    for list in &mut adj {
        list.sort_unstable();
        list.dedup();
        list.shrink_to_fit();
    }
    Graph { adj, location }
}

/// Node `i` at `(i + k) mod n`.
fn step(n: usize, i: usize, k: isize) -> NodeIx {
    (i as isize + k).rem_euclid(n as isize) as NodeIx
}

/// A ring lattice: each node linked to its `degree / 2` nearest nodes on
/// either side (at least one).
pub fn ring(n: usize, degree: usize) -> Graph {
    let half = (degree / 2).max(1);
    let mut edges = Vec::with_capacity(n * half);
    for i in 0..n {
        for k in 1..=half as isize {
            edges.push((i as NodeIx, step(n, i, k)));
        }
    }
    finish(n, &edges, even_locations(n))
}

/// Kleinberg's one-dimensional small world: a ring (each node linked to the
/// next), plus `(degree - 2) / 2` long links drawn by each node (at least
/// one), so the mean degree is about `degree`. A long link's ring distance
/// `d` in `[1, n/2]` has probability ∝ 1/d (drawn as `d = ⌊(n/2)^u⌋`, `u`
/// uniform, the continuous form of the harmonic law), in either direction.
pub fn kleinberg(n: usize, degree: usize, rng: &mut dyn RngCore) -> Graph {
    let long = (degree.saturating_sub(2) / 2).max(1);
    let half = (n / 2).max(1) as f64;
    let mut edges = Vec::with_capacity(n * (1 + long));
    for i in 0..n {
        edges.push((i as NodeIx, step(n, i, 1)));
        for _ in 0..long {
            let u: f64 = rng.gen();
            let d = (half.powf(u).floor() as isize).max(1);
            let d = if rng.gen::<bool>() { d } else { -d };
            edges.push((i as NodeIx, step(n, i, d)));
        }
    }
    finish(n, &edges, even_locations(n))
}

/// A random `degree`-regular graph by the pairing (configuration) model:
/// `degree` stubs per node, shuffled and paired; the few self-loops and
/// repeated pairs are dropped, so a handful of nodes have degree one or two
/// less. Locations are `i / n`, unrelated to the links.
pub fn random_regular(n: usize, degree: usize, rng: &mut dyn RngCore) -> Graph {
    let mut stubs: Vec<NodeIx> = (0..n as NodeIx)
        .flat_map(|i| std::iter::repeat_n(i, degree))
        .collect();
    stubs.shuffle(rng);
    let edges: Vec<(NodeIx, NodeIx)> = stubs.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    finish(n, &edges, even_locations(n))
}

/// Random locations on a small world: the [`kleinberg`] graph, its
/// locations shuffled among the nodes, so greedy routing starts out lost
/// (what location swapping, Sandberg 2006, then repairs).
pub fn swap_start(n: usize, degree: usize, rng: &mut dyn RngCore) -> Graph {
    let mut graph = kleinberg(n, degree, rng);
    graph.location.shuffle(rng);
    graph
}

/// A topology file's nodes, locations and edges as a graph (node `i` is the
/// file's `i`-th node in name order, as the harness numbers them).
pub fn from_topology(topology: &Topology) -> Graph {
    let edges: Vec<(NodeIx, NodeIx)> = topology
        .edges
        .iter()
        .map(|&(a, b)| (a as NodeIx, b as NodeIx))
        .collect();
    let location = topology.nodes.iter().map(|n| n.location.as_f64()).collect();
    finish(topology.nodes.len(), &edges, location)
}

/// Is every node reachable from node 0?
pub fn is_connected(graph: &Graph) -> bool {
    let n = graph.nodes();
    if n == 0 {
        return true;
    }
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([0 as NodeIx]);
    seen[0] = true;
    let mut count = 1;
    while let Some(v) = queue.pop_front() {
        for &w in &graph.adj[v as usize] {
            if !seen[w as usize] {
                seen[w as usize] = true;
                count += 1;
                queue.push_back(w);
            }
        }
    }
    count == n
}

/// Mean degree.
pub fn mean_degree(graph: &Graph) -> f64 {
    let total: usize = graph.adj.iter().map(Vec::len).sum();
    total as f64 / graph.nodes().max(1) as f64
}
