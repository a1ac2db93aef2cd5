//! The holder: does the node that answered a search hold the data? For
//! every search that found its block, the requester (the client's node in
//! `none`/`freenet`, the exit in `tunnel`) got `DataFound` from one
//! neighbour; the holder is the node that sent `DataFound` for that flow
//! without having received one (it answered from its store or cache). The
//! figure is P(holder | the neighbour that answered), what a requester, or an
//! exit it controls, would conclude by naming its answering neighbour as the
//! holder. No verdict rides on it; it is reported.

use std::collections::{HashMap, HashSet};

use super::load::Run;
use super::report::HolderReport;
use super::signals::wilson;
use crate::message::{MessageKind, Uid};

/// P(the answering neighbour held the block), over every search found.
pub(super) fn measure(run: &Run) -> HolderReport {
    // Per flow: the node that answered from what it held.
    let mut source: HashMap<Uid, &str> = HashMap::new();
    // Per flow: (requester, the neighbour it got DataFound from).
    let mut answered: Vec<(Uid, &str)> = Vec::new();
    for node in &run.nodes {
        let mut got: HashMap<Uid, &str> = HashMap::new();
        let mut passed_on: HashSet<Uid> = HashSet::new();
        for line in node
            .events
            .iter()
            .filter(|l| l.kind == MessageKind::DataFound)
        {
            if line.sent {
                passed_on.insert(line.flow);
                if !got.contains_key(&line.flow) {
                    source.entry(line.flow).or_insert(node.name.as_str());
                }
            } else {
                got.entry(line.flow).or_insert(line.peer.as_str());
            }
        }
        answered.extend(
            got.into_iter()
                .filter(|(flow, _)| !passed_on.contains(flow)),
        );
    }
    let searches = answered.len();
    let from_holder = answered
        .iter()
        .filter(|(flow, from)| source.get(flow) == Some(from))
        .count();
    let (low, high) = wilson(from_holder, searches);
    HolderReport {
        searches,
        from_holder,
        p: (searches > 0).then(|| from_holder as f64 / searches as f64),
        interval: (searches > 0).then_some([low, high]),
    }
}
