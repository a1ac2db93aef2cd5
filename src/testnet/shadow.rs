//! `veil testnet export --shadow DIR`: a topology as a Shadow 3.x
//! simulation (docs/shadow.md). Written into `DIR`:
//!
//! ```text
//! shadow.yaml                  general, network (the graph file), hosts
//! network.gml                  one graph node per host, links, self-loops
//! shadow.data.template/        copied by Shadow as its data directory
//!   hosts/<host>/veil/         each node: node.toml, identity.key
//!   audit/testnet.json         the testnet `veil audit` reads, with
//!   audit/workload.json        the workload's files and URIs
//!   audit/workload/f<K>.bin    the files the workload inserts
//! audit.sh                     links audit/<host> to hosts/<host>/veil in
//!                              Shadow's output and runs `veil audit` on it
//! ```
//!
//! Every host runs `veil node veil --testnet` (Shadow starts each process
//! in its host's directory, `hosts/<host>/`, where it also writes each
//! process's stdout and stderr: outside the node directory, whose every
//! file the audit's leak check reads). The workload is processes of their
//! own: `veil put` of each file on its inserter, then `veil get URI` on its
//! fetchers.
//! The URIs are computed here: a CHK names its content, so the put makes
//! the very URI the gets ask for, and a get exits 0 only when what it
//! fetched hashes to it. Shadow fails the run when a process does not end
//! in its `expected_final_state`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use super::net::{Bandwidth, NetTopology};
use super::{io_err, save_json, TestnetError};
use crate::client::Endpoint;
use crate::config::{NodeConfig, PeerConfig, SizeSetting, IDENTITY_FILE};
use crate::content::SplitOptions;
use crate::formats::testnet::{NodeInfo, TestnetInfo, WorkloadFile, WorkloadInfo};
use crate::identity::Identity;
use crate::routing::Anonymity;
use crate::sim::latency::Latency;

/// Where each host's node accepts links.
pub const LISTEN_PORT: u16 = 7400;
/// Each host's TCP client API, on the host's own loopback.
pub const CLIENT_PORT: u16 = 7401;
/// The data directory Shadow copies from (`general.template_directory`).
pub const TEMPLATE_DIR: &str = "shadow.data.template";
/// Each host's node directory, inside its host directory.
pub const NODE_DIR: &str = "veil";
/// The self-loop's latency: traffic between two processes of one host.
pub const SELF_LOOP_MS: u64 = 1;

/// What the export writes, and the workload it gives the hosts.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The `veil` binary every process runs (absolute).
    pub veil: PathBuf,
    /// Seeds the links' latencies, the identities, the files and who
    /// inserts and fetches them; also `general.seed`.
    pub seed: u64,
    /// The latency model of links the topology gives none (overrides the
    /// topology's `[net] latency`); default lognormal:40,0.5.
    pub latency: Option<Latency>,
    /// Every host's bandwidth unless the topology gives one.
    pub bandwidth: Bandwidth,
    pub anonymity: Anonymity,
    pub files: usize,
    pub size: usize,
    pub fetches: usize,
    /// Simulated seconds: the puts start, the gets start, everything stops.
    pub put_at: u64,
    pub get_at: u64,
    pub stop_at: u64,
}

/// Every host's bandwidth unless the topology or `--bandwidth` gives one.
pub const DEFAULT_BANDWIDTH: Bandwidth = Bandwidth(100_000_000);

/// What was written (the CLI's summary; `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub hosts: usize,
    pub links: usize,
    /// Link latencies in ms: smallest, median, largest.
    pub latency_ms: [u64; 3],
    pub files: usize,
    pub fetches: usize,
    pub stop_time_s: u64,
}

/// Host `i`'s IPv4 address: 11.0.0.1 upwards, skipping .0 and .255.
pub fn host_ip(i: usize) -> Ipv4Addr {
    let i = i as u32;
    let (hi, lo) = (i / 254, i % 254 + 1);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(11, 0, 0, 0)) + (hi << 8) + lo)
}

/// A topology name as a Shadow host name: lower case, `_` as `-`.
pub fn host_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// One link of the graph.
struct Link {
    a: usize,
    b: usize,
    latency_ms: u64,
    loss: f64,
}

/// A process of a host in shadow.yaml.
struct Process {
    args: Vec<String>,
    start_s: u64,
    shutdown_s: Option<u64>,
}

/// Write the simulation of `topo` into `dir` (which must not exist or be
/// empty).
pub fn export(
    topo: &NetTopology,
    dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, TestnetError> {
    let topology = &topo.topology;
    let n = topology.nodes.len();
    if !(opts.put_at < opts.get_at && opts.get_at + 30 < opts.stop_at) {
        return Err(TestnetError::Export(format!(
            "times must run put {} s < get {} s < stop {} s - 30",
            opts.put_at, opts.get_at, opts.stop_at
        )));
    }
    if n < 2 {
        return Err(TestnetError::Export(
            "a simulation needs two nodes at least".into(),
        ));
    }
    if !connected(n, &topology.edges) {
        return Err(TestnetError::Export(
            "the topology is not connected (Shadow needs a connected graph)".into(),
        ));
    }
    let names: Vec<String> = topology.nodes.iter().map(|s| host_name(&s.name)).collect();
    let mut seen = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = seen.insert(name.clone(), i) {
            return Err(TestnetError::Export(format!(
                "nodes {} and {} are the same host name {name}",
                topology.nodes[j].name, topology.nodes[i].name
            )));
        }
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .next()
            .is_some()
    {
        return Err(TestnetError::Export(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let hosts_dir = dir.join(TEMPLATE_DIR).join("hosts");
    let audit_dir = dir.join(TEMPLATE_DIR).join("audit");
    let files_dir = audit_dir.join("workload");
    for d in [&hosts_dir, &files_dir] {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }

    // Links: the topology's own latency and loss, else the model's draw.
    let model = opts.latency.or(topo.net.latency).unwrap_or_default();
    let links: Vec<Link> = topology
        .edges
        .iter()
        .map(|&(a, b)| {
            let own = topo.net.links.get(&(a, b)).copied().unwrap_or_default();
            let drawn = model.of_link(opts.seed, a as u32, b as u32);
            Link {
                a,
                b,
                latency_ms: own.latency_ms.unwrap_or(drawn).max(1),
                loss: own.loss.unwrap_or(0.0),
            }
        })
        .collect();

    // Identities and node directories.
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed);
    let identities: Vec<Identity> = (0..n).map(|_| Identity::generate(&mut rng)).collect();
    let listen = |i: usize| SocketAddr::V4(SocketAddrV4::new(host_ip(i), LISTEN_PORT));
    let client = SocketAddr::from(([127, 0, 0, 1], CLIENT_PORT));
    let adjacency = topology.adjacency();
    let mut info = TestnetInfo {
        version: Default::default(),
        ready: true,
        nodes: BTreeMap::new(),
    };
    for (i, node) in topology.nodes.iter().enumerate() {
        let host_dir = hosts_dir.join(&names[i]).join(NODE_DIR);
        std::fs::create_dir_all(&host_dir).map_err(|e| io_err(&host_dir, e))?;
        identities[i].save(host_dir.join(IDENTITY_FILE))?;
        let mut config = NodeConfig::new(listen(i), Some(client), Some(node.location.as_f64()));
        config.testnet = true;
        config.anonymity = opts.anonymity;
        config.router.max_htl = super::run::max_htl_of(topology);
        config.store_size = SizeSetting::Text("64MiB".into());
        // Shadow runs every thread of every host on its own schedule: one
        // runtime thread per node keeps a simulation of many hosts cheap.
        config.runtime.worker_threads = 1;
        config.peers = adjacency[i]
            .iter()
            .map(|&j| PeerConfig {
                address: listen(j),
                public_key: identities[j].public(),
                name: Some(names[j].clone()),
            })
            .collect();
        config.save(&host_dir)?;
        info.nodes.insert(
            names[i].clone(),
            NodeInfo {
                id: identities[i].public(),
                listen: listen(i),
                client: Endpoint::Tcp {
                    addr: client,
                    cookie: PathBuf::from(&names[i]).join(crate::client::endpoint::COOKIE_FILE),
                },
                fcp: None,
                pid: 0,
            },
        );
    }
    save_json(
        &audit_dir.join(crate::formats::testnet::TESTNET_FILE),
        &info,
    )?;

    // The workload: files, their URIs, who inserts and who fetches.
    let mut processes: Vec<Vec<Process>> = (0..n)
        .map(|_| {
            vec![Process {
                args: vec!["node".into(), NODE_DIR.into(), "--testnet".into()],
                start_s: 1,
                shutdown_s: Some(opts.stop_at - 15),
            }]
        })
        .collect();
    let mut workload = WorkloadInfo {
        version: Default::default(),
        max_htl: Some(super::run::max_htl_of(topology)),
        files: Vec::new(),
    };
    let mut publishers: Vec<usize> = (0..n).collect();
    publishers.shuffle(&mut rng);
    let mut fetch_count = 0;
    for k in 0..opts.files {
        let inserter = publishers[k % n];
        let mut data = vec![0u8; opts.size];
        rng.fill_bytes(&mut data);
        let file = format!("workload/f{k}.bin");
        let path = audit_dir.join(&file);
        std::fs::write(&path, &data).map_err(|e| io_err(&path, e))?;
        let split = crate::content::split_with(&data, &SplitOptions::default())
            .map_err(|e| TestnetError::Export(format!("splitting file {k}: {e}")))?;
        let uri = split.uri.to_uri();
        processes[inserter].push(Process {
            args: vec![
                "put".into(),
                "--node".into(),
                NODE_DIR.into(),
                format!("../../audit/{file}"),
            ],
            start_s: opts.put_at,
            shutdown_s: None,
        });
        let mut others: Vec<usize> = (0..n).filter(|&j| j != inserter).collect();
        others.shuffle(&mut rng);
        let fetchers: Vec<usize> = others.into_iter().take(opts.fetches).collect();
        for &f in &fetchers {
            processes[f].push(Process {
                args: vec![
                    "get".into(),
                    "--node".into(),
                    NODE_DIR.into(),
                    "--retries".into(),
                    "4".into(),
                    uri.clone(),
                    "-o".into(),
                    format!("fetched-f{k}.bin"),
                ],
                start_s: opts.get_at,
                shutdown_s: None,
            });
            fetch_count += 1;
        }
        workload.files.push(WorkloadFile {
            path: file,
            uri,
            keys: split.blocks.iter().map(|b| b.routing_key()).collect(),
            inserted_by: Some(names[inserter].clone()),
            fetched_by: fetchers.iter().map(|&f| names[f].clone()).collect(),
        });
    }
    save_json(
        &audit_dir.join(crate::formats::testnet::WORKLOAD_FILE),
        &workload,
    )?;

    let bandwidth = |i: usize| topo.net.bandwidth_of(i).unwrap_or(opts.bandwidth);
    let gml = gml_text(&names, &links, bandwidth);
    write(&dir.join("network.gml"), &gml)?;
    let yaml = yaml_text(opts, &names, &processes);
    write(&dir.join("shadow.yaml"), &yaml)?;
    let script = dir.join("audit.sh");
    write(&script, &audit_script(&opts.veil))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io_err(&script, e))?;

    let mut latencies: Vec<u64> = links.iter().map(|l| l.latency_ms).collect();
    latencies.sort_unstable();
    let pick = |q: usize| latencies.get(q).copied().unwrap_or(0);
    Ok(ExportReport {
        dir: dir.to_path_buf(),
        hosts: n,
        links: links.len(),
        latency_ms: [
            pick(0),
            pick(latencies.len() / 2),
            pick(latencies.len().saturating_sub(1)),
        ],
        files: opts.files,
        fetches: fetch_count,
        stop_time_s: opts.stop_at,
    })
}

fn write(path: &Path, text: &str) -> Result<(), TestnetError> {
    std::fs::write(path, text).map_err(|e| io_err(path, e))
}

/// Is the graph of `n` nodes and `edges` connected?
pub fn connected(n: usize, edges: &[(usize, usize)]) -> bool {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
        adj[b].push(a);
    }
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([0]);
    seen[0] = true;
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if !seen[w] {
                seen[w] = true;
                queue.push_back(w);
            }
        }
    }
    seen.iter().all(|&s| s)
}

/// A string as a double-quoted scalar (JSON's escapes are YAML's).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn gml_text(names: &[String], links: &[Link], bandwidth: impl Fn(usize) -> Bandwidth) -> String {
    let mut out = String::from("graph [\n  directed 0\n");
    for (i, name) in names.iter().enumerate() {
        let bw = bandwidth(i);
        let _ = write!(
            out,
            "  node [\n    id {i}\n    label {}\n    host_bandwidth_up \"{bw}\"\n    host_bandwidth_down \"{bw}\"\n  ]\n",
            quoted(name)
        );
    }
    let edge = |out: &mut String, a: usize, b: usize, ms: u64, loss: f64| {
        let _ = write!(
            out,
            "  edge [\n    source {a}\n    target {b}\n    latency \"{ms} ms\"\n    packet_loss {loss:?}\n  ]\n"
        );
    };
    for i in 0..names.len() {
        edge(&mut out, i, i, SELF_LOOP_MS, 0.0);
    }
    for l in links {
        edge(&mut out, l.a, l.b, l.latency_ms, l.loss);
    }
    out.push_str("]\n");
    out
}

fn yaml_text(opts: &ExportOptions, names: &[String], processes: &[Vec<Process>]) -> String {
    let veil = quoted(&opts.veil.to_string_lossy());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `veil testnet export --shadow` for Shadow 3.x (docs/shadow.md).\n\
         # Run it from this directory: shadow shadow.yaml > shadow.log; then ./audit.sh"
    );
    let _ = write!(
        out,
        "general:\n  stop_time: {stop} s\n  seed: {seed}\n  template_directory: {TEMPLATE_DIR}\n  \
         model_unblocked_syscall_latency: true\n  progress: true\n\
         network:\n  graph:\n    type: gml\n    file:\n      path: network.gml\n\
         host_option_defaults:\n  log_level: warning\n\
         hosts:\n",
        stop = opts.stop_at,
        seed = opts.seed
    );
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            out,
            "  {name}:\n    network_node_id: {i}\n    ip_addr: {ip}\n    processes:\n",
            ip = host_ip(i)
        );
        for p in &processes[i] {
            let args: Vec<String> = p.args.iter().map(|a| quoted(a)).collect();
            let _ = write!(
                out,
                "    - path: {veil}\n      args: [{}]\n      environment: {{ RUST_LOG: \"info\" }}\n      start_time: {} s\n",
                args.join(", "),
                p.start_s
            );
            if let Some(s) = p.shutdown_s {
                let _ = write!(
                    out,
                    "      shutdown_time: {s} s\n      shutdown_signal: SIGTERM\n"
                );
            }
            out.push_str("      expected_final_state: {exited: 0}\n");
        }
    }
    out
}

fn audit_script(veil: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # The audit of a Shadow run of this export (docs/shadow.md): links\n\
         # audit/<host> to each host's node directory in Shadow's output, then\n\
         # runs `veil audit` there: every node's logs, the workload's files,\n\
         # the invariants and the anonymity verdict.\n\
         # Usage: ./audit.sh [SHADOW_DATA_DIR [veil audit options]]\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         data=${{1:-shadow.data}}\n\
         [ $# -gt 0 ] && shift\n\
         for node in \"$data\"/hosts/*/{NODE_DIR}; do\n\
         \x20 host=$(basename \"$(dirname \"$node\")\")\n\
         \x20 ln -sfn \"../hosts/$host/{NODE_DIR}\" \"$data/audit/$host\"\n\
         done\n\
         exec {} audit \"$data/audit\" \"$@\"\n",
        shell_quoted(&veil.to_string_lossy())
    )
}

/// `s` in single quotes for sh.
fn shell_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
