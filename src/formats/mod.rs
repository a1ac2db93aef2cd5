//! The files veil writes for other programs, and reads back with the same
//! types: one definition each, below every layer that writes or reads it.
//!
//! ```text
//! audit_log.rs  audit.jsonl and origin.jsonl: one record type per line
//!               (written by a node's audit log, read by `veil audit`)
//! testnet.rs    testnet.json and workload.json (written by `veil testnet`,
//!               read by `veil audit` and by scripts)
//! ```
//!
//! Each is described for other programs in `docs/formats.md`.

pub mod audit_log;
pub mod testnet;
