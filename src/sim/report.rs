//! What `veil sim` prints of one run's [`SimReport`], and the report
//! without what differs between two runs of the same seed.

use crate::sim::runner::SimReport;

impl SimReport {
    /// The report without what differs between two runs of the same seed
    /// (the timings and the memory figure).
    pub fn without_timings(&self) -> SimReport {
        SimReport {
            wall_seconds: 0.0,
            build_seconds: 0.0,
            insert_seconds: 0.0,
            lookup_seconds: 0.0,
            bytes_per_node: 0,
            ..self.clone()
        }
    }

    /// The system, and veil's routing rules when they are not the
    /// lecture's (`freenet foaf/progress`).
    pub fn label(&self) -> String {
        match self.routing.as_deref() {
            Some(rules) if rules != "none/hop" => format!("{} {rules}", self.system),
            _ => self.system.clone(),
        }
    }

    /// The short summary `veil sim` prints.
    pub fn render_text(&self) -> String {
        let mode = self
            .anonymity
            .as_ref()
            .map(|m| format!(" (anonymity {m})"))
            .unwrap_or_default();
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let fail_mode = if self.fail_mode == "loaded" {
            " (the most loaded first)"
        } else {
            ""
        };
        let churn = if self.churn_minutes > 0.0 {
            format!(
                "\x20 churn      lookups over {} min of sessions (log-normal μ {}, σ {}; \
                 downtime μ {}, σ {}): {} left, {} rejoined, {} online on average\n",
                self.churn_minutes,
                self.churn_session[0],
                self.churn_session[1],
                self.churn_downtime[0],
                self.churn_downtime[1],
                self.churn_leaves,
                self.churn_joins,
                pct(self.online_fraction),
            )
        } else {
            String::new()
        };
        let text = format!(
            "veil sim: {}{mode} on {}, {} nodes, degree {}, {} requests, {} failed{fail_mode}, \
             seed {}\n\
             \x20 success    {}   (after also removing the 1% most loaded: {})\n\
             \x20 hops       mean {:.2}, median {}, p95 {}\n\
             \x20 messages   {:.1} per lookup\n\
             \x20 load       busiest node {:.1}x the mean\n\
             \x20 exposed    {} of lookups name their requester to some node\n\
             \x20 memory     {} bytes per node\n\
             \x20 time       {:.1} s (build {:.1} s, inserts {:.1} s, lookups {:.1} s)\n",
            self.system,
            self.topology,
            self.nodes,
            self.degree,
            self.requests,
            pct(self.fail),
            self.seed,
            pct(self.success_rate),
            pct(self.success_after_top1pct_removed),
            self.hops_mean,
            self.hops_median,
            self.hops_p95,
            self.messages_per_lookup,
            self.max_load_ratio,
            pct(self.requester_exposed_rate),
            self.bytes_per_node,
            self.wall_seconds,
            self.build_seconds,
            self.insert_seconds,
            self.lookup_seconds,
        );
        text + &churn
    }
}
