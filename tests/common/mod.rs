//! Shared helpers for tests that run real `veil` node processes on loopback.
//!
//! Every process a test starts is killed if the test fails: `veil()` runs
//! its command under a [`KillOnDrop`] guard and a deadline, and a
//! [`TestNode`] kills its node when dropped.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// How long one `veil` command may run before the test kills it and fails.
pub const VEIL_DEADLINE: Duration = Duration::from_secs(120);

/// How long a node may take to start answering its client API.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How many times a node that could not bind its ports is moved to fresh
/// ones before the test gives up.
const START_ATTEMPTS: usize = 3;

/// `n` distinct free loopback addresses (outside the ephemeral port range,
/// as the testnet picks them).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    veil::testnet::free_ports(n).unwrap()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a
/// test that fails or panics leaves nothing running.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The child, while it has not been killed or waited for.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// The child's exit status if it has exited; `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL the child (if it still runs) and reap it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.0.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Hand the child back without killing it.
    pub fn release(mut self) -> Option<Child> {
        self.0.take()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read a pipe to its end on a thread; the bytes arrive on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Run `cmd` to completion within `deadline`. Past it, the process is
/// killed and the test panics, naming the command.
pub fn run_within(cmd: &mut Command, deadline: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut guard = KillOnDrop::new(child);
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = guard.try_wait() {
            break status;
        }
        if Instant::now() >= end {
            guard.kill();
            panic!("{shown} did not finish within {deadline:?}; killed");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // The output pipes close when the process exits (unless it handed them
    // to a process of its own): wait for them within the same deadline.
    let left = || end.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let read = |rx: mpsc::Receiver<Vec<u8>>, what: &str| {
        rx.recv_timeout(left())
            .unwrap_or_else(|_| panic!("{shown}: its {what} stayed open after it exited"))
    };
    Output {
        status,
        stdout: read(stdout, "stdout"),
        stderr: read(stderr, "stderr"),
    }
}

/// Run `veil ARGS` to completion (at most [`VEIL_DEADLINE`]).
pub fn veil(args: &[&str]) -> Output {
    run_within(Command::new(VEIL).args(args), VEIL_DEADLINE)
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

/// The key of a `key = value` line of TOML, if it is one.
fn toml_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then_some(key)
}

/// The table a `[table]` header line opens (`[[array]]` headers too, in
/// their brackets).
fn toml_header(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.starts_with("[[") {
        return Some(line);
    }
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// `text` with the setting `key = value` in place of any earlier value.
/// A dotted key (`router.max_htl`) goes into its `[router]` table when the
/// file has one; otherwise it is written at top level in dotted form.
pub fn toml_set(text: &str, key: &str, value: &str) -> String {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((t, l)) => (Some(t), l),
        None => (None, key),
    };
    let has_table = table.is_some_and(|t| text.lines().any(|l| toml_header(l) == Some(t)));
    // Where the setting goes: its section (None = top level) and key.
    let (section, written) = match table {
        Some(t) if has_table => (Some(t), leaf),
        _ => (None, key),
    };
    let setting = format!("{written} = {value}");
    let mut top = Vec::new();
    let mut rest = Vec::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if let Some(h) = toml_header(line) {
            current = Some(h);
            rest.push(line.to_string());
            if section.is_some() && current == section {
                rest.push(setting.clone());
            }
            continue;
        }
        if current == section && toml_key(line) == Some(written) {
            continue;
        }
        match current {
            None => top.push(line.to_string()),
            Some(_) => rest.push(line.to_string()),
        }
    }
    let mut out = Vec::with_capacity(top.len() + rest.len() + 1);
    if section.is_none() {
        out.push(setting);
    }
    out.extend(top);
    out.extend(rest);
    format!("{}\n", out.join("\n"))
}

/// A blocking stream to a node's client API.
pub trait BlockingConn: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> BlockingConn for T {}

/// Connect to `endpoint` with plain blocking I/O (over TCP, sending the
/// cookie first); reads time out after `wait`. `None` if it cannot.
pub fn connect_blocking(
    endpoint: &veil::client::Endpoint,
    wait: Duration,
) -> Option<Box<dyn BlockingConn>> {
    use std::io::Write;
    match endpoint {
        veil::client::Endpoint::Unix { path } => {
            let s = std::os::unix::net::UnixStream::connect(path).ok()?;
            s.set_read_timeout(Some(wait)).ok()?;
            Some(Box::new(s))
        }
        veil::client::Endpoint::Tcp { addr, cookie } => {
            let bytes = veil::client::endpoint::read_cookie(cookie).ok()?;
            let mut s = std::net::TcpStream::connect_timeout(addr, wait).ok()?;
            s.set_read_timeout(Some(wait)).ok()?;
            s.write_all(&bytes).ok()?;
            Some(Box::new(s))
        }
    }
}

/// A node directory and, while running, its process.
pub struct TestNode {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// The node's client socket (`DIR/client.sock`).
    pub client: veil::client::Endpoint,
    pub key: String,
    pub child: Option<Child>,
}

impl TestNode {
    /// Two started nodes, `a` at 0.25 and `b` at 0.75, linked to each other.
    pub fn linked_pair(dir: &Path, rt: &tokio::runtime::Runtime) -> (TestNode, TestNode) {
        let mut a = TestNode::init(dir, "a", 0.25);
        let mut b = TestNode::init(dir, "b", 0.75);
        a.befriend(&b);
        a.start(&[]);
        b.start(&[]);
        a.wait_peers(rt, 1);
        b.wait_peers(rt, 1);
        (a, b)
    }

    /// `veil init` a node under `root/name`.
    pub fn init(root: &Path, name: &str, location: f64) -> TestNode {
        let addrs = free_addrs(1);
        let dir = root.join(name);
        let key = veil_ok(&[
            "init",
            dir.to_str().unwrap(),
            "--listen",
            &addrs[0].to_string(),
            "--location",
            &location.to_string(),
        ])
        .trim()
        .to_string();
        TestNode {
            client: veil::client::Endpoint::Unix {
                path: dir.join(veil::client::endpoint::CLIENT_SOCKET),
            },
            dir,
            listen: addrs[0],
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

    /// Set a key of node.toml (`line` is `key = value`; see [`toml_set`]
    /// for dotted keys).
    pub fn set(&self, line: &str) {
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{line:?} is not `key = value`"));
        let path = self.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, toml_set(&text, key.trim(), value.trim())).unwrap();
    }

    fn spawn(&self, extra: &[&str]) -> KillOnDrop {
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
        KillOnDrop::new(child)
    }

    /// Whether this node (its key, so not some other process on the port)
    /// answers a status request on its client address. Plain blocking I/O,
    /// so it also works from inside a test's async runtime.
    fn answers(&self) -> bool {
        use std::io::Write;
        use veil::client::{ClientRequest, ClientResponse, MAX_CLIENT_FRAME};
        let wait = Duration::from_secs(2);
        let Some(mut stream) = connect_blocking(&self.client, wait) else {
            return false;
        };
        let mut frame = Vec::new();
        ciborium::ser::into_writer(&ClientRequest::Status, &mut frame).unwrap();
        let mut len = [0u8; 4];
        let sent = stream
            .write_all(&(frame.len() as u32).to_be_bytes())
            .is_ok()
            && stream.write_all(&frame).is_ok()
            && stream.read_exact(&mut len).is_ok();
        let len = u32::from_be_bytes(len) as usize;
        if !sent || len > MAX_CLIENT_FRAME {
            return false;
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return false;
        }
        matches!(
            ciborium::de::from_reader(body.as_slice()),
            Ok(ClientResponse::Status(s)) if s.public_key == self.key
        )
    }

    /// Whether another process holds this node's port.
    fn ports_taken(&self) -> bool {
        matches!(TcpListener::bind(self.listen), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
    }

    /// Draw fresh ports for this node, and rewrite its own config and every
    /// sibling config under the same root that names its listen address.
    fn move_to_fresh_ports(&mut self) {
        let addrs = free_addrs(1);
        let (old, new) = (format!("\"{}\"", self.listen), format!("\"{}\"", addrs[0]));
        let root = self.dir.parent().unwrap();
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            let path = entry.path().join("node.toml");
            if let Ok(text) = std::fs::read_to_string(&path) {
                std::fs::write(&path, text.replace(&old, &new)).unwrap();
            }
        }
        self.listen = addrs[0];
    }

    /// Start the node and wait until it answers on its client API. A node
    /// that could not bind because another process took one of its ports
    /// is moved to fresh ports and started again.
    pub fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        for attempt in 1..=START_ATTEMPTS {
            let mut child = self.spawn(extra);
            let end = Instant::now() + START_DEADLINE;
            let exited = loop {
                if let Some(status) = child.try_wait() {
                    break status;
                }
                if self.answers() {
                    self.child = child.release();
                    return;
                }
                if Instant::now() >= end {
                    child.kill();
                    panic!(
                        "{} did not answer within {START_DEADLINE:?}; log:\n{}",
                        self.dir.display(),
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if attempt < START_ATTEMPTS && self.ports_taken() {
                self.move_to_fresh_ports();
                continue;
            }
            panic!(
                "{} exited at start-up ({exited}); log:\n{}",
                self.dir.display(),
                self.log()
            );
        }
    }

    /// Stop and start again, then wait until the fresh process has `peers`
    /// links. A new process knows no link from before the restart, so this
    /// waits for new links, never stale ones.
    pub fn restart(&mut self, rt: &tokio::runtime::Runtime, peers: usize) {
        self.stop();
        self.start(&[]);
        self.wait_peers(rt, peers);
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
        if let Some(child) = self.child.take() {
            KillOnDrop::new(child).kill();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The node's `veil status`.
    pub fn status(&self, rt: &tokio::runtime::Runtime) -> veil::client::NodeStatus {
        rt.block_on(async {
            let mut c = veil::client::Client::connect(&self.client, Duration::from_secs(10))
                .await
                .unwrap();
            c.status().await.unwrap()
        })
    }

    /// Nodes `n0`, `n1`, ... under `root` at `locations`, not yet friends.
    pub fn at(root: &Path, locations: &[f64]) -> Vec<TestNode> {
        locations
            .iter()
            .enumerate()
            .map(|(i, loc)| TestNode::init(root, &format!("n{i}"), *loc))
            .collect()
    }

    /// Number of connected peers according to the node's status.
    pub fn peers_up(&self, rt: &tokio::runtime::Runtime) -> Option<usize> {
        rt.block_on(async {
            let mut c = veil::client::Client::connect(&self.client, Duration::from_secs(2))
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

/// Stops whatever testnet is left in the directory, on drop.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if self.0.join("testnet.json").exists() {
            let _ = run_within(
                std::process::Command::new(VEIL)
                    .args(["testnet", "down", "--dir"])
                    .arg(&self.0),
                Duration::from_secs(60),
            );
        }
    }
}

/// Whether `python3` with the PyPI package `jsonschema` is here. Under
/// `CI=true` its absence fails the test (`.ci/run` installs it); elsewhere
/// the caller skips its Python checks, saying so.
pub fn python_jsonschema() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with jsonschema missing under CI: .ci/run must install it"
        );
        eprintln!("skipping the Python schema checks: no python3 with jsonschema (pip install jsonschema)");
    }
    found
}

/// Read `files` with `tests/formats/check.py`, a small Python program, as
/// another program would, and check them against the published schema
/// `docs/schemas/NAME.schema.json`; the script's output, or a panic naming
/// what did not match.
pub fn python_reads(name: &str, files: &[&Path]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("tests/formats/check.py"))
        .arg(root.join("docs/schemas"))
        .arg(name)
        .args(files);
    let out = run_within(&mut cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: the Python reader refused it:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
