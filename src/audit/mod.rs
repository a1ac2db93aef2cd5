//! `veil audit`: read a testnet directory's audit logs (format:
//! [`record`], described in `docs/audit-log.md`) and report traffic,
//! protocol invariants, leaks, and what each node could infer about who
//! originated a request.
//!
//! Only `audit.jsonl` (each node's local view) feeds the inference signals;
//! `origin.jsonl` is ground truth, used to score those signals and to check
//! invariants that need to know who originated a request.
//!
//! Rooms: [`record`] (the log line type), [`log`] (the node's writer),
//! `load` (reading a directory back), `traffic`, `invariants`, `leaks`,
//! `anonymity`, [`report`] (the report and its text form) and [`trace`]
//! (the one trace-line format, and one request's path).

mod anonymity;
mod invariants;
mod leaks;
mod load;
pub mod log;
pub mod record;
pub mod report;
pub mod trace;
mod traffic;

use std::io;
use std::path::{Path, PathBuf};

pub use report::{
    Anonymity, AuditReport, Classifier, EntropyReport, Invariant, LeakCheck, OpCounts, Summary,
    Violations,
};
pub use trace::trace_uid;

/// Why a testnet directory could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    BadTestnet { path: PathBuf, message: String },
    #[error("uid {uid:?} is not a request ID (1 to 16 hex digits)")]
    BadUid { uid: String },
    #[error("uid {uid} appears in no audit or origin log under {}", dir.display())]
    UnknownUid { uid: String, dir: PathBuf },
}

/// Knobs for [`audit_dir_with`]. Empty for now; [`Default`] is what
/// [`audit_dir`] uses.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AuditOptions {}

/// Audit a testnet directory with default options.
pub fn audit_dir(dir: &Path) -> Result<AuditReport, AuditError> {
    audit_dir_with(dir, &AuditOptions::default())
}

/// Audit a testnet directory.
pub fn audit_dir_with(dir: &Path, _options: &AuditOptions) -> Result<AuditReport, AuditError> {
    let run = load::load_run(dir)?;
    let workload = load::load_workload(dir)?;
    let mut report = AuditReport {
        dir: dir.display().to_string(),
        nodes: run.nodes.len(),
        warnings: run.warnings.clone(),
        ..AuditReport::default()
    };
    traffic::count(&run, &mut report);
    let v = &mut report.violations;
    v.misrouted_reply = invariants::check_misrouted(&run);
    v.htl_overspent = invariants::check_overspent(&run, dir);
    v.remembered_uid = invariants::check_remembered(&run);
    v.leak = match &workload {
        Some(w) => leaks::check_leaks(dir, &run, w, &mut report.warnings)?,
        None => LeakCheck::default(),
    };
    let v = &mut report.violations;
    v.total =
        v.misrouted_reply.count + v.htl_overspent.count + v.remembered_uid.count + v.leak.count;
    report.anonymity = anonymity::score(&run, workload.as_ref().and_then(|w| w.max_htl));
    Ok(report)
}
