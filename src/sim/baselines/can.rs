//! CAN: a d-dimensional unit torus cut into zones, greedy routing.
//!
//! Zones come from successive random splits, as CAN's join builds them:
//! node 0 owns the whole torus; node `i` draws a uniform point, and the
//! zone holding it is halved along its next dimension in turn, the new node
//! taking the half with its point. Zones are therefore unequal (not a
//! regular grid, even when N is a power of 2^d). Two nodes are neighbours
//! when their zones abut along one dimension (wrapping round the torus)
//! and overlap in all the others.
//!
//! A key maps to a point, one coordinate per dimension mixed from the key;
//! it lives at the node whose zone holds the point. Routing is greedy and
//! recursive: each node forwards to the neighbour whose zone is nearest the
//! point (Euclidean distance on the torus from the point to the zone, which
//! strictly falls each hop), and the value returns along the reverse path.
//! Hops = forwards; messages = forwards + reply hops + forwards lost to
//! failed nodes.
//!
//! Exposure: messages carry no source address. A node forwards only to a
//! neighbour nearer the point than itself, and CAN neighbours exchange
//! their zones and neighbour lists; so the first hop knows its sender
//! originated the request when none of the sender's neighbours is farther
//! from the point than the sender (no one could have forwarded to it).
//!
//! Failure: a node times out on a dead neighbour (one message) and tries
//! the next nearer one; when no nearer neighbour is alive it gives up (the
//! paper's expanding-ring search and zone takeover are not modelled).

use rand::{Rng, RngCore};
use std::borrow::Cow;

use super::{mix64, Holdings, Nodes, Params};
use crate::sim::model::{Lookup, Model, NodeIx};

#[derive(Clone, Copy, Debug)]
enum Tree {
    Leaf(NodeIx),
    Split {
        dim: u8,
        at: f64,
        low: u32,
        high: u32,
    },
}

pub(crate) struct Can {
    nodes: Nodes,
    d: usize,
    /// Zone corners, node-major, `d` per node: `[lo, hi)` in each dimension.
    lo: Vec<f64>,
    hi: Vec<f64>,
    neighbours: Vec<Vec<NodeIx>>,
    stored: Holdings,
    path: Vec<NodeIx>,
    point: Vec<f64>,
}

/// How far `p` is from `[lo, hi)` on the unit circle.
fn gap(p: f64, lo: f64, hi: f64) -> f64 {
    if lo <= p && p < hi {
        0.0
    } else {
        (lo - p).rem_euclid(1.0).min((p - hi).rem_euclid(1.0))
    }
}

impl Can {
    pub fn new(n: usize, params: &Params, rng: &mut dyn RngCore) -> Can {
        let d = params.dims.clamp(1, 8);
        let mut lo = vec![0.0; n * d];
        let mut hi = vec![1.0; n * d];
        let mut tree = vec![Tree::Leaf(0)];
        let mut depth = vec![0u32; n];
        let mut p = vec![0.0; d];
        for i in 1..n {
            p.iter_mut().for_each(|x| *x = rng.gen::<f64>());
            let mut at = 0usize;
            while let Tree::Split {
                dim,
                at: cut,
                low,
                high,
            } = tree[at]
            {
                at = if p[dim as usize] < cut { low } else { high } as usize;
            }
            let Tree::Leaf(owner) = tree[at] else {
                continue;
            };
            let o = owner as usize;
            let dim = depth[o] as usize % d;
            let cut = (lo[o * d + dim] + hi[o * d + dim]) / 2.0;
            let (low, high) = (tree.len() as u32, tree.len() as u32 + 1);
            let new_low = p[dim] < cut;
            let (lo_node, hi_node) = if new_low { (i, o) } else { (o, i) };
            tree.push(Tree::Leaf(lo_node as NodeIx));
            tree.push(Tree::Leaf(hi_node as NodeIx));
            tree[at] = Tree::Split {
                dim: dim as u8,
                at: cut,
                low,
                high,
            };
            for k in 0..d {
                lo[i * d + k] = lo[o * d + k];
                hi[i * d + k] = hi[o * d + k];
            }
            hi[lo_node * d + dim] = cut;
            lo[hi_node * d + dim] = cut;
            depth[o] += 1;
            depth[i] = depth[o];
        }
        let mut can = Can {
            nodes: Nodes::new(n),
            d,
            lo,
            hi,
            neighbours: Vec::with_capacity(n),
            stored: Holdings::default(),
            path: Vec::new(),
            point: vec![0.0; d],
        };
        let mut stack = Vec::new();
        for v in 0..n {
            let mut found = Vec::new();
            for k in 0..d {
                for upper in [true, false] {
                    can.face(&tree, v, k, upper, &mut stack, &mut found);
                }
            }
            found.sort_unstable();
            found.dedup();
            found.retain(|&w| w as usize != v);
            can.neighbours.push(found);
        }
        can
    }

    /// The zones across node `v`'s upper (or lower) face in dimension `k`.
    fn face(
        &self,
        tree: &[Tree],
        v: usize,
        k: usize,
        upper: bool,
        stack: &mut Vec<u32>,
        found: &mut Vec<NodeIx>,
    ) {
        let d = self.d;
        // Upper face: zones holding c = hi (mod 1) in [lo, hi).
        // Lower face: zones holding c = lo (1 for 0) in (lo, hi].
        let c = if upper {
            self.hi[v * d + k].rem_euclid(1.0)
        } else if self.lo[v * d + k] == 0.0 {
            1.0
        } else {
            self.lo[v * d + k]
        };
        stack.clear();
        stack.push(0);
        while let Some(t) = stack.pop() {
            match tree[t as usize] {
                Tree::Leaf(w) => found.push(w),
                Tree::Split { dim, at, low, high } => {
                    let j = dim as usize;
                    if j == k {
                        let go_low = if upper { c < at } else { c <= at };
                        stack.push(if go_low { low } else { high });
                    } else {
                        if self.lo[v * d + j] < at {
                            stack.push(low);
                        }
                        if self.hi[v * d + j] > at {
                            stack.push(high);
                        }
                    }
                }
            }
        }
    }

    /// Squared torus distance from `self.point` to node `v`'s zone.
    fn dist(&self, v: NodeIx) -> f64 {
        let b = v as usize * self.d;
        (0..self.d)
            .map(|k| gap(self.point[k], self.lo[b + k], self.hi[b + k]).powi(2))
            .sum()
    }

    fn set_point(&mut self, key: u64) {
        for k in 0..self.d {
            let bits = mix64(key ^ (k as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            self.point[k] = (bits >> 11) as f64 / (1u64 << 53) as f64;
        }
    }

    /// Greedy route from `from` to the point of `key` (set by the caller);
    /// the node where it stopped. The path is left in `self.path`.
    fn route(&mut self, from: NodeIx, out: &mut Lookup) -> NodeIx {
        self.path.clear();
        self.path.push(from);
        let mut at = from;
        let mut nearer: Vec<(f64, NodeIx)> = Vec::new();
        while (out.hops as usize) < self.lo.len() {
            let here = self.dist(at);
            if here == 0.0 {
                break;
            }
            nearer.clear();
            for &w in &self.neighbours[at as usize] {
                let dw = self.dist(w);
                if dw < here {
                    nearer.push((dw, w));
                }
            }
            nearer.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut next = None;
            for &(_, w) in &nearer {
                out.messages += 1;
                if self.nodes.send(at, w) {
                    next = Some(w);
                    break;
                }
            }
            let Some(next) = next else {
                break;
            };
            out.hops += 1;
            self.path.push(next);
            at = next;
        }
        at
    }

    /// No neighbour of `v` is farther from the point than `v`.
    fn nobody_behind(&self, v: NodeIx) -> bool {
        let here = self.dist(v);
        self.neighbours[v as usize]
            .iter()
            .all(|&w| self.dist(w) <= here)
    }
}

impl Model for Can {
    fn name(&self) -> &'static str {
        "can"
    }

    fn nodes(&self) -> usize {
        self.neighbours.len()
    }

    fn insert(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) {
        if !self.nodes.alive(from) {
            return;
        }
        self.set_point(key);
        let mut cost = Lookup::default();
        let end = self.route(from, &mut cost);
        if self.dist(end) == 0.0 {
            self.stored.add(key, end);
        }
    }

    fn lookup(&mut self, from: NodeIx, key: u64, _rng: &mut dyn RngCore) -> Lookup {
        let mut out = Lookup::default();
        if !self.nodes.alive(from) {
            return out;
        }
        self.set_point(key);
        let end = self.route(from, &mut out);
        out.found = self.stored.holds(key, end);
        // The answer (value or miss) retraces the path.
        self.nodes.retrace(&self.path, &mut out);
        out.requester_exposed = out.hops > 0 && self.nobody_behind(from);
        out
    }

    fn load(&self) -> Cow<'_, [u64]> {
        Cow::Borrowed(&self.nodes.load)
    }

    fn fail(&mut self, nodes: &[NodeIx]) {
        self.nodes.fail(nodes);
    }

    fn set_online(&mut self, node: NodeIx, online: bool) {
        self.nodes.set_online(node, online);
    }
}
