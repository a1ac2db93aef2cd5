//! The JSON Schemas in `docs/schemas/` are generated from the types that
//! write each document, so the documented schema is the code's. After a
//! change to one of these types, regenerate them with
//! `VEIL_WRITE_SCHEMAS=1 cargo test --test library formats::` and commit
//! the result (and say what changed in `docs/formats.md`).

use std::path::PathBuf;

use schemars::{schema_for, Schema};

/// Every document veil writes for other programs, by its schema's name.
fn documents() -> Vec<(&'static str, Schema)> {
    vec![
        ("testnet", schema_for!(veil::formats::testnet::TestnetInfo)),
        (
            "workload",
            schema_for!(veil::formats::testnet::WorkloadInfo),
        ),
        (
            "audit-log",
            schema_for!(veil::formats::audit_log::AuditLine),
        ),
        (
            "origin-log",
            schema_for!(veil::formats::audit_log::OriginLine),
        ),
        ("audit-report", schema_for!(veil::audit::AuditReport)),
        ("testnet-run", schema_for!(veil::testnet::run::RunReport)),
        ("bench", schema_for!(veil::bench::BenchOutput)),
        ("bench-chain", schema_for!(veil::bench::ChainOutput)),
        ("bench-files", schema_for!(veil::bench::files::FilesReport)),
        ("status", schema_for!(veil::formats::status::StatusOutput)),
        ("sim", schema_for!(veil::sim::runner::SimOutput)),
        ("sim-swap", schema_for!(veil::sim::swap::SwapLine)),
        (
            "sim-pitch-black",
            schema_for!(veil::sim::pitch_black::PitchBlackLine),
        ),
        ("node-check", schema_for!(veil::node::check::NodeCheck)),
        ("netns", schema_for!(veil::testnet::netns::NetnsPlan)),
    ]
}

fn schema_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(format!("{name}.schema.json"))
}

#[test]
fn the_documented_schemas_are_the_ones_the_code_writes() {
    let write = std::env::var_os("VEIL_WRITE_SCHEMAS").is_some();
    for (name, schema) in documents() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = schema_path(name);
        if write {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} differs from the schema of the code: regenerate it with \
             VEIL_WRITE_SCHEMAS=1 cargo test --test library formats::",
            path.display()
        );
    }
}

#[test]
fn every_schema_names_its_version_and_is_documented() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/formats.md"))
            .unwrap();
    for (name, schema) in documents() {
        let value = schema.as_value();
        let version = &value["properties"]["version"];
        // A log record (one per line) carries no version of its own: the
        // testnet.json beside the logs does.
        if !name.ends_with("-log") {
            assert_eq!(version["const"], 1, "{name} has no version field");
            let required = value["required"].as_array().unwrap();
            assert!(required.iter().any(|r| r == "version"), "{name}");
        }
        assert!(
            doc.contains(&format!("schemas/{name}.schema.json")),
            "docs/formats.md does not describe {name}"
        );
    }
}
