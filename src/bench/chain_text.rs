//! How `veil bench --chain` prints its report.

use super::chain::{
    best_of, met, ChainReport, CHAIN_NODES, HOLDER, LATENCY_TARGET, MIB, RELAY_FILE,
};
use crate::keys::BLOCK_LEN;

impl ChainReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{CHAIN_NODES}-node chain of real processes (anonymity {}, link delay {} ms, \
             audit logs {}, {} per node); blocks at n{HOLDER}, fetched from n0 (3 relays)\n",
            self.anonymity,
            self.link_delay_ms,
            if self.audit_log { "on" } else { "off" },
            match self.node_threads {
                0 => "a runtime thread per core".to_string(),
                1 => "1 runtime thread".to_string(),
                n => format!("{n} runtime threads"),
            }
        );
        if let Some(l) = &self.latency {
            let medians: Vec<String> = l.by_distance_ms.iter().map(|m| format!("{m:.3}")).collect();
            out.push_str(&format!(
                "  single block 1..{} hops away: median {} ms ({} fetches each)\n\
                 \x20 added latency per hop {:.3} ms; loopback round trip {:.3} ms; \
                 ratio {:.2} (target <= {LATENCY_TARGET}): {}{}\n",
                l.by_distance_ms.len(),
                medians.join(" / "),
                l.samples,
                l.per_hop_ms,
                l.loopback_rtt_ms,
                l.ratio,
                met(l.met),
                if l.per_hop_ms > 0.0 {
                    ""
                } else {
                    " (the times do not grow with distance: no per-hop figure)"
                }
            ));
        }
        for g in &self.gets {
            out.push_str(&format!(
                "  {:>5.1} MiB get: {:.3} s, {:.1} MiB/s, {:.1}% of the path limit\n",
                g.bytes as f64 / MIB,
                g.seconds,
                g.mib_per_s,
                g.of_limit * 100.0
            ));
        }
        if let Some(r) = &self.relayed {
            out.push_str(&format!(
                "  relayed {:.0} MiB ({} files of {} MiB) in {:.1} s, {:.1} MiB/s\n",
                r.bytes as f64 / MIB,
                r.files,
                RELAY_FILE >> 20,
                r.seconds,
                r.mib_per_s
            ));
        }
        for r in &self.rss {
            out.push_str(&format!(
                "  {} RSS {:.1} MiB, peak {:.1} MiB\n",
                r.name, r.rss_mib, r.peak_mib
            ));
        }
        if let Some(r) = &self.relayed {
            out.push_str(&format!(
                "  highest peak {:.1} MiB against the default memory {:.0} MiB: {}\n",
                r.highest_peak_mib,
                r.bound_mib,
                met(r.met)
            ));
        }
        let p = &self.passes;
        let stream = if p.stream > 0.0 {
            format!(" + {} ChaCha20", p.stream)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  one core: SHA-256 {:.0} MiB/s, ChaCha20-Poly1305 {:.0} MiB/s, ChaCha20 {:.0} MiB/s; \
             {} cores\n\
             \x20 path limit ({} AEAD{stream} + {} SHA-256 passes per byte): \
             {:.1} MiB/s; achieved {:.1}%\n",
            self.sha256_mib_per_s,
            self.chacha_mib_per_s,
            self.chacha20_mib_per_s,
            self.cores,
            p.aead,
            p.hash,
            self.limit_mib_per_s,
            self.fraction * 100.0
        ));
        let f = &self.floor;
        out.push_str(&format!(
            "  bare relay chain (threads forwarding the same frames, doing only the path's \
             cryptography):\n\
             \x20   per hop {:.3} ms{}; an empty relay (no cryptography) {:.3} ms; \
             two-thread loopback round trip {:.3} ms\n\
             \x20   {:.1} MiB/s, {:.1}% of the path limit; veil's largest get reached {:.1}% of it\n",
            f.per_hop_ms,
            self.latency.as_ref().map_or(String::new(), |l| format!(
                " (ratio {:.2} to the loopback round trip)",
                f.per_hop_ms / l.loopback_rtt_ms
            )),
            f.empty_per_hop_ms,
            f.two_thread_rtt_ms,
            f.mib_per_s,
            self.floor_fraction * 100.0,
            best_of(&self.gets) / f.mib_per_s * 100.0
        ));
        if let Some(l) = &self.latency {
            out.push_str(&format!(
                "  one relay's cryptography on one {} KiB block (open, hash, seal at the speeds \
                 above): {:.3} ms, {:.2} loopback round trips (the per-hop target allows \
                 {LATENCY_TARGET} for all a hop does)\n",
                BLOCK_LEN / 1024,
                self.hop_crypto_ms,
                self.hop_crypto_ms / l.loopback_rtt_ms
            ));
        }
        out
    }
}
