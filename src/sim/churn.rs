//! Churn for `veil sim --churn MINUTES`: nodes leave and rejoin during the
//! lookups, with seeded, log-normal session and downtime lengths.
//!
//! Each node alternates between online sessions and offline periods. A
//! session lasts `exp(μ + σ·Z)` minutes, `Z` standard normal; the default
//! μ = 4.5774, σ = 1.8235 is Roos et al. 2014's fit to Freenet's measured
//! session lengths (median `e^μ` ≈ 97 minutes, mean ≈ 510 minutes: most
//! sessions are short, a few last days). Downtimes are log-normal too, with
//! the same parameters unless `--downtime` says otherwise (an assumption of
//! ours, not a measured figure): a node then spends about half its time
//! offline in the long run. Every node starts online, at the start of a
//! fresh session, when the lookups start.
//!
//! The lookups are spread evenly over `MINUTES` of session time; before
//! each lookup the events due by its start are applied (a leaving node's
//! neighbours see the link drop; a returning node reconnects to the
//! neighbours that are online and keeps its datastore). A lookup itself
//! takes seconds of virtual time, far below a session's minutes, and runs
//! on the membership it started with.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::model::NodeIx;

/// A log-normal distribution of minutes: `exp(mu + sigma * Z)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LogNormalMinutes {
    pub mu: f64,
    pub sigma: f64,
}

impl LogNormalMinutes {
    /// Roos et al. 2014: Freenet session lengths in minutes.
    pub const FREENET_SESSIONS: LogNormalMinutes = LogNormalMinutes {
        mu: 4.5774,
        sigma: 1.8235,
    };

    /// One draw, in minutes.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        // Box-Muller: one standard normal from two uniforms.
        let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.gen();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (self.mu + self.sigma * z).exp()
    }

    /// The median, `e^mu` minutes.
    pub fn median(&self) -> f64 {
        self.mu.exp()
    }
}

impl FromStr for LogNormalMinutes {
    type Err = String;

    /// `MU,SIGMA`, e.g. `4.5774,1.8235`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad log-normal {s:?} (MU,SIGMA of minutes, e.g. 4.5774,1.8235)");
        let (m, g) = s.split_once(',').ok_or_else(bad)?;
        let mu: f64 = m.trim().parse().map_err(|_| bad())?;
        let sigma: f64 = g.trim().parse().map_err(|_| bad())?;
        if mu.is_finite() && (-10.0..=20.0).contains(&mu) && sigma.is_finite() && sigma >= 0.0 {
            Ok(LogNormalMinutes { mu, sigma })
        } else {
            Err(bad())
        }
    }
}

/// How much churn a run has.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ChurnSpec {
    /// Session time the lookups are spread over; 0 means no churn.
    pub minutes: f64,
    pub session: LogNormalMinutes,
    pub downtime: LogNormalMinutes,
}

impl Default for ChurnSpec {
    fn default() -> Self {
        ChurnSpec {
            minutes: 0.0,
            session: LogNormalMinutes::FREENET_SESSIONS,
            downtime: LogNormalMinutes::FREENET_SESSIONS,
        }
    }
}

impl ChurnSpec {
    pub fn is_on(&self) -> bool {
        self.minutes > 0.0
    }
}

/// A node going offline (`online == false`) or coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChurnEvent {
    pub node: NodeIx,
    pub online: bool,
}

/// Milliseconds of session time: an exact order for the event heap.
type Ms = u64;

fn ms(minutes: f64) -> Ms {
    // Sessions of over ~30 million years saturate; nothing else is lost.
    (minutes * 60_000.0).clamp(1.0, 1e18) as Ms
}

/// The schedule: each node's next event, in time order. One entry per
/// taking-part node, so the heap is bounded by N however long the run.
pub struct Churn {
    spec: ChurnSpec,
    rng: ChaCha8Rng,
    next: BinaryHeap<Reverse<(Ms, NodeIx, bool)>>,
    pub leaves: u64,
    pub joins: u64,
}

impl Churn {
    /// Every node of `nodes` starts online at time 0 with a fresh session.
    pub fn new(spec: ChurnSpec, nodes: impl IntoIterator<Item = NodeIx>, seed: u64) -> Churn {
        // A stream of its own: churn does not move the workload's draws.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC40A_5E55_1095);
        let next = nodes
            .into_iter()
            .map(|n| Reverse((ms(spec.session.sample(&mut rng)), n, false)))
            .collect();
        Churn {
            spec,
            rng,
            next,
            leaves: 0,
            joins: 0,
        }
    }

    /// The session time (ms) at which lookup `i` of `count` starts.
    pub fn lookup_time(&self, i: usize, count: usize) -> Ms {
        (self.spec.minutes * 60_000.0 * i as f64 / count.max(1) as f64) as Ms
    }

    /// The next event due at or before `now`, if any; each event schedules
    /// the node's following one.
    pub fn due(&mut self, now: Ms) -> Option<ChurnEvent> {
        let &Reverse((at, node, online)) = self.next.peek()?;
        if at > now {
            return None;
        }
        self.next.pop();
        let length = if online {
            self.joins += 1;
            self.spec.session.sample(&mut self.rng)
        } else {
            self.leaves += 1;
            self.spec.downtime.sample(&mut self.rng)
        };
        self.next
            .push(Reverse((at.saturating_add(ms(length)), node, !online)));
        Some(ChurnEvent { node, online })
    }
}

/// The nodes online now, with uniform sampling and O(1) updates.
pub struct Members {
    list: Vec<NodeIx>,
    /// Position of each node in `list`, `u32::MAX` when absent.
    at: Vec<u32>,
}

impl Members {
    pub fn new(n: usize, online: impl IntoIterator<Item = NodeIx>) -> Members {
        let mut m = Members {
            list: Vec::new(),
            at: vec![u32::MAX; n],
        };
        for node in online {
            m.add(node);
        }
        m
    }

    pub fn add(&mut self, node: NodeIx) {
        if self.at[node as usize] == u32::MAX {
            self.at[node as usize] = self.list.len() as u32;
            self.list.push(node);
        }
    }

    pub fn remove(&mut self, node: NodeIx) {
        let i = self.at[node as usize];
        if i == u32::MAX {
            return;
        }
        self.list.swap_remove(i as usize);
        if let Some(&moved) = self.list.get(i as usize) {
            self.at[moved as usize] = i;
        }
        self.at[node as usize] = u32::MAX;
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn contains(&self, node: NodeIx) -> bool {
        self.at[node as usize] != u32::MAX
    }

    /// A uniformly random member.
    pub fn pick(&self, rng: &mut impl Rng) -> Option<NodeIx> {
        (!self.list.is_empty()).then(|| self.list[rng.gen_range(0..self.list.len())])
    }

    pub fn as_slice(&self) -> &[NodeIx] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_follow_the_fit_and_parse() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = LogNormalMinutes::FREENET_SESSIONS;
        let mut draws: Vec<f64> = (0..20_001).map(|_| d.sample(&mut rng)).collect();
        draws.sort_by(f64::total_cmp);
        let median = draws[10_000];
        assert!((85.0..110.0).contains(&median), "median {median}");
        assert_eq!("4.5774,1.8235".parse::<LogNormalMinutes>(), Ok(d));
        assert!("1".parse::<LogNormalMinutes>().is_err());
        assert!("1,-2".parse::<LogNormalMinutes>().is_err());
        assert!("nan,1".parse::<LogNormalMinutes>().is_err());
    }

    #[test]
    fn events_alternate_per_node_and_replay() {
        let spec = ChurnSpec {
            minutes: 600.0,
            ..ChurnSpec::default()
        };
        let run = || {
            let mut c = Churn::new(spec, 0..50, 9);
            let mut out = Vec::new();
            while let Some(e) = c.due(ms(600.0)) {
                out.push(e);
            }
            (out, c.leaves, c.joins)
        };
        let (events, leaves, joins) = run();
        assert_eq!(run().0, events);
        assert!(leaves > 10 && joins > 0, "{leaves} {joins}");
        let mut online = [true; 50];
        for e in &events {
            assert_ne!(online[e.node as usize], e.online, "{e:?}");
            online[e.node as usize] = e.online;
        }
    }

    #[test]
    fn members_sample_what_is_online() {
        let mut m = Members::new(10, 0..10);
        m.remove(3);
        m.remove(9);
        m.remove(3);
        assert_eq!(m.len(), 8);
        assert!(!m.contains(3) && m.contains(4));
        m.add(3);
        assert!(m.contains(3) && m.len() == 9);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        assert!((0..100).all(|_| m.pick(&mut rng) != Some(9)));
    }
}
