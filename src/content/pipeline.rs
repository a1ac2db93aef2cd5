//! A file's segments fetched in order without draining the path between
//! them.
//!
//! Each segment needs any `k` of its `n` blocks, asked for in random order
//! (so check blocks are requested as often as data blocks and stay popular
//! in caches, as in Freenet), with at most the [`Window`]'s size in flight
//! and no more than the segment still needs. Fetching one segment at a time
//! would let the window empty at the end of every segment: the last blocks
//! cross the path, then the segment is decoded and written, and only then
//! does the next segment's first request leave. Here the next segment opens
//! as soon as the current one has asked for everything it needs, and takes
//! the window slots its blocks free; segments are still completed, decoded
//! and handed out in order. At most [`OPEN_SEGMENTS`] segments are open at
//! once, which bounds the blocks held to two segments' worth.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::task::JoinSet;

use super::segment::{leaf_key, rebuild, FetchError, Getter, LeafKey, Plan, RecentBlocks};
use super::window::Window;
use super::ContentError;
use crate::keys::{Block, BlockKind, RoutingKey};

/// Segments open at once: the one being completed and the next.
pub(super) const OPEN_SEGMENTS: usize = 2;

/// A segment being fetched.
struct OpenSegment<'a> {
    plan: Plan<'a>,
    /// Each distinct key once, with every place it fills.
    places: HashMap<LeafKey, Vec<usize>>,
    shards: Vec<Option<Arc<Vec<u8>>>>,
    /// Places filled so far.
    obtained: usize,
    /// Places the blocks this segment waits for would fill.
    in_flight_places: usize,
    /// The keys this segment waits for: asked by it, or already in flight
    /// for another open segment when it came to them.
    waits_for: HashSet<LeafKey>,
    /// The distinct keys not found in [`RecentBlocks`], shuffled.
    order: Vec<LeafKey>,
    /// The next key of `order` to ask for.
    next: usize,
    last_error: Option<ContentError>,
}

impl<'a> OpenSegment<'a> {
    fn new(
        plan: Plan<'a>,
        rng: &mut impl Rng,
        recent: &RecentBlocks,
    ) -> Result<Self, ContentError> {
        let mut places: HashMap<LeafKey, Vec<usize>> = HashMap::new();
        let mut distinct: Vec<LeafKey> = Vec::new();
        for (i, leaf) in plan.leaves.iter().enumerate() {
            let key = leaf_key(&leaf.chk);
            let at = places.entry(key).or_default();
            if at.is_empty() {
                distinct.push(key);
            }
            at.push(i);
        }
        let mut segment = OpenSegment {
            shards: vec![None; plan.leaves.len()],
            plan,
            places,
            obtained: 0,
            in_flight_places: 0,
            waits_for: HashSet::new(),
            order: Vec::with_capacity(distinct.len()),
            next: 0,
            last_error: None,
        };
        for key in distinct {
            match recent.get(&key) {
                Some(data) if segment.obtained < segment.plan.data => {
                    segment.fill(&key, &data)?;
                }
                _ => segment.order.push(key),
            }
        }
        segment.order.shuffle(rng);
        Ok(segment)
    }

    /// Put `data` in every place of `key` not filled yet; checks its length
    /// against each. Returns the places filled.
    fn fill(&mut self, key: &LeafKey, data: &Arc<Vec<u8>>) -> Result<usize, ContentError> {
        let Some(at) = self.places.get(key) else {
            return Ok(0);
        };
        let mut filled = 0;
        for &i in at {
            let expected = self.plan.leaves[i].length;
            if data.len() as u64 != expected {
                return Err(ContentError::LengthMismatch {
                    expected,
                    actual: data.len() as u64,
                });
            }
            if self.shards[i].is_none() {
                self.shards[i] = Some(data.clone());
                filled += 1;
            }
        }
        self.obtained += filled;
        Ok(filled)
    }

    fn weight(&self, key: &LeafKey) -> usize {
        self.places.get(key).map_or(0, Vec::len)
    }

    /// Whether this segment would ask for another block now.
    fn wants_more(&self) -> bool {
        self.obtained + self.in_flight_places < self.plan.data && self.next < self.order.len()
    }

    fn done(&self) -> bool {
        self.obtained >= self.plan.data
    }

    /// Nothing in flight, nothing left to ask, and too few blocks.
    fn stuck(&self) -> bool {
        !self.done() && self.in_flight_places == 0 && self.next >= self.order.len()
    }

    fn unrecoverable(self) -> ContentError {
        let cause = self.last_error.unwrap_or(ContentError::Stalled);
        let total = self.plan.leaves.len();
        ContentError::SegmentUnrecoverable {
            segment: self.plan.number,
            segments: self.plan.of,
            lost: total - self.obtained,
            obtained: self.obtained,
            needed: self.plan.data,
            total,
            cause: Box::new(cause),
        }
    }
}

/// One request's outcome: the key and the block.
type Arrival = (LeafKey, Result<Vec<u8>, ContentError>);

/// Fetches segments in order, overlapping each one's tail with the next
/// one's first requests. Borrows what the fetch keeps between segments.
pub(super) struct Segments<'a, 'w, F, R> {
    getter: &'a Getter<F>,
    waiting: VecDeque<Plan<'a>>,
    open: VecDeque<OpenSegment<'a>>,
    tasks: JoinSet<Arrival>,
    /// The keys `tasks` are fetching: asked once for every open segment.
    in_flight: HashSet<LeafKey>,
    window: &'w mut Window,
    rng: &'w mut R,
    recent: RecentBlocks,
    retries_seen: u64,
}

impl<'a, 'w, F, Fut, E, R> Segments<'a, 'w, F, R>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
    R: Rng,
{
    pub fn new(
        getter: &'a Getter<F>,
        plans: impl IntoIterator<Item = Plan<'a>>,
        window: &'w mut Window,
        rng: &'w mut R,
    ) -> Self {
        Segments {
            retries_seen: getter.counter.load(Ordering::Relaxed),
            getter,
            waiting: plans.into_iter().collect(),
            open: VecDeque::with_capacity(OPEN_SEGMENTS),
            tasks: JoinSet::new(),
            in_flight: HashSet::new(),
            window,
            rng,
            recent: RecentBlocks::default(),
        }
    }

    /// The next segment's data blocks in file order (`None` once every
    /// segment was handed out). `on_block` runs after every block that
    /// arrives. Requests keep flowing while the caller writes what this
    /// returned: the blocks in flight were asked for before it returned.
    pub async fn next(
        &mut self,
        on_block: &mut impl FnMut(),
    ) -> Option<Result<Vec<Arc<Vec<u8>>>, ContentError>> {
        match self.complete_front(on_block).await {
            Ok(Some(segment)) => Some(rebuild(segment.plan, segment.shards).await),
            Ok(None) => None,
            Err(e) => {
                // Nothing more is fetched after an error.
                self.tasks.abort_all();
                self.waiting.clear();
                self.open.clear();
                Some(Err(e))
            }
        }
    }

    /// Fetch until the oldest open segment has its `k` blocks; pop it.
    async fn complete_front(
        &mut self,
        on_block: &mut impl FnMut(),
    ) -> Result<Option<OpenSegment<'a>>, ContentError> {
        loop {
            self.open_more()?;
            self.ask()?;
            let Some(front) = self.open.front() else {
                return Ok(None);
            };
            if front.done() {
                return Ok(self.open.pop_front());
            }
            if front.stuck() {
                let front = self.open.pop_front().ok_or(ContentError::Stalled)?;
                return Err(front.unrecoverable());
            }
            let Some(joined) = self.tasks.join_next().await else {
                // Unreachable while the front waits for blocks in flight;
                // kept as an error rather than a panic.
                let front = self.open.pop_front().ok_or(ContentError::Stalled)?;
                return Err(front.unrecoverable());
            };
            let (key, result) = joined.map_err(ContentError::TaskFailed)?;
            self.arrived(key, result, on_block)?;
        }
    }

    /// Open the next segment when every open one has asked for all it
    /// needs (or none is open), up to [`OPEN_SEGMENTS`].
    fn open_more(&mut self) -> Result<(), ContentError> {
        while self.open.len() < OPEN_SEGMENTS && self.open.iter().all(|s| !s.wants_more()) {
            let Some(plan) = self.waiting.pop_front() else {
                break;
            };
            let segment = OpenSegment::new(plan, &mut *self.rng, &self.recent)?;
            self.open.push_back(segment);
        }
        Ok(())
    }

    /// Fill the window, oldest open segment first, opening the next
    /// segment once the open ones have asked for all they need.
    fn ask(&mut self) -> Result<(), ContentError> {
        while self.tasks.len() < self.window.size() {
            let Some(segment) = self.open.iter_mut().find(|s| s.wants_more()) else {
                let before = self.open.len();
                self.open_more()?;
                if self.open.len() == before {
                    return Ok(());
                }
                continue;
            };
            let key = segment.order[segment.next];
            segment.next += 1;
            let first = segment.places.get(&key).and_then(|at| at.first()).copied();
            // Filled meanwhile by the same block arriving for another
            // segment: nothing to ask.
            let Some(first) = first.filter(|&i| segment.shards[i].is_none()) else {
                continue;
            };
            segment.in_flight_places += segment.weight(&key);
            segment.waits_for.insert(key);
            // Already asked for an older segment that lists the same block
            // (a file of repeated blocks): wait for that one.
            if !self.in_flight.insert(key) {
                continue;
            }
            let leaf = &segment.plan.leaves[first];
            let (getter, chk, len) = (self.getter.clone(), leaf.chk.clone(), leaf.length);
            self.tasks.spawn(async move {
                let got = getter.open(chk, BlockKind::Data, len).await;
                (key, got)
            });
        }
        Ok(())
    }

    fn arrived(
        &mut self,
        key: LeafKey,
        result: Result<Vec<u8>, ContentError>,
        on_block: &mut impl FnMut(),
    ) -> Result<(), ContentError> {
        // A request that failed and was asked again (overloaded, timed out,
        // lost) since the last block: the path is congested.
        let retries = self.getter.counter.load(Ordering::Relaxed);
        if retries > self.retries_seen {
            self.retries_seen = retries;
            self.window.congested();
        }
        self.in_flight.remove(&key);
        let mut waited = Vec::new();
        for (i, segment) in self.open.iter_mut().enumerate() {
            if segment.waits_for.remove(&key) {
                segment.in_flight_places -= segment.weight(&key);
                waited.push(i);
            }
        }
        match result {
            Ok(data) => {
                self.window.delivered();
                let data = Arc::new(data);
                // Every open segment that lists the same block takes it.
                for segment in self.open.iter_mut() {
                    segment.fill(&key, &data)?;
                }
                self.recent.put(key, data);
                on_block();
            }
            Err(e @ ContentError::BlockUnavailable { .. }) => {
                self.window.congested();
                // The oldest segment that waited for it keeps the cause.
                if let Some(segment) = waited.first().and_then(|&i| self.open.get_mut(i)) {
                    segment.last_error = Some(e);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}
