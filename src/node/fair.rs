//! Fairness at the router's door: one bounded queue per link, served round
//! robin, and a token bucket of new requests per peer.
//!
//! Each link's reader task pushes the messages it decodes into its own
//! bounded queue ([`LinkQueue`], `runtime.link_queue` messages). The router
//! task takes one message from the next link that has one, in turn, so a
//! link that floods gets one turn in N when N links are busy; once its queue
//! is full its reader waits, TCP backpressure slows the flooder, and the
//! other links' queues are still served. A request beyond a peer's rate
//! (`runtime.peer_requests_per_sec`, bursts of `runtime.peer_request_burst`)
//! is answered `RejectedOverload` at once and counted.

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::identity::PeerKey;
use crate::keys::Location;
use crate::message::{Message, SwapMessage};

/// What a link's reader hands the router.
pub(super) enum LinkInput {
    Routing(Message),
    Swap(SwapMessage),
    /// The neighbour's neighbours' locations (FOAF routing).
    Neighbours(Vec<Location>),
}

/// The router's end of one link's queue.
struct LinkQueue {
    peer: PeerKey,
    conn: u64,
    rx: mpsc::Receiver<LinkInput>,
}

/// Every link's queue, served in turn.
#[derive(Default)]
pub(super) struct FairInbox {
    queues: Vec<LinkQueue>,
    /// The queue served first next time.
    next: usize,
}

impl FairInbox {
    /// Serve `rx` as the queue of `peer`'s link `conn`, replacing an older
    /// link's queue.
    pub(super) fn add(&mut self, peer: PeerKey, conn: u64, rx: mpsc::Receiver<LinkInput>) {
        self.remove(&peer);
        self.queues.push(LinkQueue { peer, conn, rx });
    }

    /// Forget `peer`'s queue (what is still in it is dropped).
    pub(super) fn remove(&mut self, peer: &PeerKey) {
        self.queues.retain(|q| q.peer != *peer);
        if self.next >= self.queues.len() {
            self.next = 0;
        }
    }

    /// The next message, taking links in turn; pending while every queue is
    /// empty. A queue whose reader ended is dropped (its `LinkDown` comes
    /// on the router's main input).
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(PeerKey, u64, LinkInput)> {
        self.serve(|rx| rx.poll_recv(cx))
    }

    /// The next message already waiting, taking links in turn as
    /// [`FairInbox::poll_next`] does; `None` when every queue is empty now.
    /// Lets the router serve what is queued without a wake-up per message.
    pub(super) fn try_next(&mut self) -> Option<(PeerKey, u64, LinkInput)> {
        let taken = self.serve(|rx| match rx.try_recv() {
            Ok(input) => Poll::Ready(Some(input)),
            Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
            Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
        });
        match taken {
            Poll::Ready(next) => Some(next),
            Poll::Pending => None,
        }
    }

    /// Take from the queues in turn with `take`, from the one after the
    /// last served; a closed queue (`Ready(None)`) is dropped.
    fn serve(
        &mut self,
        mut take: impl FnMut(&mut mpsc::Receiver<LinkInput>) -> Poll<Option<LinkInput>>,
    ) -> Poll<(PeerKey, u64, LinkInput)> {
        let mut tried = 0;
        while tried < self.queues.len() {
            let i = (self.next + tried) % self.queues.len();
            let Some(q) = self.queues.get_mut(i) else {
                break;
            };
            match take(&mut q.rx) {
                Poll::Ready(Some(input)) => {
                    let out = (q.peer, q.conn, input);
                    self.next = (i + 1) % self.queues.len();
                    return Poll::Ready(out);
                }
                Poll::Ready(None) => {
                    self.queues.remove(i);
                    if self.queues.is_empty() {
                        self.next = 0;
                    } else {
                        self.next = i % self.queues.len();
                    }
                    // Start again from the queue that moved into slot i.
                    tried = 0;
                    continue;
                }
                Poll::Pending => tried += 1,
            }
        }
        Poll::Pending
    }

    /// Messages waiting in every link's queue (for `veil status`).
    pub(super) fn queued(&self) -> usize {
        self.queues.iter().map(|q| q.rx.len()).sum()
    }
}

/// A token bucket: `per_sec` tokens a second, at most `burst` held.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Take one token now, or say how long until one is there.
    fn take(&mut self, per_sec: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(per_sec);
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// A token bucket per peer for new requests (`DataRequest` and
/// `InsertRequest`: the messages a `RejectedOverload` can answer).
pub(super) struct RateLimits {
    per_sec: u32,
    burst: u32,
    buckets: HashMap<PeerKey, Bucket>,
    /// Requests refused because their peer was over its rate.
    pub(super) refused: HashMap<PeerKey, u64>,
}

impl RateLimits {
    /// `per_sec = 0` turns the limit off.
    pub(super) fn new(per_sec: u32, burst: u32) -> RateLimits {
        RateLimits {
            per_sec,
            burst: burst.max(1),
            buckets: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Whether `peer` may start one more request now (if so it is counted).
    pub(super) fn admit(&mut self, peer: PeerKey, now: Instant) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let bucket = self
            .buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(self.burst, now));
        if bucket.take(self.per_sec, self.burst, now).is_ok() {
            true
        } else {
            *self.refused.entry(peer).or_default() += 1;
            false
        }
    }

    pub(super) fn forget(&mut self, peer: &PeerKey) {
        self.buckets.remove(peer);
    }
}

/// How fast a link's reader takes new requests off the wire: twice the
/// peer's rate limit (bursts of twice its burst). Up to that pace requests
/// reach the router, which answers those beyond the rate limit
/// `RejectedOverload`; beyond it the reader stops reading until the bucket
/// refills, so TCP backpressure slows the flooder and its excess costs this
/// node no decryption and no answer.
pub(super) struct ReadPacer {
    per_sec: u32,
    burst: u32,
    bucket: Option<Bucket>,
}

impl ReadPacer {
    /// Pacing for a peer whose rate limit is `per_sec` (0: no limit, no
    /// pacing) with bursts of `burst`.
    pub(super) fn new(per_sec: u32, burst: u32) -> ReadPacer {
        ReadPacer {
            per_sec: per_sec.saturating_mul(2),
            burst: burst.max(1).saturating_mul(2),
            bucket: None,
        }
    }

    /// How long the reader must wait before it takes one more new request
    /// at `now` (zero: at once; the request is counted).
    pub(super) fn wait(&mut self, now: Instant) -> Duration {
        if self.per_sec == 0 {
            return Duration::ZERO;
        }
        let bucket = self
            .bucket
            .get_or_insert_with(|| Bucket::full(self.burst, now));
        match bucket.take(self.per_sec, self.burst, now) {
            Ok(()) => Duration::ZERO,
            Err(wait) => {
                // The token is spent once the wait is over.
                bucket.tokens -= 1.0;
                wait
            }
        }
    }
}

/// Whether `msg` starts a new request at this node (what the rate limit
/// counts), and its uid.
pub(super) fn new_request(msg: &Message) -> Option<crate::message::Uid> {
    match msg {
        Message::DataRequest { uid, .. } | Message::InsertRequest { uid, .. } => Some(*uid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn key(i: u8) -> PeerKey {
        PeerKey([i; 32])
    }

    /// An inbox serving three links, and their senders.
    fn three_links() -> (FairInbox, Vec<mpsc::Sender<LinkInput>>) {
        let mut inbox = FairInbox::default();
        let mut senders = Vec::new();
        for i in 0..3u8 {
            let (tx, rx) = mpsc::channel(64);
            inbox.add(key(i), u64::from(i), rx);
            senders.push(tx);
        }
        (inbox, senders)
    }

    #[tokio::test]
    async fn a_flooding_link_gets_one_turn_in_n() {
        let (mut inbox, mut senders) = three_links();
        // Link 0 floods 60 messages, links 1 and 2 send 5 each.
        for (i, tx) in senders.iter().enumerate() {
            let n = if i == 0 { 60 } else { 5 };
            for _ in 0..n {
                let msg = Message::DataNotFound { uid: 7 };
                tx.try_send(LinkInput::Routing(msg)).ok();
            }
        }
        let mut first_15 = [0usize; 3];
        for _ in 0..15 {
            let (peer, _, _) = poll_fn(|cx| inbox.poll_next(cx)).await;
            first_15[usize::from(peer.0[0])] += 1;
        }
        assert_eq!(first_15, [5, 5, 5]);
        assert_eq!(inbox.queued(), 55);
        // A closed queue is dropped; the rest still flow.
        drop(senders.remove(0));
        inbox.remove(&key(0));
        let mut served = 0;
        while inbox.queued() > 0 {
            poll_fn(|cx| inbox.poll_next(cx)).await;
            served += 1;
        }
        assert_eq!(served, 0);
    }

    #[tokio::test]
    async fn draining_without_waiting_keeps_the_turns() {
        let (mut inbox, mut senders) = three_links();
        assert!(inbox.try_next().is_none());
        for (i, tx) in senders.iter().enumerate() {
            let n = if i == 0 { 20 } else { 3 };
            for uid in 0..n {
                tx.try_send(LinkInput::Routing(Message::DataNotFound { uid }))
                    .ok();
            }
        }
        // One message waited for, the rest taken as they are queued: the
        // links still alternate, and each link's messages stay in order.
        let first = poll_fn(|cx| inbox.poll_next(cx)).await;
        let mut order = vec![first.0 .0[0]];
        let mut uids = [Vec::new(), Vec::new(), Vec::new()];
        while let Some((peer, _, LinkInput::Routing(msg))) = inbox.try_next() {
            order.push(peer.0[0]);
            uids[usize::from(peer.0[0])].push(msg.uid());
        }
        assert_eq!(&order[..9], &[0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert!(order[9..].iter().all(|&p| p == 0));
        assert_eq!(order.len(), 26);
        assert_eq!(uids[1], vec![0, 1, 2]);
        assert_eq!(uids[0], (1..20).collect::<Vec<_>>());
        // A queue whose sender is gone is dropped; the others still serve.
        drop(senders.remove(0));
        senders[0]
            .try_send(LinkInput::Routing(Message::DataNotFound { uid: 9 }))
            .ok();
        let (peer, _, _) = inbox.try_next().expect("link 1 has a message");
        assert_eq!(peer, key(1));
        assert!(inbox.try_next().is_none());
        assert_eq!(inbox.queues.len(), 2);
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let mut limits = RateLimits::new(10, 5);
        let t0 = Instant::now();
        let admitted = (0..20).filter(|_| limits.admit(key(1), t0)).count();
        assert_eq!(admitted, 5);
        assert_eq!(limits.refused.get(&key(1)), Some(&15));
        let later = t0 + Duration::from_millis(500);
        let admitted = (0..20).filter(|_| limits.admit(key(1), later)).count();
        assert_eq!(admitted, 5);
        // Another peer has its own bucket; rate 0 is no limit.
        assert!(limits.admit(key(2), later));
        let mut off = RateLimits::new(0, 1);
        assert!((0..1000).all(|_| off.admit(key(1), t0)));
    }

    #[test]
    fn the_reader_waits_beyond_twice_the_rate() {
        // Rate 10/s with bursts of 5: the reader takes 10 at once, then one
        // every 50 ms; the waits add up so a flood is held to twice the rate.
        let mut pacer = ReadPacer::new(10, 5);
        let t0 = Instant::now();
        let at_once = (0..10).filter(|_| pacer.wait(t0).is_zero()).count();
        assert_eq!(at_once, 10);
        let first = pacer.wait(t0);
        assert!((first.as_secs_f64() - 0.05).abs() < 1e-9, "{first:?}");
        // A second request at the same moment waits one more interval.
        let second = pacer.wait(t0);
        assert!((second.as_secs_f64() - 0.10).abs() < 1e-9, "{second:?}");
        // After those waits the bucket is empty, not in debt.
        let later = t0 + Duration::from_millis(100);
        assert!(!pacer.wait(later).is_zero());
        // No limit, no pacing.
        let mut off = ReadPacer::new(0, 5);
        assert!((0..10_000).all(|_| off.wait(t0).is_zero()));
    }
}
