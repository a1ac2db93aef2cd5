//! The files veil writes for other programs, and reads back with the same
//! types: one definition each, below every layer that writes or reads it.
//!
//! ```text
//! audit_log.rs  audit.jsonl and origin.jsonl: one record type per line
//!               (written by a node's audit log, read by `veil audit`)
//! testnet.rs    testnet.json and workload.json (written by `veil testnet`,
//!               read by `veil audit` and by scripts)
//! status.rs     what `veil status --json` prints
//! ```
//!
//! The reports of `veil audit`, `veil testnet run`, `veil bench` and
//! `veil sim` are versioned where their types live, with [`Version`].
//!
//! Each is described for other programs in `docs/formats.md`.

pub mod audit_log;
pub mod status;
pub mod testnet;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A document's schema version, its `version` field: written as the number
/// `N`; a reader of this build refuses any other number with an error that
/// names both, instead of misreading a document of another shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Version<const N: u32>;

impl<const N: u32> Serialize for Version<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(N)
    }
}

impl<'de, const N: u32> Deserialize<'de> for Version<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            v if v == N => Ok(Version),
            v => Err(D::Error::custom(format!(
                "schema version {v}, but this veil reads version {N} (docs/formats.md)"
            ))),
        }
    }
}

impl<const N: u32> schemars::JsonSchema for Version<N> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Version{N}").into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The schema version of this document.",
            "type": "integer",
            "const": N,
        })
    }
}

/// Stand-ins that describe, in the JSON Schemas, fields written as text.
pub mod text {
    use std::borrow::Cow;

    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

    /// A request or tunnel ID: 16 lowercase hex digits.
    pub struct Uid;
    /// A routing key: 32 bytes as unpadded base64url.
    pub struct Key;

    impl JsonSchema for Uid {
        fn schema_name() -> Cow<'static, str> {
            "Uid".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A request's uid (or a tunnel's id): 16 hex digits.",
                "type": "string",
                "pattern": "^[0-9a-f]{16}$",
            })
        }
    }

    impl JsonSchema for Key {
        fn schema_name() -> Cow<'static, str> {
            "RoutingKey".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A routing key: 32 bytes as unpadded base64url.",
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{43}$",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn a_version_is_written_as_its_number_and_only_that_number_is_read() {
        assert_eq!(serde_json::to_string(&Version::<3>).unwrap(), "3");
        assert!(serde_json::from_str::<Version<3>>("3").is_ok());
        let err = serde_json::from_str::<Version<3>>("4").unwrap_err();
        assert!(err.to_string().contains("schema version 4"), "{err}");
    }
}
