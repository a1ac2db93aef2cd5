//! The files a testnet directory describes itself with, one type each:
//! `testnet.json` ([`TestnetInfo`], written by `up`) and `workload.json`
//! ([`WorkloadInfo`], written by the random workload). `veil audit` reads
//! them with these same types.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::PeerKey;
use crate::keys::RoutingKey;
use crate::message::Htl;

use super::Version;

/// Name of the testnet description file in the testnet directory.
pub const TESTNET_FILE: &str = "testnet.json";
/// Name of the workload description file in the testnet directory.
pub const WORKLOAD_FILE: &str = "workload.json";

/// One node in `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct NodeInfo {
    /// The node's public key.
    pub id: PeerKey,
    pub listen: SocketAddr,
    /// The node's client API: a Unix socket, or a TCP address and the
    /// node's cookie file.
    pub client: crate::client::Endpoint,
    /// The node's FCP server (docs/fcp.md), `HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcp: Option<SocketAddr>,
    pub pid: u32,
}

/// `testnet.json`: whether every link is up, and the nodes by name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TestnetInfo {
    /// The schema version (docs/formats.md).
    pub version: Version<1>,
    pub ready: bool,
    pub nodes: BTreeMap<String, NodeInfo>,
}

/// One inserted file in `workload.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct WorkloadFile {
    /// Relative to the testnet directory.
    pub path: String,
    /// The file's URI (which holds its decryption key).
    pub uri: String,
    /// Every routing key of the file, data blocks and manifests alike (the
    /// audit maps observed keys to files with these).
    #[serde(default, with = "crate::formats::audit_log::keys_text")]
    #[schemars(with = "Vec<super::text::Key>")]
    pub keys: Vec<RoutingKey>,
    /// Ground truth for the known-content adversary (never a signal): the
    /// node that inserted the file, and those that fetched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inserted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetched_by: Vec<String>,
}

/// `workload.json`: what the random workload inserted, for the leak check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct WorkloadInfo {
    /// The schema version (docs/formats.md).
    pub version: Version<1>,
    /// The nodes' largest HTL; the audit uses the largest HTL it observed
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_htl: Option<Htl>,
    #[serde(default)]
    pub files: Vec<WorkloadFile>,
}
