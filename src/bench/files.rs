//! `veil bench files`: the peak memory and the speed of `veil put` and
//! `veil get` on one file across one link.
//!
//! Two nodes run in this process (real TCP, Noise and redb stores, a store
//! large enough for the file and its check blocks). A file of pseudo-random
//! bytes is written to disk; `veil put` runs as a child process against the
//! first node, then `veil get -o` against the second, so every block crosses
//! the link. Each child's peak RSS is the high-water mark of its own memory
//! (`VmHWM` in `/proc/self/status`), which the child prints as it exits when
//! [`PEAK_RSS_ENV`] is set. (`wait4`'s `ru_maxrss` is not used: Linux carries
//! the parent's resident set at spawn time into it, and the parent here runs
//! two nodes.) The fetched file is compared with the original by SHA-256.
//! Figures are printed, never asserted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::{io_err, BenchError};
use crate::client::Client;
use crate::config::{NodeConfig, PeerConfig, SizeSetting, IDENTITY_FILE};
use crate::identity::Identity;
use crate::node::{NodeSetup, RunningNode};

type Result<T> = std::result::Result<T, BenchError>;

/// What `veil bench files` measures.
#[derive(Clone, Debug)]
pub struct FilesOptions {
    /// The file's size in bytes.
    pub size: u64,
    /// As `veil put --redundancy`.
    pub redundancy: u16,
    /// As `veil put/get --concurrency`.
    pub concurrency: usize,
    /// Where the file and the nodes go (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Leave the directory in place afterwards.
    pub keep: bool,
}

/// What one child process cost.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Measured {
    pub seconds: f64,
    pub mib_per_s: f64,
    pub peak_rss_mib: f64,
}

/// What `veil bench files --json` prints (docs/formats.md).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct FilesReport {
    pub version: crate::formats::Version<1>,
    pub bytes: u64,
    pub redundancy: u16,
    pub concurrency: usize,
    pub put: Measured,
    pub get: Measured,
    /// Put throughput over get throughput, by file bytes (the target: at
    /// least [`PUT_GET_TARGET`]).
    pub put_get_ratio: f64,
}

/// Inserts should run at least this fraction of the speed of gets over the
/// same link.
pub const PUT_GET_TARGET: f64 = 0.5;

impl FilesReport {
    pub fn render_text(&self) -> String {
        let line = |what: &str, m: &Measured| {
            format!(
                "  veil {what}: {:7.1} s  {:7.1} MiB/s  peak RSS {:6.1} MiB\n",
                m.seconds, m.mib_per_s, m.peak_rss_mib
            )
        };
        let verdict = if self.put_get_ratio >= PUT_GET_TARGET {
            "MET"
        } else {
            "MISSED"
        };
        format!(
            "{:.1} MiB file over one link (2 in-process nodes), {}% redundancy, {} blocks in flight\n{}{}\
             \x20 put/get    {:.2} of get's throughput (target >= {PUT_GET_TARGET}): {verdict}\n",
            self.bytes as f64 / (1 << 20) as f64,
            self.redundancy,
            self.concurrency,
            line("put", &self.put),
            line("get", &self.get),
            self.put_get_ratio,
        )
    }
}

pub async fn run(a: &FilesOptions, exe: &Path, step: impl Fn(&str)) -> Result<FilesReport> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("veil-bench-files-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let result = measure(a, exe, &dir, &step).await;
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn measure(
    a: &FilesOptions,
    exe: &Path,
    dir: &Path,
    step: &impl Fn(&str),
) -> Result<FilesReport> {
    let src = dir.join("file.bin");
    step(&format!("writing a {} byte file", a.size));
    let want = write_file(&src, a.size)?;
    // The file, its check blocks, manifests, and room to spare.
    let store = a.size.saturating_mul(2 + u64::from(a.redundancy) / 100) + (256 << 20);
    step("starting two nodes");
    let nodes = start_pair(dir, store).await?;
    let result = async {
        let (put_node, get_node) = (nodes[0].client.to_string(), nodes[1].client.to_string());
        let concurrency = a.concurrency.to_string();
        let redundancy = a.redundancy.to_string();
        step("veil put");
        let src_text = src.to_string_lossy().to_string();
        let (put, uri) = run_measured(
            exe,
            &[
                "put",
                "--node",
                &put_node,
                "--concurrency",
                &concurrency,
                "--redundancy",
                &redundancy,
                &src_text,
            ],
            a.size,
        )
        .await?;
        let out = dir.join("fetched.bin");
        let out_text = out.to_string_lossy().to_string();
        step("veil get");
        let (get, _) = run_measured(
            exe,
            &[
                "get",
                "--node",
                &get_node,
                "--concurrency",
                &concurrency,
                "--max-size",
                "1TiB",
                uri.trim(),
                "-o",
                &out_text,
            ],
            a.size,
        )
        .await?;
        if hash_file(&out)? != want {
            return Err(BenchError::Differs);
        }
        Ok(FilesReport {
            version: Default::default(),
            bytes: a.size,
            redundancy: a.redundancy,
            concurrency: a.concurrency,
            put_get_ratio: put.mib_per_s / get.mib_per_s.max(f64::MIN_POSITIVE),
            put,
            get,
        })
    }
    .await;
    for node in nodes {
        node.shutdown().await;
    }
    result
}

/// Write `size` pseudo-random bytes (incompressible, no repeated blocks);
/// returns their SHA-256.
fn write_file(path: &Path, size: u64) -> Result<[u8; 32]> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_err(path))?);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(size);
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(io_err(path))?;
        left -= n as u64;
    }
    f.flush().map_err(io_err(path))?;
    Ok(hasher.finalize().into())
}

fn hash_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Run `exe args` to completion; its time, throughput over `bytes`, peak
/// RSS, and stdout.
async fn run_measured(exe: &Path, args: &[&str], bytes: u64) -> Result<(Measured, String)> {
    let mut child = Command::new(exe)
        .args(args)
        .env(PEAK_RSS_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(exe))?;
    let started = Instant::now();
    let pipe = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await?
        .map_err(io_err(exe))?;
    let seconds = started.elapsed().as_secs_f64();
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(BenchError::Child {
            what: args[0].to_string(),
            detail: format!("{status}: {}", err.trim()),
        });
    }
    let peak_kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix(PEAK_RSS_LINE))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| BenchError::NoPeakRss(args[0].to_string()))?;
    let mib = bytes as f64 / (1 << 20) as f64;
    Ok((
        Measured {
            seconds,
            mib_per_s: mib / seconds.max(1e-9),
            peak_rss_mib: peak_kib as f64 / 1024.0,
        },
        out,
    ))
}

/// Set in a child's environment: `veil` then prints its own peak RSS on
/// stderr as it exits.
pub const PEAK_RSS_ENV: &str = "VEIL_REPORT_PEAK_RSS";

/// The line the child prints: this prefix, then KiB.
const PEAK_RSS_LINE: &str = "veil: peak RSS KiB ";

/// Print this process's peak resident set (Linux `VmHWM`), if known.
pub fn report_own_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    if let Some(kib) = hwm {
        eprintln!("{PEAK_RSS_LINE}{kib}");
    }
}

/// Two linked in-process nodes with stores of `store` bytes each.
async fn start_pair(dir: &Path, store: u64) -> Result<Vec<RunningNode>> {
    let ports = crate::testnet::free_ports(4).map_err(io_err(dir))?;
    let dirs: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("node{i}"))).collect();
    let mut keys = Vec::new();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        identity.save(d.join(IDENTITY_FILE))?;
        keys.push(identity.public());
    }
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let j = 1 - i;
        let mut config = NodeConfig::new(ports[2 * i], None, Some(0.25 + 0.5 * i as f64));
        config.store_size = SizeSetting::Bytes(store);
        config.cache_size = Some(SizeSetting::Text("64MiB".into()));
        config.peers.push(PeerConfig {
            address: ports[2 * j],
            public_key: keys[j],
            name: Some(format!("node{j}")),
        });
        config.save(d)?;
        nodes.push(crate::node::start(NodeSetup::load(d)?).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut up = 0;
        for n in &nodes {
            if let Ok(mut c) = Client::connect(&n.client, Duration::from_secs(2)).await {
                if let Ok(s) = c.status().await {
                    up += s.peers.iter().filter(|p| p.connected).count();
                }
            }
        }
        if up == 2 {
            return Ok(nodes);
        }
        if Instant::now() > deadline {
            for n in nodes {
                n.shutdown().await;
            }
            return Err(BenchError::PairNotUp);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
