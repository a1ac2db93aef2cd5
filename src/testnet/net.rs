//! The network under a testnet: per-node bandwidth and per-link latency and
//! loss, from an optional `[net]` table of a topology file. The loopback
//! testnet ignores it; `--netns` caps each node's bandwidth with it, and
//! `veil testnet export --shadow` writes all of it into Shadow's graph.
//!
//! ```toml
//! [net]
//! bandwidth = "100 Mbit"          # every node, unless it has its own
//! latency = "lognormal:40,0.5"    # links without their own (veil sim's models)
//! nodes = { C = { bandwidth = "2 Mbit" } }
//! links = [{ between = ["A", "B"], latency_ms = 20, loss = 0.01 }]
//! ```
//!
//! Every key is optional. The rest of the file is an ordinary topology
//! (`crate::sim::topology`), read by the same parser.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::sim::latency::Latency;
use crate::sim::topology::{Topology, TopologyError};

/// Why a `[net]` table was refused.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("[net]: {0}")]
    Invalid(String),
}

/// A bandwidth in bits per second, written `"100 Mbit"`, `"512 Kbit"`,
/// `"1 Gbit"` or a bare number of bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bandwidth(pub u64);

impl FromStr for Bandwidth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad bandwidth {s:?} (e.g. \"100 Mbit\", \"512 Kbit\", \"1 Gbit\")");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().trim_end_matches("/s").trim_end_matches('s') {
            "" | "bit" => 1,
            "Kbit" | "kbit" => 1_000,
            "Mbit" => 1_000_000,
            "Gbit" => 1_000_000_000,
            _ => return Err(bad()),
        };
        match n.checked_mul(mult) {
            Some(bits) if bits >= 8_000 => Ok(Bandwidth(bits)),
            Some(_) => Err(format!("bandwidth {s:?} is below 8 Kbit")),
            None => Err(bad()),
        }
    }
}

impl fmt::Display for Bandwidth {
    /// In the largest unit that divides it: `100 Mbit`, `1500 Kbit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.is_multiple_of(1_000_000_000) {
            write!(f, "{} Gbit", b / 1_000_000_000)
        } else if b.is_multiple_of(1_000_000) {
            write!(f, "{} Mbit", b / 1_000_000)
        } else if b.is_multiple_of(1_000) {
            write!(f, "{} Kbit", b / 1_000)
        } else {
            write!(f, "{b} bit")
        }
    }
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bits(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bits(n) => Bandwidth::from_str(&n.to_string()),
            Raw::Text(t) => Bandwidth::from_str(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    bandwidth: Option<Bandwidth>,
    #[serde(default)]
    latency: Option<String>,
    #[serde(default)]
    nodes: BTreeMap<String, RawNetNode>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetNode {
    #[serde(default)]
    bandwidth: Option<Bandwidth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    between: (String, String),
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    loss: Option<f64>,
}

/// One link's own latency and loss, where the `[net]` table gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkSpec {
    pub latency_ms: Option<u64>,
    pub loss: Option<f64>,
}

/// The `[net]` table, resolved against the topology's node names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetSpec {
    /// Every node's bandwidth unless `node_bandwidth` has its own.
    pub bandwidth: Option<Bandwidth>,
    /// The latency model of links without their own.
    pub latency: Option<Latency>,
    /// By node index.
    pub node_bandwidth: BTreeMap<usize, Bandwidth>,
    /// By edge (smaller index first).
    pub links: BTreeMap<(usize, usize), LinkSpec>,
}

impl NetSpec {
    /// Node `i`'s bandwidth, if any is set.
    pub fn bandwidth_of(&self, i: usize) -> Option<Bandwidth> {
        self.node_bandwidth.get(&i).copied().or(self.bandwidth)
    }

    /// Does it ask for latency or loss anywhere?
    pub fn wants_delay_or_loss(&self) -> bool {
        self.latency.is_some()
            || self
                .links
                .values()
                .any(|l| l.latency_ms.is_some() || l.loss.is_some_and(|p| p > 0.0))
    }
}

/// A topology file and its `[net]` table.
#[derive(Clone, Debug)]
pub struct NetTopology {
    pub topology: Topology,
    pub net: NetSpec,
}

impl NetTopology {
    pub fn load(path: &Path) -> Result<NetTopology, NetError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        NetTopology::parse(&text)
    }

    /// Parse a topology file, taking its `[net]` table out before the
    /// topology parser sees the rest.
    pub fn parse(text: &str) -> Result<NetTopology, NetError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| NetError::Syntax(e.to_string()))?;
        let Some(raw) = table.remove("net") else {
            // The file as written, so that errors point into it.
            return Ok(NetTopology {
                topology: Topology::parse(text)?,
                net: NetSpec::default(),
            });
        };
        let raw: RawNet = raw
            .try_into()
            .map_err(|e: toml::de::Error| NetError::Invalid(e.message().to_string()))?;
        let rest = toml::to_string(&table).map_err(|e| NetError::Syntax(e.to_string()))?;
        let topology = Topology::parse(&rest)?;
        let net = resolve(raw, &topology)?;
        Ok(NetTopology { topology, net })
    }
}

fn resolve(raw: RawNet, topology: &Topology) -> Result<NetSpec, NetError> {
    let index = |name: &str| {
        topology
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| NetError::Invalid(format!("unknown node {name:?}")))
    };
    let latency = raw
        .latency
        .as_deref()
        .map(Latency::from_str)
        .transpose()
        .map_err(NetError::Invalid)?;
    let mut node_bandwidth = BTreeMap::new();
    for (name, node) in raw.nodes {
        if let Some(b) = node.bandwidth {
            node_bandwidth.insert(index(&name)?, b);
        }
    }
    let mut links = BTreeMap::new();
    for link in raw.links {
        let (a, b) = (index(&link.between.0)?, index(&link.between.1)?);
        let key = (a.min(b), a.max(b));
        if !topology.edges.contains(&key) {
            return Err(NetError::Invalid(format!(
                "no edge between {:?} and {:?}",
                link.between.0, link.between.1
            )));
        }
        if link.latency_ms == Some(0) {
            return Err(NetError::Invalid(format!(
                "link {:?}-{:?}: latency_ms must be at least 1",
                link.between.0, link.between.1
            )));
        }
        if let Some(p) = link.loss.filter(|p| !(0.0..1.0).contains(p)) {
            return Err(NetError::Invalid(format!(
                "link {:?}-{:?}: loss {p} is not in [0, 1)",
                link.between.0, link.between.1
            )));
        }
        links.insert(
            key,
            LinkSpec {
                latency_ms: link.latency_ms,
                loss: link.loss,
            },
        );
    }
    Ok(NetSpec {
        bandwidth: raw.bandwidth,
        latency,
        node_bandwidth,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
edges = [["A","B"], ["B","C"]]
[nodes]
A = { location = 0.1 }
B = { location = 0.5 }
C = { location = 0.9 }
[net]
bandwidth = "100 Mbit"
latency = "lognormal:40,0.5"
nodes = { C = { bandwidth = "2 Mbit" } }
links = [{ between = ["B", "A"], latency_ms = 20, loss = 0.01 }]
"#;

    #[test]
    fn the_net_table_is_read_beside_an_ordinary_topology() {
        let t = NetTopology::parse(FILE).unwrap();
        assert_eq!(t.topology.nodes.len(), 3);
        assert_eq!(t.net.bandwidth_of(0), Some(Bandwidth(100_000_000)));
        assert_eq!(t.net.bandwidth_of(2), Some(Bandwidth(2_000_000)));
        assert_eq!(t.net.links[&(0, 1)].latency_ms, Some(20));
        assert!(t.net.wants_delay_or_loss());
        let plain =
            NetTopology::parse("edges = [[\"A\",\"B\"]]\n[nodes]\nA = {}\nB = {}\n").unwrap();
        assert_eq!(plain.net, NetSpec::default());
        assert!(!plain.net.wants_delay_or_loss());
    }

    #[test]
    fn bad_net_tables_are_refused_by_name() {
        let bad = |from: &str, to: &str| {
            let text = FILE.replace(from, to);
            NetTopology::parse(&text).unwrap_err().to_string()
        };
        assert!(bad("\"2 Mbit\"", "\"2 parsecs\"").contains("bad bandwidth"));
        assert!(bad("[\"B\", \"A\"]", "[\"A\", \"C\"]").contains("no edge"));
        assert!(bad("loss = 0.01", "loss = 1.5").contains("not in [0, 1)"));
        assert!(bad("latency_ms = 20", "latency_ms = 0").contains("at least 1"));
        assert!(bad("C = { bandwidth", "Z = { bandwidth").contains("unknown node"));
        assert!(bad("lognormal:40,0.5", "gaussian:1").contains("bad latency"));
    }

    #[test]
    fn bandwidths_read_and_print_in_shadow_units() {
        assert_eq!("100 Mbit".parse(), Ok(Bandwidth(100_000_000)));
        assert_eq!("512Kbit".parse(), Ok(Bandwidth(512_000)));
        assert_eq!("1 Gbit".parse(), Ok(Bandwidth(1_000_000_000)));
        assert!("10 bit".parse::<Bandwidth>().is_err());
        assert_eq!(Bandwidth(2_000_000).to_string(), "2 Mbit");
        assert_eq!(Bandwidth(1_500_000).to_string(), "1500 Kbit");
    }
}
