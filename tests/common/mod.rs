//! Shared helpers for tests that run real `veil` node processes on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// `n` distinct free loopback addresses (outside the ephemeral port range,
/// as the testnet picks them).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    veil::testnet::free_ports(n).unwrap()
}

/// Run `veil ARGS` to completion.
pub fn veil(args: &[&str]) -> Output {
    Command::new(VEIL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run veil")
}

/// Run `veil ARGS`, insisting on success; returns stdout.
pub fn veil_ok(args: &[&str]) -> String {
    let out = veil(args);
    assert!(
        out.status.success(),
        "veil {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A node directory and, while running, its process.
pub struct TestNode {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub client: SocketAddr,
    pub key: String,
    pub child: Option<Child>,
}

impl TestNode {
    /// `veil init` a node under `root/name`.
    pub fn init(root: &Path, name: &str, location: f64) -> TestNode {
        let addrs = free_addrs(2);
        let dir = root.join(name);
        let key = veil_ok(&[
            "init",
            dir.to_str().unwrap(),
            "--listen",
            &addrs[0].to_string(),
            "--client",
            &addrs[1].to_string(),
            "--location",
            &location.to_string(),
        ])
        .trim()
        .to_string();
        TestNode {
            dir,
            listen: addrs[0],
            client: addrs[1],
            key,
            child: None,
        }
    }

    /// Make `self` and `other` friends (both configs).
    pub fn befriend(&self, other: &TestNode) {
        veil_ok(&[
            "add-peer",
            self.dir.to_str().unwrap(),
            &other.listen.to_string(),
            &other.key,
        ]);
        veil_ok(&[
            "add-peer",
            other.dir.to_str().unwrap(),
            &self.listen.to_string(),
            &self.key,
        ]);
    }

    /// Set a top-level key of node.toml (`line` is `key = value`).
    pub fn set(&self, line: &str) {
        let path = self.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let key = line.split('=').next().unwrap().trim();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .collect();
        std::fs::write(&path, format!("{line}\n{}\n", kept.join("\n"))).unwrap();
    }

    pub fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(VEIL)
            .arg("node")
            .arg(&self.dir)
            .args(extra)
            .env("RUST_LOG", "veil=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, no warning.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Number of connected peers according to the node's status.
    pub fn peers_up(&self, rt: &tokio::runtime::Runtime) -> Option<usize> {
        rt.block_on(async {
            let mut c = veil::client::Client::connect(self.client, Duration::from_secs(2))
                .await
                .ok()?;
            let s = c.status().await.ok()?;
            Some(s.peers.iter().filter(|p| p.connected).count())
        })
    }

    /// Wait until the node reports `n` connected peers.
    pub fn wait_peers(&self, rt: &tokio::runtime::Runtime, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.peers_up(rt) == Some(n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} did not reach {n} peers; log:\n{}",
            self.dir.display(),
            self.log()
        );
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}
