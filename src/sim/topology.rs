//! Topology files: named nodes with locations, undirected edges, and an
//! optional scenario (who asks for what). Also the generators behind
//! `veil testnet gen`.
//!
//! ```toml
//! seed = 7                       # optional: draws missing locations
//! edges = [["A","B"], ["B","C"]]
//! [nodes]
//! A = { location = 0.90 }
//! B = {}                         # location drawn from the seed
//! C = { location = 0.51 }
//! [scenario]                     # optional
//! requester = "A"
//! holder = "C"                   # or a list of names
//! key_location = 0.50
//! htl = 18
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::keys::Location;
use crate::message::Htl;

/// Why a topology file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("node name {0:?} is not 1-32 characters of letters, digits, '-' or '_'")]
    BadName(String),
    #[error("node {name}: location {value} is not in [0, 1)")]
    BadLocation { name: String, value: f64 },
    #[error("edge names unknown node {0:?}")]
    UnknownNode(String),
    #[error("edge from {0:?} to itself")]
    SelfLoop(String),
    #[error("the topology has no nodes")]
    Empty,
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("cannot generate: {0}")]
    Generate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    edges: Vec<(String, String)>,
    nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    scenario: Option<RawScenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    location: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    requester: String,
    holder: OneOrMany,
    key_location: f64,
    #[serde(default = "default_htl")]
    htl: Htl,
}

fn default_htl() -> Htl {
    crate::routing::DEFAULT_MAX_HTL
}

/// One node of a topology.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub location: Location,
}

/// Who asks for what, in a scenario run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub requester: usize,
    pub holders: Vec<usize>,
    pub key_location: Location,
    pub htl: Htl,
}

/// A parsed, validated topology. Nodes are sorted by name, and edges are
/// pairs of indices into `nodes` with the smaller index first, deduplicated.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<(usize, usize)>,
    pub scenario: Option<Scenario>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Topology::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology =
            toml::from_str(text).map_err(|e| TopologyError::Syntax(e.to_string()))?;
        if raw.nodes.is_empty() {
            return Err(TopologyError::Empty);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(raw.seed.unwrap_or(0));
        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for (name, node) in &raw.nodes {
            if !valid_name(name) {
                return Err(TopologyError::BadName(name.clone()));
            }
            // Draw for every node, so one node's explicit location does not
            // shift the others' random ones.
            let drawn: f64 = rng.gen();
            let location = match node.location {
                Some(x) if (0.0..1.0).contains(&x) => Location::from_f64(x),
                Some(value) => {
                    return Err(TopologyError::BadLocation {
                        name: name.clone(),
                        value,
                    })
                }
                None => Location::from_f64(drawn),
            };
            nodes.push(NodeSpec {
                name: name.clone(),
                location,
            });
        }
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let lookup = |name: &str| {
            index
                .get(name)
                .copied()
                .ok_or_else(|| TopologyError::UnknownNode(name.to_string()))
        };
        let mut edges = BTreeSet::new();
        for (a, b) in &raw.edges {
            let (ia, ib) = (lookup(a)?, lookup(b)?);
            if ia == ib {
                return Err(TopologyError::SelfLoop(a.clone()));
            }
            edges.insert((ia.min(ib), ia.max(ib)));
        }
        let scenario =
            match raw.scenario {
                None => None,
                Some(s) => {
                    let requester = lookup(&s.requester).map_err(|_| {
                        TopologyError::Scenario(format!("unknown requester {:?}", s.requester))
                    })?;
                    let names = match s.holder {
                        OneOrMany::One(n) => vec![n],
                        OneOrMany::Many(v) => v,
                    };
                    let mut holders = Vec::new();
                    for n in names {
                        holders.push(lookup(&n).map_err(|_| {
                            TopologyError::Scenario(format!("unknown holder {n:?}"))
                        })?);
                    }
                    if !(0.0..1.0).contains(&s.key_location) {
                        return Err(TopologyError::Scenario(format!(
                            "key_location {} is not in [0, 1)",
                            s.key_location
                        )));
                    }
                    if s.htl == 0 {
                        return Err(TopologyError::Scenario("htl must be at least 1".into()));
                    }
                    Some(Scenario {
                        requester,
                        holders,
                        key_location: Location::from_f64(s.key_location),
                        htl: s.htl,
                    })
                }
            };
        Ok(Topology {
            nodes,
            edges: edges.into_iter().collect(),
            scenario,
        })
    }

    /// Index of the node with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Neighbour lists, one per node.
    pub fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.nodes.len()];
        for &(a, b) in &self.edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        adj
    }

    /// Is every node reachable from every other?
    pub fn is_connected(&self) -> bool {
        let adj = self.adjacency();
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![0usize];
        seen[0] = true;
        while let Some(n) = stack.pop() {
            for &m in &adj[n] {
                if !seen[m] {
                    seen[m] = true;
                    stack.push(m);
                }
            }
        }
        seen.iter().all(|&s| s)
    }

    /// The topology as a TOML file in the format [`Topology::parse`] reads.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str("edges = [\n");
        for &(a, b) in &self.edges {
            let _ = writeln!(
                out,
                "  [\"{}\", \"{}\"],",
                self.nodes[a].name, self.nodes[b].name
            );
        }
        out.push_str("]\n\n[nodes]\n");
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "{} = {{ location = {:.6} }}",
                n.name,
                n.location.as_f64()
            );
        }
        if let Some(s) = &self.scenario {
            out.push_str("\n[scenario]\n");
            let _ = writeln!(out, "requester = \"{}\"", self.nodes[s.requester].name);
            let holders: Vec<String> = s
                .holders
                .iter()
                .map(|&h| format!("\"{}\"", self.nodes[h].name))
                .collect();
            let _ = writeln!(out, "holder = [{}]", holders.join(", "));
            let _ = writeln!(out, "key_location = {:.6}", s.key_location.as_f64());
            let _ = writeln!(out, "htl = {}", s.htl);
        }
        out
    }
}

/// Shapes `veil testnet gen` can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Each node linked to its `degree/2` nearest on either side of a ring.
    Ring,
    /// A random spanning tree plus random edges up to the mean degree
    /// (with `--min-degree`/`--max-degree`: every degree within the bounds).
    Random,
    /// A ring plus long links drawn with probability ~ 1/distance (Kleinberg).
    SmallWorld,
}

/// Draw a connected topology of `n` nodes with mean degree about `degree`.
pub fn generate(
    n: usize,
    degree: usize,
    shape: Shape,
    seed: u64,
) -> Result<Topology, TopologyError> {
    if n < 2 {
        return Err(TopologyError::Generate("need at least 2 nodes".into()));
    }
    if n > 100_000 {
        return Err(TopologyError::Generate("at most 100000 nodes".into()));
    }
    if degree < 1 || degree >= n {
        return Err(TopologyError::Generate(format!(
            "degree must be between 1 and {} for {n} nodes",
            n - 1
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let width = (n - 1).to_string().len();
    let mut nodes: Vec<NodeSpec> = (0..n)
        .map(|i| NodeSpec {
            name: format!("n{i:0width$}"),
            location: Location::from_f64(0.0),
        })
        .collect();
    let mut edges = BTreeSet::new();
    let add = |a: usize, b: usize, edges: &mut BTreeSet<(usize, usize)>| {
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    };
    match shape {
        Shape::Ring | Shape::SmallWorld => {
            // Evenly spread ring positions, so ring order is location order.
            let offset: f64 = rng.gen::<f64>() / n as f64;
            for (i, node) in nodes.iter_mut().enumerate() {
                node.location = Location::from_f64(i as f64 / n as f64 + offset);
            }
            let local = if shape == Shape::Ring {
                degree.div_ceil(2)
            } else {
                1
            };
            for i in 0..n {
                for k in 1..=local {
                    add(i, (i + k) % n, &mut edges);
                }
            }
            if shape == Shape::SmallWorld {
                let target = (n * degree).div_ceil(2);
                let mut attempts = 0usize;
                while edges.len() < target && attempts < target * 100 {
                    attempts += 1;
                    let a = rng.gen_range(0..n);
                    // Ring distance d in 1..=n/2 with P(d) ~ 1/d.
                    let max_d = (n / 2).max(1) as f64;
                    let d = (max_d.powf(rng.gen::<f64>())).floor().max(1.0) as usize;
                    let b = if rng.gen::<bool>() {
                        (a + d) % n
                    } else {
                        (a + n - d % n) % n
                    };
                    add(a, b, &mut edges);
                }
            }
        }
        Shape::Random => {
            for node in nodes.iter_mut() {
                node.location = Location::from_f64(rng.gen::<f64>());
            }
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            for i in 1..n {
                let parent = order[rng.gen_range(0..i)];
                add(order[i], parent, &mut edges);
            }
            let target = (n * degree).div_ceil(2);
            let mut attempts = 0usize;
            while edges.len() < target && attempts < target * 100 {
                attempts += 1;
                add(rng.gen_range(0..n), rng.gen_range(0..n), &mut edges);
            }
        }
    }
    Ok(Topology {
        nodes,
        edges: edges.into_iter().collect(),
        scenario: None,
    })
}

/// Degree bounds for `veil testnet gen --shape random --min-degree A --max-degree B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DegreeBounds {
    pub min: usize,
    pub max: usize,
}

/// Full draws tried before [`generate_bounded`] gives up.
const BOUNDED_DRAWS: usize = 1000;

/// Draw a connected random topology of `n` nodes whose every node has a
/// degree within `bounds`, with mean degree about `degree` clamped into the
/// bounds. Bounds no graph can meet are refused with the reason.
pub fn generate_bounded(
    n: usize,
    degree: usize,
    bounds: DegreeBounds,
    seed: u64,
) -> Result<Topology, TopologyError> {
    let DegreeBounds { min, max } = bounds;
    let refuse = |why: String| Err(TopologyError::Generate(why));
    if !(2..=100_000).contains(&n) {
        return refuse("need between 2 and 100000 nodes".into());
    }
    if min < 1 {
        return refuse("--min-degree must be at least 1: the graph must be connected".into());
    }
    if min > max {
        return refuse(format!("--min-degree {min} is above --max-degree {max}"));
    }
    if max >= n {
        return refuse(format!(
            "--max-degree {max} needs at least {} nodes (a node has at most n-1 = {} neighbours)",
            max + 1,
            n - 1
        ));
    }
    if n > 2 && max < 2 {
        return refuse(format!(
            "a connected graph of {n} nodes needs --max-degree of at least 2"
        ));
    }
    if min == max && (n * min) % 2 == 1 {
        return refuse(format!(
            "no graph of {n} nodes has every degree equal to {min} (the degrees' sum must be even)"
        ));
    }
    let mean = degree.clamp(min, max);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let width = (n - 1).to_string().len();
    let nodes: Vec<NodeSpec> = (0..n)
        .map(|i| NodeSpec {
            name: format!("n{i:0width$}"),
            location: Location::from_f64(rng.gen::<f64>()),
        })
        .collect();
    for _ in 0..BOUNDED_DRAWS {
        if let Some(adj) = draw_bounded(n, bounds, mean, &mut rng) {
            let edges = adj
                .iter()
                .enumerate()
                .flat_map(|(a, ns)| ns.iter().filter(move |&&b| a < b).map(move |&b| (a, b)))
                .collect();
            let topology = Topology {
                nodes: nodes.clone(),
                edges,
                scenario: None,
            };
            if topology.is_connected() {
                return Ok(topology);
            }
        }
    }
    refuse(format!(
        "no connected graph with degrees in [{min}, {max}] found in {BOUNDED_DRAWS} draws"
    ))
}

/// One draw: a spanning tree within `max`, then edges until every node has
/// `min`, then random edges within `max` up to the mean target. `None` when
/// the draw got stuck (the caller draws again); the swap step may
/// disconnect the graph, which the caller checks.
fn draw_bounded(
    n: usize,
    DegreeBounds { min, max }: DegreeBounds,
    mean: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Vec<BTreeSet<usize>>> {
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let link = |adj: &mut Vec<BTreeSet<usize>>, a: usize, b: usize| {
        adj[a].insert(b);
        adj[b].insert(a);
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    // Nodes of the tree so far that can take another edge.
    let mut open = vec![order[0]];
    for &node in &order[1..] {
        let slot = rng.gen_range(0..open.len());
        let parent = open[slot];
        link(&mut adj, node, parent);
        if adj[parent].len() >= max {
            open.swap_remove(slot);
        }
        if adj[node].len() < max {
            open.push(node);
        }
    }
    // Every node up to `min`, pairing low nodes together where possible.
    let mut low: Vec<usize> = (0..n).filter(|&a| adj[a].len() < min).collect();
    low.shuffle(rng);
    while let Some(&a) = low.last() {
        if adj[a].len() >= min {
            low.pop();
            continue;
        }
        let free = |adj: &Vec<BTreeSet<usize>>, b: usize| {
            b != a && !adj[a].contains(&b) && adj[b].len() < max
        };
        let partner = low
            .iter()
            .copied()
            .filter(|&b| adj[b].len() < min && free(&adj, b))
            .collect::<Vec<_>>()
            .choose(rng)
            .copied()
            .or_else(|| {
                (0..64)
                    .map(|_| rng.gen_range(0..n))
                    .find(|&b| free(&adj, b))
            })
            .or_else(|| {
                let all: Vec<usize> = (0..n).filter(|&b| free(&adj, b)).collect();
                all.choose(rng).copied()
            });
        if let Some(b) = partner {
            link(&mut adj, a, b);
            continue;
        }
        // Every possible partner is full or already a neighbour: take an edge
        // (u, v) away from a and give a both ends, which keeps u and v's
        // degrees and raises a's by two.
        if adj[a].len() + 2 > max {
            return None;
        }
        let far: Vec<(usize, usize)> = (0..n)
            .filter(|&u| u != a && !adj[a].contains(&u))
            .flat_map(|u| adj[u].iter().map(move |&v| (u, v)))
            .filter(|&(u, v)| u < v && v != a && !adj[a].contains(&v))
            .collect();
        let &(u, v) = far.choose(rng)?;
        adj[u].remove(&v);
        adj[v].remove(&u);
        link(&mut adj, a, u);
        link(&mut adj, a, v);
    }
    // Random edges within `max` up to the mean target.
    let target = (n * mean).div_ceil(2);
    let mut count = adj.iter().map(BTreeSet::len).sum::<usize>() / 2;
    let mut attempts = 0usize;
    while count < target && attempts < target * 100 {
        attempts += 1;
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b && !adj[a].contains(&b) && adj[a].len() < max && adj[b].len() < max {
            link(&mut adj, a, b);
            count += 1;
        }
    }
    Some(adj)
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
