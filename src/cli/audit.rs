//! `veil audit DIR`: a testnet's audit logs read back: traffic, invariants,
//! leaks and the anonymity verdict; or one request's path (`--trace`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use veil::audit::AuditOptions;

use super::output::{exit_code, show};

#[derive(clap::Args)]
pub struct AuditArgs {
    dir: PathBuf,
    /// Print everything as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print one request's path (uid as 16 hex digits) in the trace format.
    #[arg(long)]
    trace: Option<String>,
    /// Pool the observations of this many random nodes (chosen with --seed).
    #[arg(long)]
    colluders: Option<usize>,
    /// Seeds the colluders' choice, the train/test split and the bootstrap.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// FAIL when a signal bin's upper bound on P(originator) exceeds this.
    #[arg(long, default_value_t = 0.5)]
    max_posterior: f64,
    /// FAIL when the combined adversary's cross-validated AUC exceeds this.
    #[arg(long, default_value_t = 0.65)]
    max_auc: f64,
    /// FAIL when the known-content adversary's AUC exceeds this.
    #[arg(long, default_value_t = veil::audit::KNOWN_CONTENT_MAX_AUC)]
    max_known_content_auc: f64,
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    if let Some(uid) = a.trace.as_deref() {
        for line in veil::audit::trace_uid(&a.dir, uid)? {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = AuditOptions {
        colluders: a.colluders,
        seed: a.seed,
        max_posterior: a.max_posterior,
        max_auc: a.max_auc,
        max_known_content_auc: a.max_known_content_auc,
    };
    let report = veil::audit::audit_dir_with(&a.dir, &options)?;
    show(a.json, report.to_json(), report.render_text());
    Ok(exit_code(
        report.violation_count() == 0 && report.anonymity.passed(),
    ))
}
