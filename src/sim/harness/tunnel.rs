//! The harness's support for tunnel sessions: client sessions, the client
//! cache, turning the tunnel mode on, and cutting a node off mid-session.

use crate::keys::{Block, RoutingKey};
use crate::routing::{Action, ClientToken, Event, Op, SessionRequest};
use crate::sim::harness::Harness;

impl Harness {
    /// Route every node's `ClientGet` / `ClientPut` through tunnels.
    pub fn use_tunnels(&mut self) {
        for router in &mut self.routers {
            router.set_client_tunnels(true);
        }
    }

    /// A session fetching `keys` from `node`, through a tunnel.
    pub fn session_get(&mut self, node: usize, keys: Vec<RoutingKey>) -> ClientToken {
        let token = self.new_client(node, Op::Get);
        let request = SessionRequest::Get(keys);
        self.feed(node, Event::ClientSession { token, request });
        token
    }

    /// A session inserting `blocks` from `node`, through a tunnel.
    pub fn session_put(&mut self, node: usize, blocks: Vec<Block>) -> ClientToken {
        let token = self.new_client(node, Op::Put);
        let request = SessionRequest::Put(blocks);
        self.feed(node, Event::ClientSession { token, request });
        token
    }

    /// Cut every link of `node` (both ends see the link go down): the node
    /// is dead to the network. Messages already in flight to it are lost.
    pub fn isolate(&mut self, node: usize) {
        let neighbours = std::mem::take(&mut self.adjacency[node]);
        for peer in neighbours {
            self.adjacency[peer].retain(|&n| n != node);
            self.feed(peer, Event::LinkDown { peer: node });
            self.feed(node, Event::LinkDown { peer });
        }
        self.in_flight
            .retain(|_, (from, to, _)| *from != node && *to != node);
    }

    /// Let `ms` of virtual time pass: run what falls due before, then set
    /// the clock (idle tunnels may expire on the way).
    pub fn idle_for(&mut self, ms: u64, max_steps: usize) {
        let until = self.now.saturating_add(ms);
        self.run_until(until, max_steps);
        self.now = self.now.max(until);
    }

    /// Run until nothing is left, or until the next event falls after `until`.
    pub fn run_until(&mut self, until: u64, max_steps: usize) -> usize {
        let mut steps = 0;
        while steps < max_steps {
            let next_msg = self.queue.peek().map(|std::cmp::Reverse((t, _))| *t);
            let next_timer = self.routers.iter().filter_map(|r| r.next_deadline()).min();
            let next = next_msg.into_iter().chain(next_timer).min();
            if next.is_none_or(|t| t > until) || self.run(1) == 0 {
                break;
            }
            steps += 1;
        }
        steps
    }

    pub(super) fn on_tunnel_action(&mut self, node: usize, action: Action<usize>) {
        match action {
            Action::ClientCacheBlock { block } => {
                self.stores[node].client.insert(block.routing_key(), block);
            }
            Action::SessionDone { token, outcomes } => {
                if let Some(c) = self.clients.get_mut(&token) {
                    c.outcomes = outcomes;
                    c.answers += 1;
                }
            }
            Action::FlowOriginated { flow, .. } => self.flows_originated.push((node, flow)),
            Action::TunnelExit { from, keys, .. } => self.exits.push((node, from, keys)),
            _ => {}
        }
    }
}
