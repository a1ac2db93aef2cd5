//! The trace line: one message hop as `veil trace` and `veil audit --trace` print it.

use crate::message::Message;

/// `FROM -> TO Kind`, with ` htl=N` for kinds that carry an HTL.
pub fn format_trace_line(from: &str, to: &str, msg: &Message) -> String {
    match msg.htl() {
        Some(h) => format!("{from} -> {to} {} htl={h}", msg.kind()),
        None => format!("{from} -> {to} {}", msg.kind()),
    }
}
