//! A search's life in the pool once it has started: its steps, its end,
//! and what ends it early (a lost link, a timeout). Part of [`Router`].

use super::search::{Answer, Keep, Search, Step, View};
use super::{Action, ClientOutcome, Ctx, Flow, InsertEnd, Lookahead, Op, PeerId, Router};
use crate::message::Uid;

impl<P: PeerId> Router<P> {
    pub(super) fn on_link_down(&mut self, cx: &mut Ctx<'_, P>, peer: P) {
        self.neighbours.remove(&peer);
        // A search waiting on the lost peer ends as a timeout would (rule 6).
        let stalled = self.waiting_flows(|s| s.waiting_on() == Some(&peer));
        for flow in stalled {
            self.give_up(cx, flow);
        }
        if self.tunnels_used {
            self.on_tunnel_link_down(cx, &peer);
        }
    }

    pub(super) fn on_tick(&mut self, cx: &mut Ctx<'_, P>) {
        let now = cx.now;
        let expired = self.waiting_flows(|s| s.deadline().is_some_and(|d| d <= now));
        for flow in expired {
            self.stats.timeouts += 1;
            self.give_up(cx, flow);
        }
    }

    /// The flows of the searches matching `pred`, in (uid, key) order.
    pub(super) fn waiting_flows(&self, pred: impl Fn(&Search<P>) -> bool) -> Vec<Flow> {
        self.searches
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(flow, _)| *flow)
            .collect()
    }

    pub(super) fn give_up(&mut self, cx: &mut Ctx<'_, P>, flow: Flow) {
        if let Some(answer) = self.searches.get(&flow).map(Search::give_up) {
            self.finish(cx, flow, answer);
        }
    }

    /// Add a new search to the pool and take its first step.
    pub(super) fn start(&mut self, cx: &mut Ctx<'_, P>, uid: Uid, mut search: Search<P>) {
        let flow = (uid, search.key());
        // Rule 8 (`insert_end = "sink"`): an insert at a sink stores here
        // and ends soon after.
        let foaf = self.config.lookahead == Lookahead::Foaf;
        if search.op() == Op::Put
            && self.config.insert_end == InsertEnd::Sink
            && self
                .neighbours
                .none_closer(self.location, flow.1.location(), foaf)
        {
            search.stop_at_sink(self.config.replicate_htl);
        }
        let view = View {
            now: cx.now,
            neighbours: &self.neighbours,
            config: &self.config,
        };
        let step = search.next_hop(&view);
        self.searches.insert(flow, search);
        self.take(cx, flow, step);
    }

    /// Carry out a search's step.
    pub(super) fn take(&mut self, cx: &mut Ctx<'_, P>, flow: Flow, step: Step<P>) {
        self.drop_alias(flow);
        match step {
            Step::Forward { to, msg } => {
                // Replies carry only the uid: a flow sharing its uid with a
                // flow already waiting on `to` goes there under an alias, so
                // it is routed exactly as a fresh uid would be.
                let shared = self
                    .flows_of(flow.0)
                    .any(|(f, s)| *f != flow && s.waiting_on() == Some(&to));
                let msg = if shared {
                    let mut alias = cx.rng.next_u64();
                    while self.is_handling(alias) || self.aliases.contains_key(&(to.clone(), alias))
                    {
                        alias = cx.rng.next_u64();
                    }
                    self.aliases.insert((to.clone(), alias), flow);
                    self.alias_of.insert(flow, (to.clone(), alias));
                    msg.with_uid(alias)
                } else {
                    msg
                };
                cx.out.push(Action::Send { to, msg })
            }
            Step::Finished(answer) => self.finish(cx, flow, answer),
        }
    }

    pub(super) fn drop_alias(&mut self, flow: Flow) {
        // Nearly always empty: skip the call and the tree's search.
        if self.alias_of.is_empty() {
            return;
        }
        if let Some(key) = self.alias_of.remove(&flow) {
            self.aliases.remove(&key);
        }
    }

    /// Forget the flow and deliver the answer upstream.
    pub(super) fn finish(&mut self, cx: &mut Ctx<'_, P>, flow: Flow, answer: Answer<P>) {
        let search_op = match self.searches.remove(&flow).map(|s| s.op()) {
            Some(op) => op,
            None => Op::Get,
        };
        match answer {
            Answer::Peer { peer, keep, msg } => {
                if let Some(n) = self.neighbours.get_mut(&peer) {
                    n.inflight = n.inflight.saturating_sub(1);
                }
                match keep {
                    Some(Keep::Cache(block)) => cx.out.push(Action::CacheBlock { block }),
                    Some(Keep::Store(block)) => cx.out.push(Action::StoreBlock { block }),
                    None => {}
                }
                // A search whose upstream link is gone has no one to answer.
                if self.neighbours.contains_key(&peer) {
                    cx.out.push(Action::Send { to: peer, msg });
                }
            }
            // A search this node runs as a tunnel's exit answers the tunnel.
            Answer::Client { token, outcome } => match self
                .tunnels_used
                .then(|| self.tunnels.take_exit_job(flow))
                .flatten()
            {
                Some(job) => self.exit_answer(cx, job, outcome),
                None => {
                    // A failed get, or any insert: its repeat goes elsewhere.
                    let op = match outcome {
                        ClientOutcome::Found(_) => None,
                        ClientOutcome::Inserted => Some(Op::Put),
                        ClientOutcome::Failed(_) => Some(search_op),
                    };
                    if let Some(op) = op {
                        self.repeats
                            .get_or_insert_with(Box::default)
                            .note(op, flow.1);
                    }
                    cx.out.push(Action::ClientDone { token, outcome })
                }
            },
        }
    }
}
