//! What `veil status --json` prints: the node's status as its client API
//! gives it ([`NodeStatus`]), with the document's version.

use serde::Serialize;

use super::Version;
use crate::client::NodeStatus;

/// `veil status --json` (docs/formats.md).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StatusOutput {
    pub version: Version<1>,
    #[serde(flatten)]
    pub status: NodeStatus,
}
