//! Failures in `veil testnet run`: nodes killed for good after the inserts
//! (`--kill`), nodes SIGKILLed during the fetch phase and restarted after a
//! seeded session length (`--churn`), and, for every file, which of its
//! blocks still had a holder that stayed up (the reason a fetch can fail).
//!
//! Session lengths follow the lognormal fit of Roos et al. 2014 for the
//! Freenet network (μ = 4.5774, σ = 1.8235, in minutes; median about 97
//! minutes), scaled so that one minute of the paper lasts `ms_per_minute`
//! milliseconds here (default [`DEFAULT_MS_PER_MINUTE`]: a median of about
//! 4.9 s). A churned node is killed at a seeded moment in the first
//! [`KILL_SPREAD`] of the fetch phase and stays down for one such session
//! length; one still down when the fetches end stays down.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use tokio::time::Instant;

use super::{Testnet, TestnetError};
use crate::audit::log::AUDIT_FILE;
use crate::formats::audit_log::{AuditEvent, AuditLine};
use crate::keys::RoutingKey;

/// Roos et al. 2014, Freenet session lengths: lognormal μ (ln minutes).
pub const SESSION_MU: f64 = 4.5774;
/// Roos et al. 2014, Freenet session lengths: lognormal σ.
pub const SESSION_SIGMA: f64 = 1.8235;
/// Milliseconds of the testnet per minute of a measured session.
pub const DEFAULT_MS_PER_MINUTE: u64 = 50;
/// Churned nodes are killed within this long after the fetch phase starts.
pub const KILL_SPREAD: Duration = Duration::from_secs(2);

/// What `--kill`, `--churn` and `--churn-scale` ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Failures {
    /// Fraction of the non-fetching nodes killed for good after the inserts.
    pub kill: f64,
    /// Fraction of the (remaining) non-fetching nodes churned while fetching.
    pub churn: f64,
    /// Testnet milliseconds per minute of a measured session length.
    pub ms_per_minute: u64,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            kill: 0.0,
            churn: 0.0,
            ms_per_minute: DEFAULT_MS_PER_MINUTE,
        }
    }
}

impl Failures {
    /// Does the run kill anything (and so insert everything before fetching)?
    pub fn any(&self) -> bool {
        self.kill > 0.0 || self.churn > 0.0
    }
}

/// One churned node's down time.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ChurnEvent {
    pub node: String,
    /// When it was killed, after the fetch phase began.
    pub killed_at_ms: u64,
    /// The session length drawn for it (scaled).
    pub down_ms: u64,
    /// Was it restarted before the fetches ended?
    pub restarted: bool,
}

/// Which of one file's blocks still had a holder that stayed up.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct FileHolders {
    pub file: usize,
    pub blocks: usize,
    /// Blocks held (stored or cached, per the audit logs) only at nodes that
    /// were killed or churned, or nowhere.
    pub without_live_holder: usize,
    /// One such block and where it was held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

/// What the failures did, for the run's report.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct FailureReport {
    pub kill_fraction: f64,
    pub churn_fraction: f64,
    pub ms_per_minute: u64,
    /// Nodes killed for good after the inserts.
    pub killed: Vec<String>,
    pub churned: Vec<ChurnEvent>,
    pub files: Vec<FileHolders>,
}

/// `round(fraction * len)` of `candidates`, chosen with `rng`, sorted.
pub fn choose(rng: &mut impl Rng, candidates: &[String], fraction: f64) -> Vec<String> {
    let n = (fraction.clamp(0.0, 1.0) * candidates.len() as f64).round() as usize;
    let mut chosen: Vec<String> = candidates.choose_multiple(rng, n).cloned().collect();
    chosen.sort();
    chosen
}

/// One session length drawn from the Roos et al. lognormal, scaled.
pub fn session_ms(rng: &mut impl Rng, ms_per_minute: u64) -> u64 {
    // Both parameters are finite constants and σ > 0: this never fails.
    let minutes = LogNormal::new(SESSION_MU, SESSION_SIGMA)
        .map(|d| d.sample(rng))
        .unwrap_or(0.0);
    (minutes * ms_per_minute as f64).min(u64::MAX as f64 / 2.0) as u64
}

/// The seeded churn of one run: (node, kill after, down for), in kill order.
pub fn plan_churn(
    rng: &mut impl Rng,
    victims: &[String],
    ms_per_minute: u64,
) -> Vec<(String, Duration, Duration)> {
    let spread = KILL_SPREAD.as_millis() as u64;
    let mut plan: Vec<_> = victims
        .iter()
        .map(|name| {
            let at = Duration::from_millis(rng.gen_range(0..=spread));
            let down = Duration::from_millis(session_ms(rng, ms_per_minute));
            (name.clone(), at, down)
        })
        .collect();
    plan.sort_by_key(|(_, at, _)| *at);
    plan
}

impl Testnet {
    /// SIGKILL node `name` and reap it. False if no such node is running.
    pub fn kill_node(&mut self, name: &str) -> bool {
        let Some(i) = self.children.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (_, mut child) = self.children.swap_remove(i);
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Start node `name` again from its directory (same identity, ports
    /// and store), appending to its log.
    pub fn restart_node(&mut self, name: &str) -> Result<(), TestnetError> {
        let child = self.spawn(name)?;
        if let Some(info) = self.info.nodes.get_mut(name) {
            info.pid = child.id();
        }
        self.children.push((name.to_string(), child));
        self.info.save(&self.dir)
    }
}

/// Carry out `plan` on `testnet` until `work` finishes, and return what
/// `work` returned and what happened to each churned node.
pub async fn churn_while<T>(
    testnet: &mut Testnet,
    plan: &[(String, Duration, Duration)],
    work: impl Future<Output = T>,
    on_step: &impl Fn(&str),
) -> Result<(T, Vec<ChurnEvent>), TestnetError> {
    let start = Instant::now();
    // (when, index into plan, kill?) in time order.
    let mut timeline: Vec<(Duration, usize, bool)> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, (_, at, down))| [(*at, i, true), (*at + *down, i, false)])
        .collect();
    timeline.sort();
    let mut events: Vec<ChurnEvent> = plan
        .iter()
        .map(|(node, at, down)| ChurnEvent {
            node: node.clone(),
            killed_at_ms: at.as_millis() as u64,
            down_ms: down.as_millis() as u64,
            restarted: false,
        })
        .collect();
    tokio::pin!(work);
    let mut next = timeline.into_iter();
    let mut due = next.next();
    let out = loop {
        let wake = due.map(|(when, ..)| start + when);
        tokio::select! {
            out = &mut work => break out,
            _ = sleep_until_opt(wake) => {
                let Some((_, i, kill)) = due else { continue };
                let name = &plan[i].0;
                if kill {
                    testnet.kill_node(name);
                    on_step(&format!("churn: killed {name}"));
                } else {
                    testnet.restart_node(name)?;
                    events[i].restarted = true;
                    on_step(&format!("churn: restarted {name}"));
                }
                due = next.next();
            }
        }
    };
    Ok((out, events))
}

async fn sleep_until_opt(when: Option<Instant>) {
    match when {
        Some(w) => tokio::time::sleep_until(w).await,
        None => std::future::pending().await,
    }
}

/// Every node's held blocks (stored, and cached unless `cached` is false:
/// nodes without a cache log cache writes they then drop), from its audit
/// log. A killed node's last lines may be missing: it is no holder then
/// anyway.
pub fn holders<'a>(
    dir: &Path,
    names: impl Iterator<Item = &'a String>,
    cached: bool,
) -> HashMap<RoutingKey, BTreeSet<String>> {
    let mut held: HashMap<RoutingKey, BTreeSet<String>> = HashMap::new();
    for name in names {
        let Ok(text) = std::fs::read_to_string(dir.join(name).join(AUDIT_FILE)) else {
            continue;
        };
        for line in text.lines() {
            let Ok(line) = serde_json::from_str::<AuditLine>(line) else {
                continue;
            };
            match line.event {
                AuditEvent::BlockStored { key } => {
                    held.entry(key).or_default().insert(name.clone());
                }
                AuditEvent::BlockCached { key } if cached => {
                    held.entry(key).or_default().insert(name.clone());
                }
                _ => {}
            }
        }
    }
    held
}

/// How many of `keys` have no holder outside `down`, and one example.
pub fn file_holders(
    file: usize,
    keys: &[RoutingKey],
    held: &HashMap<RoutingKey, BTreeSet<String>>,
    down: &BTreeSet<String>,
) -> FileHolders {
    let empty = BTreeSet::new();
    let mut example = None;
    let mut without = 0;
    for key in keys {
        let at = held.get(key).unwrap_or(&empty);
        if at.iter().all(|n| down.contains(n)) {
            without += 1;
            if example.is_none() {
                let at: Vec<&str> = at.iter().map(String::as_str).collect();
                let at = if at.is_empty() {
                    "no node".to_string()
                } else {
                    at.join(", ")
                };
                example = Some(format!("{} held only at {at}", key.to_base64()));
            }
        }
    }
    FileHolders {
        file,
        blocks: keys.len(),
        without_live_holder: without,
        example,
    }
}

impl FileHolders {
    /// Why a fetch of this file failed with `error`.
    pub fn reason(&self, error: &str) -> String {
        match &self.example {
            Some(example) => format!(
                "{} of {} blocks had no holder that stayed up (e.g. {example}); {error}",
                self.without_live_holder, self.blocks
            ),
            None => format!("every block had a holder that stayed up; {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn session_lengths_follow_the_scaled_lognormal() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut v: Vec<u64> = (0..4001).map(|_| session_ms(&mut rng, 1000)).collect();
        v.sort_unstable();
        // The median of the fit is e^4.5774 = 97.3 minutes.
        let median_minutes = v[2000] as f64 / 1000.0;
        assert!((85.0..110.0).contains(&median_minutes), "{median_minutes}");
        let mut again = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(session_ms(&mut again, 1000), {
            let mut r = ChaCha8Rng::seed_from_u64(3);
            session_ms(&mut r, 1000)
        });
    }

    #[test]
    fn victims_are_a_seeded_rounded_fraction() {
        let names: Vec<String> = (0..22).map(|i| format!("n{i:02}")).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = choose(&mut rng, &names, 0.25);
        assert_eq!(a.len(), 6);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(a, choose(&mut rng, &names, 0.25));
        assert!(choose(&mut rng, &names, 0.0).is_empty());
        let plan = plan_churn(&mut rng, &a, 50);
        assert_eq!(plan.len(), 6);
        assert!(plan.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(plan.iter().all(|(_, at, _)| *at <= KILL_SPREAD));
    }

    #[test]
    fn a_block_held_only_at_dead_nodes_has_no_live_holder() {
        let k = |b: u8| RoutingKey([b; 32]);
        let mut held: HashMap<RoutingKey, BTreeSet<String>> = HashMap::new();
        held.entry(k(1)).or_default().insert("a".into());
        held.entry(k(1)).or_default().insert("b".into());
        held.entry(k(2)).or_default().insert("a".into());
        let down: BTreeSet<String> = ["a".to_string()].into();
        let f = file_holders(0, &[k(1), k(2), k(3)], &held, &down);
        assert_eq!((f.blocks, f.without_live_holder), (3, 2));
        assert!(
            f.reason("x").starts_with("2 of 3 blocks"),
            "{}",
            f.reason("x")
        );
        let none = file_holders(0, &[k(1)], &held, &down);
        assert!(none.reason("timed out").starts_with("every block"));
    }
}
