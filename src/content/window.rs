//! The download window: how many block requests a fetch keeps in flight.
//!
//! Additive increase, multiplicative decrease, bounded. It starts small
//! ([`INITIAL_WINDOW`], or the bound if lower) and grows by one block per
//! block delivered (doubling every round trip, as TCP's slow start) until
//! the first congestion signal; from then on by one block per window's
//! worth of deliveries. A congestion signal (a request that failed and is
//! retried: overloaded, timed out, lost) halves it, at most once per
//! window's worth of deliveries, so one burst of refusals from one overload
//! halves it once. It never leaves `1..=max`. So on a long path the window
//! opens as far as it keeps paying (up to `max`), and a path that refuses
//! requests gets fewer. Pure logic: no clock, fed only events.

/// Where a window starts: a quarter of `veil get`'s default bound, so that
/// a path with a long round trip (20 ms a link over 4 links is 160 ms) is
/// at the bound after two round trips rather than four.
pub const INITIAL_WINDOW: usize = 32;

/// An AIMD request window.
#[derive(Clone, Debug)]
pub struct Window {
    size: usize,
    max: usize,
    /// Until the first congestion signal: grow by one per delivery.
    slow_start: bool,
    /// Deliveries since the window last grew (after slow start).
    acked: usize,
    /// Deliveries since the last decrease (`None`: none yet).
    since_decrease: Option<usize>,
}

impl Window {
    /// A window that starts at `initial` (within `1..=max`).
    pub fn starting_at(initial: usize, max: usize) -> Window {
        let max = max.max(1);
        Window {
            size: initial.clamp(1, max),
            max,
            slow_start: true,
            acked: 0,
            since_decrease: None,
        }
    }

    /// Requests that may be in flight now.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A block arrived.
    pub fn delivered(&mut self) {
        if let Some(n) = &mut self.since_decrease {
            *n = n.saturating_add(1);
        }
        if self.slow_start {
            self.size = (self.size + 1).min(self.max);
            return;
        }
        self.acked += 1;
        if self.acked >= self.size {
            self.acked = 0;
            self.size = (self.size + 1).min(self.max);
        }
    }

    /// A request was refused for overload, timed out or was lost: halve,
    /// unless the window already halved within its last window of
    /// deliveries (the same congestion event).
    pub fn congested(&mut self) {
        self.slow_start = false;
        if self.since_decrease.is_some_and(|n| n < self.size) {
            return;
        }
        self.size = (self.size / 2).max(1);
        self.acked = 0;
        self.since_decrease = Some(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_doubles_per_window_up_to_the_bound() {
        assert_eq!(
            Window::starting_at(INITIAL_WINDOW, 256).size(),
            INITIAL_WINDOW
        );
        let mut w = Window::starting_at(8, 64);
        assert_eq!(w.size(), 8);
        // One window of deliveries doubles it.
        for _ in 0..8 {
            w.delivered();
        }
        assert_eq!(w.size(), 16);
        for _ in 0..1000 {
            w.delivered();
        }
        assert_eq!(w.size(), 64);
    }

    #[test]
    fn a_small_bound_caps_the_start() {
        let mut w = Window::starting_at(INITIAL_WINDOW, 3);
        assert_eq!(w.size(), 3);
        w.delivered();
        assert_eq!(w.size(), 3);
        assert_eq!(Window::starting_at(INITIAL_WINDOW, 0).size(), 1);
    }

    #[test]
    fn congestion_halves_once_per_window_then_grows_additively() {
        let mut w = Window::starting_at(8, 256);
        for _ in 0..56 {
            w.delivered();
        }
        assert_eq!(w.size(), 64);
        w.congested();
        assert_eq!(w.size(), 32);
        // More refusals from the same burst: no further halving.
        w.congested();
        w.congested();
        assert_eq!(w.size(), 32);
        // 32 deliveries: +1 (additive now), but the window (33) has not
        // all been delivered since the halving: still the same event.
        for _ in 0..32 {
            w.delivered();
        }
        assert_eq!(w.size(), 33);
        w.congested();
        assert_eq!(w.size(), 33);
        // A whole window delivered since: a new signal halves again.
        w.delivered();
        w.congested();
        assert_eq!(w.size(), 16);
        // Additive: 16 deliveries for +1, 17 for the next.
        for _ in 0..16 {
            w.delivered();
        }
        assert_eq!(w.size(), 17);
        for _ in 0..16 {
            w.delivered();
        }
        assert_eq!(w.size(), 17);
        w.delivered();
        assert_eq!(w.size(), 18);
    }

    #[test]
    fn never_below_one() {
        let mut w = Window::starting_at(8, 8);
        for _ in 0..20 {
            w.congested();
            w.delivered();
        }
        assert!(w.size() >= 1);
        let mut w = Window::starting_at(8, 1);
        w.congested();
        assert_eq!(w.size(), 1);
    }
}
