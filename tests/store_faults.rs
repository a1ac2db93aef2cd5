//! The store under faults: power loss at seeded crash points, I/O errors
//! (reopen or read-only), a full disk, and group commit. The fault layers
//! implement `redb::StorageBackend` over memory; the last tests run real
//! node processes on a simulated small disk (`store_disk_limit`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redb::StorageBackend;
use veil::keys::{Block, Chk, BLOCK_LEN};
use veil::store::{Datastore, GroupWriter, StoreError, StoreSource, StoreState};

const B: u64 = BLOCK_LEN as u64;

fn block(tag: &str, n: u64) -> Block {
    Chk::encode(format!("{tag} {n}").as_bytes()).unwrap().1
}

/// One write not yet made durable by `sync_data`.
#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// A disk in memory. What `sync_data` covered is `durable`; later writes
/// sit in `pending` until the next sync. After the crash point every call
/// fails, as if the machine had lost power.
#[derive(Debug, Default)]
struct Disk {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Op>,
    /// Write, set_len and sync calls so far.
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    /// Fail this many write calls (then work again).
    fail_writes: u64,
    /// Fail every write call.
    fail_all_writes: bool,
    syncs: u64,
}

impl Disk {
    fn tick(&mut self) -> std::io::Result<()> {
        if self.crashed {
            return Err(std::io::Error::other("power lost"));
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.crashed = true;
            return Err(std::io::Error::other("power lost"));
        }
        Ok(())
    }

    fn apply(image: &mut Vec<u8>, op: &Op) {
        match op {
            Op::SetLen(len) => image.resize(*len as usize, 0),
            Op::Write(offset, data) => {
                let end = *offset as usize + data.len();
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[*offset as usize..end].copy_from_slice(data);
            }
        }
    }

    /// What the disk holds after the power comes back: everything synced,
    /// plus any subset of the later writes, each whole, torn (a prefix of
    /// 512-byte sectors) or lost.
    fn after_power_loss(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let mut image = self.durable.clone();
        for op in &self.pending {
            match (rng.gen_range(0..3), op) {
                (0, _) => {}
                (1, op) => Disk::apply(&mut image, op),
                (_, Op::Write(offset, data)) => {
                    let sectors = data.len().div_ceil(512);
                    let keep = (rng.gen_range(0..=sectors) * 512).min(data.len());
                    Disk::apply(&mut image, &Op::Write(*offset, data[..keep].to_vec()));
                }
                (_, op) => Disk::apply(&mut image, op),
            }
        }
        image
    }
}

#[derive(Debug, Clone, Default)]
struct MemBackend {
    disk: Arc<Mutex<Disk>>,
    /// While set, `sync_data` waits (group commit test).
    gate: Arc<AtomicBool>,
}

impl MemBackend {
    fn with_image(image: Vec<u8>) -> MemBackend {
        let disk = Disk {
            durable: image.clone(),
            current: image,
            ..Disk::default()
        };
        MemBackend {
            disk: Arc::new(Mutex::new(disk)),
            gate: Arc::default(),
        }
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap()
    }

    /// A datastore source that opens this same disk each time.
    fn source(&self) -> StoreSource {
        let me = self.clone();
        StoreSource::Backend {
            name: "memory".into(),
            open: Arc::new(move || Ok(Box::new(me.clone()) as Box<dyn StorageBackend>)),
        }
    }
}

impl StorageBackend for MemBackend {
    fn len(&self) -> std::io::Result<u64> {
        let d = self.disk();
        match d.crashed {
            true => Err(std::io::Error::other("power lost")),
            false => Ok(d.current.len() as u64),
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let d = self.disk();
        let end = offset as usize + out.len();
        if d.crashed || end > d.current.len() {
            return Err(std::io::Error::other("read past the end, or power lost"));
        }
        out.copy_from_slice(&d.current[offset as usize..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut d = self.disk();
        d.tick()?;
        d.current.resize(len as usize, 0);
        d.pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.gate.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut d = self.disk();
        d.tick()?;
        d.durable = d.current.clone();
        d.pending.clear();
        d.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut d = self.disk();
        d.tick()?;
        if d.fail_all_writes || d.fail_writes > 0 {
            d.fail_writes = d.fail_writes.saturating_sub(1);
            return Err(std::io::Error::other("injected write error"));
        }
        let op = Op::Write(offset, data.to_vec());
        Disk::apply(&mut d.current, &op);
        d.pending.push(op);
        Ok(())
    }
}

/// One seeded run: open, then store batches of blocks (with cache puts in
/// between) until the crash point; returns the blocks acknowledged.
fn run_until_crash(disk: &MemBackend, seed: u64, crash_after: Option<u64>) -> Vec<Block> {
    let mut acked = Vec::new();
    let Ok(store) = Datastore::open_source(disk.source(), 1 << 30, 64 * B) else {
        return acked;
    };
    {
        let mut d = disk.disk();
        d.crash_at = crash_after.map(|n| d.ops + n);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for round in 0..8u64 {
        let n = rng.gen_range(1..=4);
        let blocks: Vec<Block> = (0..n).map(|i| block("store", round * 10 + i)).collect();
        match store.put_store_batch(&blocks) {
            Ok(stored) => {
                assert!(stored.iter().all(|s| *s));
                acked.extend(blocks);
            }
            Err(_) => break,
        }
        let _ = store.put_cache(&block("cache", round));
        let _ = store.get(&block("store", round * 10).routing_key());
    }
    acked
}

#[test]
fn every_acknowledged_block_survives_power_loss_at_seeded_crash_points() {
    // How many disk operations a whole run takes, to spread crash points
    // over all of it.
    let clean = MemBackend::default();
    let all = run_until_crash(&clean, 0, None);
    assert!(all.len() > 8);
    let total_ops = {
        let d = clean.disk();
        d.ops
    };
    let mut crashed_runs = 0;
    let mut acked_total = 0;
    for seed in 0..120u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let crash_after = rng.gen_range(1..=total_ops);
        let disk = MemBackend::default();
        let acked = run_until_crash(&disk, seed, Some(crash_after));
        let image = {
            let d = disk.disk();
            crashed_runs += usize::from(d.crashed);
            d.after_power_loss(&mut rng)
        };
        let after = MemBackend::with_image(image);
        let store = Datastore::open_source(after.source(), 1 << 30, 64 * B)
            .unwrap_or_else(|e| panic!("seed {seed}, crash after {crash_after} ops: {e}"));
        for b in &acked {
            let got = store.get(&b.routing_key()).unwrap();
            assert!(
                got.as_ref() == Some(b),
                "seed {seed}, crash after {crash_after} ops: acknowledged block lost"
            );
        }
        assert_eq!(store.health().state, StoreState::Ok);
        acked_total += acked.len();
    }
    assert!(crashed_runs > 100, "only {crashed_runs} runs crashed");
    assert!(acked_total > 0);
    eprintln!("120 crash points over {total_ops} disk operations: {acked_total} acknowledged blocks all read back");
}

#[test]
fn an_io_error_reopens_the_store_which_keeps_serving_and_writing() {
    let disk = MemBackend::default();
    let store = Datastore::open_source(disk.source(), 1 << 30, 16 * B).unwrap();
    let before = block("before", 0);
    store.put_store(&before).unwrap();
    disk.disk().fail_writes = 1;
    let err = store.put_store(&block("during", 0)).unwrap_err();
    assert!(err.is_io(), "{err}");
    let health = store.health();
    assert_eq!(health.state, StoreState::Ok);
    assert_eq!(health.reopens, 1);
    assert!(health.last_error.as_deref().unwrap().contains("injected"));
    assert_eq!(store.get(&before.routing_key()).unwrap(), Some(before));
    // redb would refuse every write until reopened; this one works.
    let after = block("after", 0);
    store.put_store(&after).unwrap();
    assert_eq!(store.get(&after.routing_key()).unwrap(), Some(after));
    assert!(store.health().render().contains("reopened 1 time"));
}

#[test]
fn a_store_that_cannot_reopen_for_writing_goes_read_only_and_keeps_serving() {
    let disk = MemBackend::default();
    let store = Datastore::open_source(disk.source(), 1 << 30, 16 * B).unwrap();
    let kept: Vec<Block> = (0..5).map(|i| block("kept", i)).collect();
    store.put_store_batch(&kept).unwrap();
    disk.disk().fail_all_writes = true;
    assert!(store.put_store(&block("lost", 0)).is_err());
    let health = store.health();
    // Opening for writing writes to the file, so only read-only opens.
    assert_eq!(health.state, StoreState::ReadOnly, "{health:?}");
    for b in &kept {
        assert_eq!(store.get(&b.routing_key()).unwrap().as_ref(), Some(b));
    }
    assert!(matches!(
        store.put_store(&block("lost", 1)),
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(store.usage().store_blocks, 5);
    assert!(store.health().render().starts_with("read-only"));
}

#[test]
fn a_full_disk_fails_the_writes_that_do_not_fit_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("blocks.redb");
    let source = StoreSource::File {
        path: path.clone(),
        disk_limit: Some(2 << 20),
    };
    let store = Datastore::open_source(source, 1 << 30, 16 * B).unwrap();
    let mut acked = Vec::new();
    let mut failed = 0;
    for i in 0..200 {
        let b = block("full", i);
        match store.put_store(&b) {
            Ok(()) => acked.push(b),
            Err(e) => {
                assert!(e.is_io(), "{e}");
                assert!(e.to_string().contains("No space left"), "{e}");
                failed += 1;
            }
        }
    }
    assert!(
        acked.len() > 10 && failed > 10,
        "{} stored, {failed} failed",
        acked.len()
    );
    assert!(store.health().reopens >= 1);
    for b in &acked {
        assert_eq!(store.get(&b.routing_key()).unwrap().as_ref(), Some(b));
    }
    drop(store);
    // On a bigger disk everything acknowledged is still there.
    let store = Datastore::open(&path, 1 << 30, 16 * B).unwrap();
    assert_eq!(store.health().state, StoreState::Ok);
    for b in &acked {
        assert_eq!(store.get(&b.routing_key()).unwrap().as_ref(), Some(b));
    }
    store.put_store(&block("room again", 0)).unwrap();
}

#[test]
fn group_commit_covers_every_waiting_block_with_one_fsync() {
    let disk = MemBackend::default();
    let store = Arc::new(Datastore::open_source(disk.source(), 1 << 30, 16 * B).unwrap());
    // What one durable commit of one block costs in fsyncs (quick-repair
    // commits are two-phase).
    let before = disk.disk().syncs;
    store.put_store(&block("one", 0)).unwrap();
    let per_commit = disk.disk().syncs - before;
    assert!(per_commit >= 1);
    let syncs_before = disk.disk().syncs;
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = GroupWriter::spawn(store.clone(), 512, 256, move |batch| {
        let _ = tx.send(batch);
    })
    .unwrap();
    // Hold the disk while 200 blocks queue up behind the first commit.
    disk.gate.store(true, Ordering::Release);
    let blocks: Vec<Block> = (0..200).map(|i| block("group", i)).collect();
    for (i, b) in blocks.iter().enumerate() {
        assert!(writer.try_write(b.clone(), i).is_ok());
    }
    disk.gate.store(false, Ordering::Release);
    let mut done = vec![false; blocks.len()];
    let mut batches = 0;
    while done.iter().any(|d| !d) {
        let batch = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        batches += 1;
        for w in batch {
            assert!(w.stored);
            assert_eq!(w.key, blocks[w.tag].routing_key());
            done[w.tag] = true;
        }
    }
    // The first commit took what was there when it started; the second
    // took everything that had queued meanwhile.
    assert!(batches <= 2, "{batches} commits for 200 blocks");
    let syncs = disk.disk().syncs - syncs_before;
    // Growing the file for 200 blocks costs a few more syncs than a
    // one-block commit; one commit per block would cost 200 * per_commit.
    assert!(
        syncs <= 4 * per_commit,
        "{syncs} fsyncs for 200 blocks ({per_commit} per one-block commit)"
    );
    for b in &blocks {
        assert!(store.contains_store(&b.routing_key()).unwrap());
    }
}

#[test]
fn a_full_writer_queue_hands_the_block_back() {
    let disk = MemBackend::default();
    let store = Arc::new(Datastore::open_source(disk.source(), 1 << 30, 16 * B).unwrap());
    let stored = Arc::new(AtomicU64::new(0));
    let counted = stored.clone();
    disk.gate.store(true, Ordering::Release);
    let writer = GroupWriter::spawn(store, 4, 2, move |batch: Vec<_>| {
        counted.fetch_add(batch.len() as u64, Ordering::Relaxed);
    })
    .unwrap();
    let mut refused = 0;
    for i in 0..20u64 {
        if writer.try_write(block("q", i), i).is_err() {
            refused += 1;
        }
    }
    disk.gate.store(false, Ordering::Release);
    // At most the queue (4) plus one batch in progress (2) were taken.
    assert!(refused >= 14, "{refused} refused");
    // The accepted ones are all stored once the disk moves again.
    drop(writer);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stored.load(Ordering::Relaxed) < 20 - refused && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stored.load(Ordering::Relaxed), 20 - refused);
}

/// Whether `node` answers `block` itself (from its own store).
fn holds(rt: &tokio::runtime::Runtime, node: &common::TestNode, block: &Block) -> bool {
    rt.block_on(async {
        let mut c = veil::client::Client::connect(&node.client, Duration::from_secs(10))
            .await
            .unwrap();
        c.get(block.routing_key()).await.ok().as_ref() == Some(block)
    })
}

/// Two started nodes in `none` mode, linked; `n1_settings` go into the
/// second one's `node.toml` (it is the sink of the first one's inserts).
fn linked_pair(
    root: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    n1_settings: &[&str],
) -> (common::TestNode, common::TestNode) {
    let mut n0 = common::TestNode::init(root, "n0", 0.25);
    let mut n1 = common::TestNode::init(root, "n1", 0.75);
    n0.befriend(&n1);
    for n in [&n0, &n1] {
        n.set("anonymity = \"none\"");
    }
    for line in n1_settings {
        n1.set(line);
    }
    n0.start(&[]);
    n1.start(&[]);
    n0.wait_peers(rt, 1);
    n1.wait_peers(rt, 1);
    (n0, n1)
}

#[test]
fn a_node_on_a_full_disk_fails_inserts_honestly_and_restarts_healthy() {
    use common::*;
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    // n1 is every insert's sink; its store may hold 64 MiB but its disk
    // has 2 MiB.
    let (n0, mut n1) = linked_pair(
        tmp.path(),
        &rt,
        &["store_size = \"64MiB\"", "store_disk_limit = \"2MiB\""],
    );

    // A 4 MB file does not fit: `veil put` fails, saying so.
    let input = tmp.path().join("big.bin");
    std::fs::write(&input, bytes(4_000_000, 5)).unwrap();
    let node0 = n0.client.to_string();
    let out = veil(&["put", "--node", &node0, input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "put of a file that does not fit succeeded: {stderr}"
    );
    assert!(stderr.contains("inserting"), "{stderr}");
    assert!(stderr.contains("could not store"), "{stderr}");
    eprintln!("veil put on a full disk: {}", stderr.trim());

    // Block by block: some are acknowledged, the rest fail; every
    // acknowledged one is held by the sink.
    let blocks: Vec<Block> = (0..80).map(|i| block("disk full", i)).collect();
    let mut acked = Vec::new();
    let mut failed = 0;
    rt.block_on(async {
        for b in &blocks {
            let mut c = veil::client::Client::connect(&n0.client, Duration::from_secs(10))
                .await
                .unwrap();
            match c.insert(b.clone()).await {
                Ok(()) => acked.push(b.clone()),
                Err(_) => failed += 1,
            }
        }
    });
    let s = n1.status(&rt);
    assert!(s.store_health.reopens >= 1, "{:?}", s.store_health);
    let last = s.store_health.last_error.clone().unwrap_or_default();
    assert!(last.contains("No space left"), "{last}");
    assert!(failed > 0, "every insert was acknowledged on a full disk");
    for b in &acked {
        assert!(holds(&rt, &n1, b), "an acknowledged block is missing");
    }
    eprintln!(
        "{} blocks acknowledged, {failed} refused; n1: {}",
        acked.len(),
        s.store_health.render()
    );

    // Restarted, the node is healthy and still holds what it acknowledged.
    n1.restart(&rt, 1);
    let s = n1.status(&rt);
    assert_eq!(s.store_health.state, StoreState::Ok);
    assert_eq!(s.store_health.reopens, 0);
    for b in &acked {
        assert!(
            holds(&rt, &n1, b),
            "an acknowledged block is gone after restart"
        );
    }
    drop(n0);
}

#[test]
fn a_store_size_below_one_block_is_refused_when_the_config_is_read() {
    use common::*;
    let tmp = tempfile::tempdir().unwrap();
    let n = TestNode::init(tmp.path(), "tiny", 0.5);
    n.set("store_size = \"1KiB\"");
    let out = veil(&["node", n.dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("store_size is 1024 bytes, smaller than one block"),
        "{stderr}"
    );
}

/// Run with `cargo test --release --test store_faults -- --ignored
/// --nocapture put_and_get_throughput` (`VEIL_BENCH_MIB` sets the size).
#[test]
#[ignore = "benchmark: prints put and get throughput over one link"]
fn put_and_get_throughput_over_one_link() {
    use common::*;
    let mib: usize = std::env::var("VEIL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (n0, n1) = linked_pair(tmp.path(), &rt, &["store_size = \"4GiB\""]);
    let node0 = n0.client.to_string();
    for (seed, redundancy) in [(11u64, "0"), (12, "100")] {
        let input = tmp.path().join(format!("in-{seed}.bin"));
        std::fs::write(&input, bytes(mib << 20, seed)).unwrap();
        let started = std::time::Instant::now();
        let uri = veil_ok(&[
            "put",
            "--node",
            &node0,
            "--redundancy",
            redundancy,
            input.to_str().unwrap(),
        ]);
        let put = started.elapsed().as_secs_f64();
        let output = tmp.path().join(format!("out-{seed}.bin"));
        let started = std::time::Instant::now();
        veil_ok(&[
            "get",
            "--node",
            &node0,
            uri.trim(),
            "-o",
            output.to_str().unwrap(),
        ]);
        let get = started.elapsed().as_secs_f64();
        assert!(std::fs::read(&output).unwrap() == std::fs::read(&input).unwrap());
        println!(
            "{mib} MiB over one link, {redundancy}% redundancy: put {put:.2} s ({:.1} MiB/s), \
             get {get:.2} s ({:.1} MiB/s); the put took {:.0}% of the get's rate",
            mib as f64 / put,
            mib as f64 / get,
            100.0 * get / put
        );
    }
    let health = n1.status(&rt).store_health;
    assert_eq!(health.failed_writes, 0);
}

/// A relay caches what it passes on, in its slot file. Damage to that file
/// (a failing disk) is found when a block is read, counted in `veil
/// status`, and the block is fetched again from the node that holds it.
#[test]
fn a_damaged_cache_slot_is_counted_in_status_and_fetched_again() {
    use common::*;
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    // n0 - n1 - n2: n2 holds the blocks, n1 relays n0's gets and caches.
    let mut nodes = TestNode::at(tmp.path(), &[0.1, 0.5, 0.9]);
    nodes[0].befriend(&nodes[1]);
    nodes[1].befriend(&nodes[2]);
    for n in &nodes {
        n.set("anonymity = \"none\"");
        n.set("testnet = true");
    }
    for n in nodes.iter_mut() {
        n.start(&[]);
    }
    for (n, peers) in nodes.iter().zip([1, 2, 1]) {
        n.wait_peers(&rt, peers);
    }
    let blocks: Vec<Block> = (0..4).map(|i| block("cache damage", i)).collect();
    let get = |node: &TestNode, b: &Block| {
        rt.block_on(async {
            let mut c = veil::client::Client::connect(&node.client, Duration::from_secs(10))
                .await
                .unwrap();
            c.get(b.routing_key()).await
        })
    };
    rt.block_on(async {
        let mut c = veil::client::Client::connect(&nodes[2].client, Duration::from_secs(10))
            .await
            .unwrap();
        for b in &blocks {
            c.place(b.clone()).await.unwrap();
        }
    });
    for b in &blocks {
        assert_eq!(get(&nodes[0], b).unwrap(), *b);
    }
    // The cache writer runs behind the router: wait until all four are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nodes[1].status(&rt).usage.cache_blocks < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = nodes[1].status(&rt);
    assert_eq!(s.usage.cache_blocks, 4);
    assert_eq!(s.cache_health.damaged, 0);

    // Flip a byte in every slot of the stopped relay's slot file.
    nodes[1].stop();
    let slots = nodes[1].dir.join("store/blocks.slots");
    let mut bytes = std::fs::read(&slots).unwrap();
    assert!(bytes.len() >= 4 * 32 * 1024, "{}", bytes.len());
    for slot in bytes.chunks_mut(32 * 1024) {
        slot[100] ^= 0x55;
    }
    std::fs::write(&slots, bytes).unwrap();
    nodes[1].start(&[]);
    nodes[1].wait_peers(&rt, 2);

    // n1's own client asks: every cached copy is damage, counted and
    // dropped; each block still comes, from n2.
    for b in &blocks {
        assert_eq!(get(&nodes[1], b).unwrap(), *b);
    }
    let s = nodes[1].status(&rt);
    assert_eq!(s.cache_health.damaged, 4, "{:?}", s.cache_health);
    let text = s.render_text();
    assert!(text.contains("0 write errors, 4 damaged"), "{text}");
}
