//! What `veil testnet run` does once the network is up: either the
//! topology's scenario (place a block at the holders, fetch it from the
//! requester) or a random workload of files inserted and fetched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audit::log::ORIGIN_FILE;
use crate::client::Client;
use crate::keys::RoutingKey;
use crate::message::Htl;
use crate::sim::harness::block_near;
use crate::sim::topology::Topology;
use crate::testnet::Testnet;
use crate::transfer::{get_file, put_file};

/// What the scenario run saw.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub found: bool,
    /// The request's uid, as the requester's origin log has it.
    pub uid: Option<String>,
    pub routing_key: String,
}

/// One fetch of the random workload.
#[derive(Debug, Serialize)]
pub struct FetchResult {
    pub file: usize,
    pub node: String,
    pub verified: bool,
    pub error: Option<String>,
    pub millis: u64,
}

/// One inserted file of the random workload.
#[derive(Debug, Serialize)]
pub struct FileResult {
    pub file: usize,
    pub inserted_from: String,
    pub size: usize,
    pub inserted: bool,
    pub error: Option<String>,
    pub millis: u64,
}

/// The random workload's results.
#[derive(Debug, Serialize, Default)]
pub struct WorkloadResult {
    pub files: Vec<FileResult>,
    pub fetches: Vec<FetchResult>,
}

impl WorkloadResult {
    pub fn verified(&self) -> usize {
        self.fetches.iter().filter(|f| f.verified).count()
    }

    pub fn all_ok(&self) -> bool {
        self.files.iter().all(|f| f.inserted) && self.fetches.iter().all(|f| f.verified)
    }
}

#[derive(Serialize)]
struct WorkloadFile {
    path: String,
    uri: String,
}

#[derive(Serialize)]
struct WorkloadDescription {
    max_htl: Htl,
    files: Vec<WorkloadFile>,
}

fn client_of(testnet: &Testnet, name: &str) -> Option<SocketAddr> {
    testnet.info.nodes.get(name).map(|n| n.client)
}

/// Place the scenario's block at its holders and fetch it from the
/// requester.
pub async fn run_scenario(
    topology: &Topology,
    testnet: &Testnet,
) -> anyhow::Result<ScenarioResult> {
    let scenario = topology
        .scenario
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the topology has no [scenario]"))?;
    let (chk, block) = block_near(scenario.key_location, 0.001);
    for &h in &scenario.holders {
        let name = &topology.nodes[h].name;
        let addr = client_of(testnet, name).ok_or_else(|| anyhow::anyhow!("no node {name}"))?;
        Client::connect(addr, Duration::from_secs(10))
            .await?
            .place(block.clone())
            .await?;
    }
    let requester = &topology.nodes[scenario.requester].name;
    let addr =
        client_of(testnet, requester).ok_or_else(|| anyhow::anyhow!("no node {requester}"))?;
    let found = Client::connect(addr, Duration::from_secs(150))
        .await?
        .get(chk.routing)
        .await
        .is_ok();
    let uid = find_origin_uid(&testnet.dir.join(requester), &chk.routing);
    Ok(ScenarioResult {
        found,
        uid,
        routing_key: chk.routing.to_base64(),
    })
}

/// The uid the node's origin log recorded for a request for `key`.
pub fn find_origin_uid(node_dir: &Path, key: &RoutingKey) -> Option<String> {
    let text = std::fs::read_to_string(node_dir.join(ORIGIN_FILE)).ok()?;
    let key = key.to_base64();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("key").and_then(|k| k.as_str()) == Some(key.as_str()))
        .and_then(|v| v.get("uid").and_then(|u| u.as_str()).map(str::to_string))
}

/// Insert `files` random files of `size` bytes from random nodes and fetch
/// each from `fetches` other random nodes, checking every byte. Writes the
/// files under `DIR/workload/` and `DIR/workload.json` for the auditor.
pub async fn run_files(
    testnet: &Testnet,
    files: usize,
    size: usize,
    fetches: usize,
    seed: u64,
    max_htl: Htl,
    on_step: impl Fn(&str),
) -> anyhow::Result<WorkloadResult> {
    let dir = &testnet.dir;
    let workload_dir = dir.join("workload");
    std::fs::create_dir_all(&workload_dir)?;
    let names: Vec<String> = testnet.info.nodes.keys().cloned().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut result = WorkloadResult::default();
    let mut description = WorkloadDescription {
        max_htl,
        files: Vec::new(),
    };
    for i in 0..files {
        let mut data = vec![0u8; size];
        rng.fill_bytes(&mut data);
        let path: PathBuf = workload_dir.join(format!("f{i}.bin"));
        std::fs::write(&path, &data)?;
        let inserter = names[rng.gen_range(0..names.len())].clone();
        let addr =
            client_of(testnet, &inserter).ok_or_else(|| anyhow::anyhow!("no node {inserter}"))?;
        let started = std::time::Instant::now();
        let put = put_file(addr, &data, 8, |_, _| {}).await;
        let millis = started.elapsed().as_millis() as u64;
        let uri = match put {
            Ok(uri) => uri,
            Err(e) => {
                on_step(&format!("file {i}: insert from {inserter} FAILED: {e}"));
                result.files.push(FileResult {
                    file: i,
                    inserted_from: inserter,
                    size,
                    inserted: false,
                    error: Some(e.to_string()),
                    millis,
                });
                continue;
            }
        };
        result.files.push(FileResult {
            file: i,
            inserted_from: inserter.clone(),
            size,
            inserted: true,
            error: None,
            millis,
        });
        description.files.push(WorkloadFile {
            path: format!("workload/f{i}.bin"),
            uri: uri.to_uri(),
        });
        let mut others: Vec<&String> = names.iter().filter(|n| **n != inserter).collect();
        others.shuffle(&mut rng);
        let mut ok = 0;
        for fetcher in others.into_iter().take(fetches) {
            let addr =
                client_of(testnet, fetcher).ok_or_else(|| anyhow::anyhow!("no node {fetcher}"))?;
            let started = std::time::Instant::now();
            let got = get_file(addr, &uri, 8).await;
            let millis = started.elapsed().as_millis() as u64;
            let (verified, error) = match got {
                Ok(bytes) if bytes == data => (true, None),
                Ok(bytes) => (
                    false,
                    Some(format!("content differs ({} bytes)", bytes.len())),
                ),
                Err(e) => (false, Some(e.to_string())),
            };
            ok += usize::from(verified);
            result.fetches.push(FetchResult {
                file: i,
                node: fetcher.clone(),
                verified,
                error,
                millis,
            });
        }
        on_step(&format!(
            "file {}/{files}: {size} bytes inserted from {inserter}, fetched and verified {ok}/{fetches}",
            i + 1
        ));
    }
    std::fs::write(
        dir.join("workload.json"),
        serde_json::to_string_pretty(&description)? + "\n",
    )?;
    Ok(result)
}
