//! `veil audit`: read a testnet directory's audit logs (format:
//! [`crate::formats::audit_log`], described in `docs/audit-log.md`) and report traffic,
//! protocol invariants, leaks, and what each node could infer about who
//! originated a request.
//!
//! Only `audit.jsonl` (each node's local view) feeds the inference signals;
//! `origin.jsonl` is ground truth, used to score those signals and to check
//! invariants that need to know who originated a request.
//!
//! Rooms: [`crate::formats::audit_log`] (the log line type, shared with the node), [`log`] (the node's writer),
//! `load` (reading a directory back), `traffic`, `invariants`, `leaks`,
//! the adversary (`anonymity` drives `features`, `signals`, `classifier`,
//! `posterior` and [`verdict`]; see `docs/anonymity.md`), [`report`] (the
//! report and its text form) and [`trace`] (the one trace-line format, and
//! one request's path).

mod anonymity;
mod classifier;
mod features;
mod first_hop_exit;
mod holder;
mod invariants;
mod known_content;
mod leaks;
mod load;
pub mod log;
mod memory;
mod posterior;
pub mod report;
mod signals;
pub mod trace;
mod traffic;
pub mod verdict;

use std::io;
use std::path::{Path, PathBuf};

use crate::keys::RoutingKey;

pub use known_content::MAX_AUC as KNOWN_CONTENT_MAX_AUC;
pub use memory::MemoryAudit;
pub use report::{
    Anonymity, AuditReport, Classifier, EntropyReport, Invariant, LeakCheck, Limits, OpCounts,
    SignalBin, SignalTable, Summary, Violations, WorstBin,
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

/// Knobs for [`audit_dir_with`]; [`Default`] is what [`audit_dir`] uses.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Pool the observations of this many random nodes (seeded); `None`:
    /// every node is its own adversary.
    pub colluders: Option<usize>,
    /// Seeds the colluders' choice, the train/test split and the bootstrap.
    pub seed: u64,
    /// The verdict fails if a counted bin's upper bound exceeds this.
    pub max_posterior: f64,
    /// The verdict fails if the cross-validated AUC exceeds this.
    pub max_auc: f64,
    /// The verdict fails if the known-content adversary's AUC exceeds this.
    pub max_known_content_auc: f64,
}

impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            colluders: None,
            seed: 1,
            max_posterior: 0.5,
            max_auc: 0.65,
            max_known_content_auc: known_content::MAX_AUC,
        }
    }
}

/// Audit a testnet directory with default options.
pub fn audit_dir(dir: &Path) -> Result<AuditReport, AuditError> {
    audit_dir_with(dir, &AuditOptions::default())
}

/// Audit a testnet directory.
pub fn audit_dir_with(dir: &Path, options: &AuditOptions) -> Result<AuditReport, AuditError> {
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
    let files = file_keys(
        workload
            .iter()
            .flat_map(|w| w.files.iter().map(|f| f.keys.as_slice())),
    );
    let workload_max = workload.as_ref().and_then(|w| w.max_htl);
    report.anonymity = score(&run, &files, workload_max, options);
    report.anonymity.holder = holder::measure(&run);
    if let Some(w) = &workload {
        let pool = pool_of(&run, options);
        let known = known_content::measure(&run, w, pool.as_ref(), options.max_known_content_auc);
        if let Some(k) = known.as_ref().filter(|k| k.verdict == "fail") {
            let a = &mut report.anonymity;
            a.failures.push(format!(
                "known_content: AUC {:.3} > {}",
                k.auc.unwrap_or(1.0),
                k.max_auc
            ));
            if a.verdict == "pass" {
                a.verdict = "fail".to_string();
            }
        }
        report.anonymity.known_content = known;
        let pair_pool = pool.unwrap_or_else(|| {
            let c =
                ((run.nodes.len() as f64 * first_hop_exit::DEFAULT_SHARE).round() as usize).max(2);
            anonymity::colluder_pool(&run, Some(c), options.seed).unwrap_or_default()
        });
        let pair = first_hop_exit::measure(&run, w, &pair_pool);
        if let Some(p) = pair.as_ref().filter(|p| p.verdict == "fail") {
            let a = &mut report.anonymity;
            a.failures.push(format!(
                "first_hop_exit: P(right | exit) lower bound {:.3} > first-hop share {:.3} + {}",
                p.interval.map_or(1.0, |[lo, _]| lo),
                p.first_hop_share.unwrap_or(0.0),
                p.max_excess
            ));
            if a.verdict == "pass" {
                a.verdict = "fail".to_string();
            }
        }
        report.anonymity.first_hop_exit = pair;
    }
    Ok(report)
}

/// The `--colluders` pool of `options`, if any.
fn pool_of(run: &load::Run, options: &AuditOptions) -> Option<std::collections::HashSet<usize>> {
    anonymity::colluder_pool(run, options.colluders, options.seed)
}

/// The adversary of `options` on a run (read from files or recorded in
/// memory).
fn score(
    run: &load::Run,
    files: &features::FileKeys,
    workload_max: Option<crate::message::Htl>,
    options: &AuditOptions,
) -> Anonymity {
    let setup = anonymity::Setup {
        files,
        workload_max,
        colluders: options.colluders,
        seed: options.seed,
        limits: Limits {
            max_posterior: options.max_posterior,
            max_auc: options.max_auc,
            min_support: verdict::MIN_SUPPORT,
        },
    };
    anonymity::score(run, &setup)
}

/// Which workload file each routing key belongs to (files numbered in
/// order).
fn file_keys<'a>(files: impl Iterator<Item = &'a [RoutingKey]>) -> features::FileKeys {
    let mut out = features::FileKeys::default();
    for (i, keys) in files.enumerate() {
        out.sizes.push(keys.len());
        for k in keys {
            out.file_of.insert(*k, i);
        }
    }
    out
}
