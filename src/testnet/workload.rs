//! What `veil testnet run` does once the network is up: either the
//! topology's scenario (place a block at the holders, fetch it from the
//! requester) or a random workload of files inserted and fetched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audit::log::ORIGIN_FILE;
use crate::client::transfer::{get_options, get_to_writer, put_file_with};
use crate::client::Client;
use crate::content::{FetchOptions, SplitOptions};
use crate::formats::audit_log::{format_uid, OriginEvent, OriginLine};
use crate::formats::testnet::{WorkloadFile, WorkloadInfo};
use crate::keys::{Chk, RoutingKey};
use crate::message::Htl;
use crate::sim::harness::block_near;
use crate::sim::topology::Topology;
use crate::testnet::failures::{self, FailureReport, Failures, FileHolders};
use crate::testnet::{io_err, Testnet, TestnetError};

/// What the scenario run saw.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ScenarioResult {
    pub found: bool,
    /// The request's uid, as the requester's origin log has it.
    pub uid: Option<String>,
    pub routing_key: String,
}

/// One fetch of the random workload.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FetchResult {
    pub file: usize,
    pub node: String,
    pub verified: bool,
    pub error: Option<String>,
    /// Failure runs: why it failed (see [`FileHolders::reason`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Block requests asked again after a failure.
    pub retries: u64,
    /// Blocks fetched and verified (manifests included).
    #[serde(default)]
    pub blocks: u64,
    pub millis: u64,
}

/// One inserted file of the random workload.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FileResult {
    pub file: usize,
    pub inserted_from: String,
    pub size: usize,
    pub inserted: bool,
    pub error: Option<String>,
    pub millis: u64,
}

/// The random workload's results.
#[derive(Debug, Serialize, Default, schemars::JsonSchema)]
pub struct WorkloadResult {
    pub files: Vec<FileResult>,
    pub fetches: Vec<FetchResult>,
    /// What `--kill` and `--churn` did, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<FailureReport>,
}

impl WorkloadResult {
    pub fn verified(&self) -> usize {
        self.fetches.iter().filter(|f| f.verified).count()
    }

    pub fn all_ok(&self) -> bool {
        self.files.iter().all(|f| f.inserted) && self.fetches.iter().all(|f| f.verified)
    }

    /// Block requests retried over every fetch.
    pub fn retries(&self) -> u64 {
        self.fetches.iter().map(|f| f.retries).sum()
    }

    /// Blocks fetched over every fetch.
    pub fn blocks(&self) -> u64 {
        self.fetches.iter().map(|f| f.blocks).sum()
    }

    /// The `q` quantile (0..=1, nearest rank) of the fetch times, in ms.
    pub fn get_ms(&self, q: f64) -> Option<u64> {
        let mut ms: Vec<u64> = self.fetches.iter().map(|f| f.millis).collect();
        ms.sort_unstable();
        let rank = (q.clamp(0.0, 1.0) * ms.len() as f64).ceil() as usize;
        ms.get(rank.saturating_sub(1)).copied()
    }
}

fn client_of(testnet: &Testnet, name: &str) -> Result<crate::client::Endpoint, TestnetError> {
    testnet
        .info
        .nodes
        .get(name)
        .map(|n| n.client.clone())
        .ok_or_else(|| TestnetError::UnknownNode(name.to_string()))
}

/// Connect to `name`'s client API.
async fn connect(testnet: &Testnet, name: &str, timeout: Duration) -> Result<Client, TestnetError> {
    let addr = client_of(testnet, name)?;
    Client::connect(&addr, timeout)
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

/// Blocks each workload get keeps in flight (`veil get`'s default).
const WINDOW: usize = 256;

/// Blocks each workload insert keeps in flight (`veil put`'s default).
const PUT_WINDOW: usize = 128;

/// What the random workload does.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub files: usize,
    /// Bytes per file.
    pub size: usize,
    /// Fetches of each file, from other random nodes.
    pub fetches: usize,
    pub seed: u64,
    pub max_htl: Htl,
    /// Check blocks per 100 data blocks (`veil put --redundancy`).
    pub redundancy: u16,
    /// Nodes killed or churned; with any, every file is inserted before
    /// the first fetch.
    pub failures: Failures,
    /// Do the nodes cache (count cached copies as holders)?
    pub cached_copies: bool,
}

/// One file inserted and waiting for its fetches (failure runs).
struct Inserted {
    file: usize,
    uri: Chk,
    data: Arc<Vec<u8>>,
    keys: Vec<RoutingKey>,
    fetchers: Vec<(String, crate::client::Endpoint)>,
}

/// Insert `files` random files of `size` bytes from nodes taken in a seeded
/// random order and fetch each from `fetches` other random nodes, checking
/// every byte. Without failures each file is fetched right after its
/// insert; with them every file is inserted first, then `--kill` and
/// `--churn` strike the nodes that fetch nothing, then the fetches run
/// (see [`super::failures`]). Writes the files under `DIR/workload/` and
/// `DIR/workload.json` for the auditor.
pub async fn run_files(
    testnet: &mut Testnet,
    spec: &WorkloadSpec,
    on_step: impl Fn(&str),
) -> Result<WorkloadResult, TestnetError> {
    let (files, size, fetches) = (spec.files, spec.size, spec.fetches);
    let dir = testnet.dir.clone();
    let workload_dir = dir.join("workload");
    std::fs::create_dir_all(&workload_dir).map_err(|e| io_err(&workload_dir, e))?;
    let names: Vec<String> = testnet.info.nodes.keys().cloned().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut result = WorkloadResult::default();
    let mut description = WorkloadInfo {
        version: Default::default(),
        max_htl: Some(spec.max_htl),
        files: Vec::new(),
    };
    let split = SplitOptions {
        redundancy: spec.redundancy,
        ..SplitOptions::default()
    };
    let mut inserted = Vec::new();
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
        let put = put_file_with(&addr, &data, PUT_WINDOW, &split, |_, _| {}).await;
        let millis = started.elapsed().as_millis() as u64;
        let (uri, error) = match put {
            Ok(uri) => (Some(uri), None),
            Err(e) => {
                on_step(&format!("file {i}: insert from {inserter} FAILED: {e}"));
                (None, Some(e.to_string()))
            }
        };
        result.files.push(FileResult {
            file: i,
            inserted_from: inserter.clone(),
            size,
            inserted: uri.is_some(),
            error,
            millis,
        });
        let Some(uri) = uri else { continue };
        // The same split the insert made: the file's routing keys.
        let keys: Vec<RoutingKey> = crate::content::split_with(&data, &split)
            .map(|s| s.blocks.iter().map(|b| b.routing_key()).collect())
            .unwrap_or_default();
        let mut others: Vec<&String> = names.iter().filter(|n| **n != inserter).collect();
        others.shuffle(&mut rng);
        let fetchers = others
            .into_iter()
            .take(fetches)
            .map(|n| Ok((n.clone(), client_of(testnet, n)?)))
            .collect::<Result<Vec<_>, TestnetError>>()?;
        description.files.push(WorkloadFile {
            path: format!("workload/f{i}.bin"),
            uri: uri.to_uri(),
            keys: keys.clone(),
            inserted_by: Some(inserter.clone()),
            fetched_by: fetchers.iter().map(|(n, _)| n.clone()).collect(),
        });
        let file = Inserted {
            file: i,
            uri,
            data: Arc::new(data),
            keys,
            fetchers,
        };
        if spec.failures.any() {
            on_step(&format!(
                "file {}/{files}: {size} bytes inserted from {inserter}",
                i + 1
            ));
            inserted.push(file);
        } else {
            let done = fetch_file(&file, get_options(WINDOW).retries).await;
            let ok = done.iter().filter(|f| f.verified).count();
            result.fetches.extend(done);
            on_step(&format!(
                "file {}/{files}: {size} bytes inserted from {inserter}, fetched and verified {ok}/{fetches}",
                i + 1
            ));
        }
    }
    description.save(&dir)?;
    if spec.failures.any() {
        let report = fail_and_fetch(testnet, spec, &mut rng, &inserted, &mut result, &on_step);
        result.failures = Some(report.await?);
    }
    Ok(result)
}

/// Kill (`--kill`) and churn (`--churn`) the nodes that fetch nothing, run
/// every fetch meanwhile, and explain each failed one.
async fn fail_and_fetch(
    testnet: &mut Testnet,
    spec: &WorkloadSpec,
    rng: &mut ChaCha8Rng,
    inserted: &[Inserted],
    result: &mut WorkloadResult,
    on_step: &impl Fn(&str),
) -> Result<FailureReport, TestnetError> {
    let fetching: BTreeSet<&String> = inserted
        .iter()
        .flat_map(|f| f.fetchers.iter().map(|(n, _)| n))
        .collect();
    let idle: Vec<String> = testnet
        .info
        .nodes
        .keys()
        .filter(|n| !fetching.contains(n))
        .cloned()
        .collect();
    let f = spec.failures;
    let killed = failures::choose(rng, &idle, f.kill);
    for name in &killed {
        testnet.kill_node(name);
    }
    if !killed.is_empty() {
        on_step(&format!(
            "killed {} of {} non-fetching nodes for good: {}",
            killed.len(),
            idle.len(),
            killed.join(" ")
        ));
    }
    let alive: Vec<String> = idle.into_iter().filter(|n| !killed.contains(n)).collect();
    let churned = failures::choose(rng, &alive, f.churn);
    let plan = failures::plan_churn(rng, &churned, f.ms_per_minute);
    let work = async {
        let mut all = Vec::new();
        for file in inserted {
            let retries = match f.churn > 0.0 {
                true => CHURN_FETCH_RETRIES,
                false => get_options(WINDOW).retries,
            };
            let done = fetch_file(file, retries).await;
            let ok = done.iter().filter(|f| f.verified).count();
            on_step(&format!(
                "file {}: fetched and verified {ok}/{}",
                file.file,
                done.len()
            ));
            all.extend(done);
        }
        all
    };
    let (fetched, churn_events) = failures::churn_while(testnet, &plan, work, on_step).await?;
    result.fetches = fetched;
    // Why each failed fetch failed: blocks with no holder that stayed up.
    let down: BTreeSet<String> = killed.iter().chain(&churned).cloned().collect();
    let held = failures::holders(&testnet.dir, testnet.info.nodes.keys(), spec.cached_copies);
    let files: Vec<FileHolders> = inserted
        .iter()
        .map(|f| failures::file_holders(f.file, &f.keys, &held, &down))
        .collect();
    for fetch in result.fetches.iter_mut().filter(|f| !f.verified) {
        if let Some(h) = files.iter().find(|h| h.file == fetch.file) {
            fetch.reason = Some(h.reason(fetch.error.as_deref().unwrap_or("?")));
        }
    }
    Ok(FailureReport {
        kill_fraction: f.kill,
        churn_fraction: f.churn,
        ms_per_minute: f.ms_per_minute,
        killed,
        churned: churn_events,
        files,
    })
}

/// Retries of a failed block request in the workload's fetches under churn
/// (the default of `veil get`, 2, otherwise): backoff 0.25 s doubling,
/// 3.75 s in all, to wait out a short session.
const CHURN_FETCH_RETRIES: u32 = 4;

/// Fetch one file from each of its fetchers at once, as independent users
/// would, and check every byte.
async fn fetch_file(file: &Inserted, retries: u32) -> Vec<FetchResult> {
    let mut running = tokio::task::JoinSet::new();
    for (slot, (fetcher, addr)) in file.fetchers.iter().enumerate() {
        let (uri, fetcher, addr, data) = (
            file.uri.clone(),
            fetcher.clone(),
            addr.clone(),
            file.data.clone(),
        );
        running.spawn(async move {
            let started = std::time::Instant::now();
            let opts = FetchOptions {
                retries,
                ..get_options(WINDOW)
            };
            let (mut retried, mut blocks) = (0, 0);
            let mut out = Vec::new();
            let got = get_to_writer(&addr, &uri, &opts, &mut out, |p| {
                (retried, blocks) = (p.retries, p.blocks_done)
            })
            .await;
            let (verified, error) = match got {
                Ok(_) if out == *data => (true, None),
                Ok(_) => (
                    false,
                    Some(format!("content differs ({} bytes)", out.len())),
                ),
                Err(e) => (false, Some(e.to_string())),
            };
            let millis = started.elapsed().as_millis() as u64;
            let result = FetchResult {
                file: 0,
                node: fetcher,
                verified,
                error,
                reason: None,
                retries: retried,
                blocks,
                millis,
            };
            (slot, result)
        });
    }
    let mut done = Vec::with_capacity(file.fetchers.len());
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(fetch) => done.push(fetch),
            Err(e) => tracing::warn!(file = file.file, "a fetch task failed: {e}"),
        }
    }
    done.sort_by_key(|(slot, _)| *slot);
    done.into_iter()
        .map(|(_, mut r)| {
            r.file = file.file;
            r
        })
        .collect()
}
