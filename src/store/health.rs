//! What `veil status` says about the datastore's disk: fine, recovered
//! from I/O errors by reopening, or read-only.

use serde::{Deserialize, Serialize};

/// Whether the datastore can still write.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StoreState {
    /// Reads and writes work (possibly after reopening).
    #[default]
    Ok,
    /// Reopening for writing failed; what is on disk is still served.
    ReadOnly,
    /// Not even reading could be reopened: every lookup misses.
    Closed,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Ok => "ok",
            StoreState::ReadOnly => "read-only",
            StoreState::Closed => "closed",
        }
    }
}

/// The datastore's health, as `veil status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreHealth {
    pub state: StoreState,
    /// How often the database was closed and reopened after an I/O error.
    pub reopens: u64,
    /// Durable writes that failed (each may have covered several blocks).
    pub failed_writes: u64,
    /// The most recent error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl StoreHealth {
    /// One line: `ok`, `ok, reopened 2 times after I/O errors (last error:
    /// ...)`, `read-only (last error: ...)`.
    pub fn render(&self) -> String {
        let mut out = self.state.as_str().to_string();
        if self.reopens > 0 {
            let times = if self.reopens == 1 { "time" } else { "times" };
            out.push_str(&format!(
                ", reopened {} {times} after I/O errors",
                self.reopens
            ));
        }
        if self.failed_writes > 0 {
            out.push_str(&format!(", {} failed writes", self.failed_writes));
        }
        if let Some(e) = &self.last_error {
            out.push_str(&format!(" (last error: {e})"));
        }
        out
    }
}
