//! Running a topology's `[scenario]` on the [`Harness`]: place a block near
//! a location at the holders, have the requester ask for it, and collect the
//! trace `veil trace` prints.

use crate::keys::{Block, Chk, Location};
use crate::message::Uid;
use crate::routing::{Anonymity, ClientOutcome, ClientToken, RouterConfig};
use crate::sim::harness::Harness;
use crate::sim::topology::Topology;

/// Make a real block whose routing key lies within `tolerance` (a fraction of
/// the circle) of `target`. Deterministic: the same target gives the same block.
pub fn block_near(target: Location, tolerance: f64) -> (Chk, Block) {
    let limit = Location::from_f64(tolerance).0;
    let mut n: u64 = 0;
    loop {
        let data = format!("veil scenario block {n}");
        // Short data always fits in a block.
        if let Ok((chk, block)) = Chk::encode(data.as_bytes()) {
            if chk.routing.location().distance(target) <= limit {
                return (chk, block);
            }
        }
        n += 1;
    }
}

/// The result of running a topology's scenario.
pub struct ScenarioRun {
    pub harness: Harness,
    pub chk: Chk,
    pub token: ClientToken,
    pub uid: Option<Uid>,
    pub lines: Vec<String>,
    pub found: bool,
}

impl ScenarioRun {
    /// The `veil trace` output: one line per message of the request, then
    /// `outcome: found` or `outcome: not found`, each ended by a newline.
    pub fn render_text(&self) -> String {
        let outcome = if self.found { "found" } else { "not found" };
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("outcome: {outcome}\n"));
        text
    }
}

/// Run `[scenario]`: place a block near `key_location` at the holders, have
/// the requester ask for it, and collect the trace.
pub fn run_scenario(topology: &Topology, seed: u64) -> Option<ScenarioRun> {
    run_scenario_in(topology, seed, Anonymity::None)
}

/// [`run_scenario`] with every node in anonymity `mode`.
pub fn run_scenario_in(topology: &Topology, seed: u64, mode: Anonymity) -> Option<ScenarioRun> {
    let scenario = topology.scenario.as_ref()?;
    let config = RouterConfig {
        max_htl: scenario.htl,
        ..RouterConfig::default()
    };
    let mut harness = Harness::with_mode(topology, config, seed, mode);
    let (chk, block) = block_near(scenario.key_location, 0.001);
    for &h in &scenario.holders {
        harness.place(h, block.clone());
    }
    let token = harness.get(scenario.requester, chk.routing);
    harness.run(1_000_000);
    let uid = harness.clients.get(&token).and_then(|c| c.uid);
    let lines = uid.map(|u| harness.trace_lines(u)).unwrap_or_default();
    let found = matches!(harness.outcome(token), Some(ClientOutcome::Found(_)));
    Some(ScenarioRun {
        harness,
        chk,
        token,
        uid,
        lines,
        found,
    })
}
