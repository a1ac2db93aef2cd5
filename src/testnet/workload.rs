//! What `veil testnet run` does once the network is up: either the
//! topology's scenario (place a block at the holders, fetch it from the
//! requester) or a random workload of files inserted and fetched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audit::log::ORIGIN_FILE;
use crate::audit::record::{format_uid, OriginEvent, OriginLine};
use crate::client::Client;
use crate::keys::RoutingKey;
use crate::message::Htl;
use crate::sim::harness::block_near;
use crate::sim::topology::Topology;
use crate::testnet::{io_err, Testnet, TestnetError, WorkloadFile, WorkloadInfo};
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

fn client_of(testnet: &Testnet, name: &str) -> Result<SocketAddr, TestnetError> {
    testnet
        .info
        .nodes
        .get(name)
        .map(|n| n.client)
        .ok_or_else(|| TestnetError::UnknownNode(name.to_string()))
}

/// Connect to `name`'s client API.
async fn connect(testnet: &Testnet, name: &str, timeout: Duration) -> Result<Client, TestnetError> {
    let addr = client_of(testnet, name)?;
    Client::connect(addr, timeout)
        .await
        .map_err(|source| TestnetError::Client {
            node: name.to_string(),
            source,
        })
}

/// Place the scenario's block at its holders and fetch it from the
/// requester.
pub async fn run_scenario(
    topology: &Topology,
    testnet: &Testnet,
) -> Result<ScenarioResult, TestnetError> {
    let scenario = topology.scenario.as_ref().ok_or(TestnetError::NoScenario)?;
    let (chk, block) = block_near(scenario.key_location, 0.001);
    for &h in &scenario.holders {
        let name = &topology.nodes[h].name;
        connect(testnet, name, Duration::from_secs(10))
            .await?
            .place(block.clone())
            .await
            .map_err(|source| TestnetError::Client {
                node: name.clone(),
                source,
            })?;
    }
    let requester = &topology.nodes[scenario.requester].name;
    let found = connect(testnet, requester, Duration::from_secs(150))
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
    text.lines()
        .filter_map(|l| serde_json::from_str::<OriginLine>(l).ok())
        .find(|l| matches!(&l.event, OriginEvent::RequestStarted { key: k, .. } if k == key))
        .map(|l| format_uid(l.flow))
}

/// Blocks each workload transfer keeps in flight: a whole tunnel batch
/// ([`crate::message::BATCH_KEYS`]), so a tunnelled download waits one
/// batch delay per 32 blocks rather than per 8.
const WINDOW: usize = crate::message::BATCH_KEYS;

/// Insert `files` random files of `size` bytes from nodes taken in a seeded
/// random order and fetch
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
) -> Result<WorkloadResult, TestnetError> {
    let dir = &testnet.dir;
    let workload_dir = dir.join("workload");
    std::fs::create_dir_all(&workload_dir).map_err(|e| io_err(&workload_dir, e))?;
    let names: Vec<String> = testnet.info.nodes.keys().cloned().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut result = WorkloadResult::default();
    let mut description = WorkloadInfo {
        max_htl: Some(max_htl),
        files: Vec::new(),
    };
    // Inserters are spread over the nodes (a seeded order, repeated once
    // every node has inserted): many publishers, as on a real network, and
    // as many tunnels for the audit to judge.
    let mut publishers = names.clone();
    publishers.shuffle(&mut rng);
    for i in 0..files {
        let mut data = vec![0u8; size];
        rng.fill_bytes(&mut data);
        let path: PathBuf = workload_dir.join(format!("f{i}.bin"));
        std::fs::write(&path, &data).map_err(|e| io_err(&path, e))?;
        let Some(inserter) = publishers.get(i % publishers.len().max(1)).cloned() else {
            break; // a testnet without nodes has no workload
        };
        let addr = client_of(testnet, &inserter)?;
        let started = std::time::Instant::now();
        let put = put_file(addr, &data, WINDOW, |_, _| {}).await;
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
        // The same split the insert made: the file's routing keys.
        let keys = crate::content::split(&data)
            .map(|s| s.blocks.iter().map(|b| b.routing_key()).collect())
            .unwrap_or_default();
        description.files.push(WorkloadFile {
            path: format!("workload/f{i}.bin"),
            uri: uri.to_uri(),
            keys,
        });
        let mut others: Vec<&String> = names.iter().filter(|n| **n != inserter).collect();
        others.shuffle(&mut rng);
        // The fetches of one file run at once, as independent users would.
        let mut running = tokio::task::JoinSet::new();
        for (slot, fetcher) in others.into_iter().take(fetches).enumerate() {
            let addr = client_of(testnet, fetcher)?;
            let (uri, fetcher) = (uri.clone(), fetcher.clone());
            running.spawn(async move {
                let started = std::time::Instant::now();
                let got = get_file(addr, &uri, WINDOW).await;
                (slot, fetcher, got, started.elapsed().as_millis() as u64)
            });
        }
        let mut done = Vec::with_capacity(fetches);
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok(fetch) => done.push(fetch),
                Err(e) => on_step(&format!("file {i}: a fetch task failed: {e}")),
            }
        }
        done.sort_by_key(|(slot, ..)| *slot);
        let mut ok = 0;
        for (_, fetcher, got, millis) in done {
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
                node: fetcher,
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
    description.save(dir)?;
    Ok(result)
}
