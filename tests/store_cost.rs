//! What caching a relayed block costs (issue 12): the CPU time the caller's
//! thread spends per block in `Datastore::put_cache_batch` (the cache's slot
//! file, `store/cache.rs`) for several batch sizes, on a cache with room and
//! on a full one (every put evicts), and, for comparison, the same blocks
//! written bare into a flat file of fixed 32 KiB slots, with no index or
//! records. (Until 2026-11-30 the cache was a redb table: see
//! docs/performance.md, "A flat slot file for the cache", for its figures.)
//!
//! Every run ends with its writes made durable (`fdatasync`), so that the
//! kernel's write-back counts in every figure alike. A benchmark, not a
//! test: it prints figures and asserts only that the blocks were kept. Run it in release:
//! `cargo test --release --test store_cost -- --ignored --nocapture`.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use veil::keys::{Block, Chk, BLOCK_LEN};
use veil::store::Datastore;

const B: u64 = BLOCK_LEN as u64;
/// Blocks written per run: 64 MiB.
const BLOCKS: u64 = 2048;

/// CPU time (user + system) of the calling thread so far.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; it is zeroed first.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct that lives for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn blocks(tag: &str) -> Vec<Block> {
    (0..BLOCKS)
        .map(|n| {
            Chk::encode(format!("{tag} cost block {n}").as_bytes())
                .unwrap()
                .1
        })
        .collect()
}

fn report(what: &str, cpu: Duration, wall: Duration) {
    let per = cpu.as_secs_f64() * 1e6 / BLOCKS as f64;
    let mib_s = (BLOCKS * B) as f64 / (1 << 20) as f64 / cpu.as_secs_f64();
    println!(
        "{what:<44} {per:7.1} us CPU per block ({mib_s:6.0} MiB/s of CPU), wall {:.3} s",
        wall.as_secs_f64()
    );
}

fn cache_run(blocks: &[Block], batch: usize, cache_blocks: u64) {
    let dir = tempfile::tempdir().unwrap();
    let ds = Datastore::open(&dir.path().join("c.redb"), B, cache_blocks * B).unwrap();
    // A cache that is full from the start, so that every put evicts.
    if cache_blocks < BLOCKS {
        let warm = blocks_tagged("warm", cache_blocks);
        for chunk in warm.chunks(64) {
            ds.put_cache_batch(chunk).unwrap();
        }
    }
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for chunk in blocks.chunks(batch) {
        ds.put_cache_batch(chunk).unwrap();
    }
    // Count writing the pages back too: the cache never syncs, and would
    // leave that work to the kernel's flusher threads, which this thread's
    // CPU time does not see.
    ds.flush().unwrap();
    let slots = dir.path().join("c.slots");
    std::fs::File::open(&slots).unwrap().sync_data().unwrap();
    let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
    assert_eq!(ds.usage().cache_blocks, cache_blocks.min(BLOCKS));
    let last = blocks.last().unwrap().routing_key();
    assert!(ds.holds(&last));
    let room = if cache_blocks < BLOCKS {
        "full cache"
    } else {
        "cache with room"
    };
    report(
        &format!("slot cache, {room}, {batch} blocks a batch"),
        cpu,
        wall,
    );
}

fn blocks_tagged(tag: &str, n: u64) -> Vec<Block> {
    (0..n)
        .map(|i| Chk::encode(format!("{tag} {i}").as_bytes()).unwrap().1)
        .collect()
}

/// The same blocks written at fixed offsets of a flat file, one
/// `fdatasync` per `sync_every` blocks; `fallocate` reserves the file first
/// when asked.
fn flat_run(blocks: &[Block], sync_every: usize, reserve: bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("slots"))
        .unwrap();
    let len = BLOCKS * B;
    if reserve {
        // SAFETY: fallocate on an open descriptor owned by `file`.
        let rc = unsafe {
            libc::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                len as libc::off_t,
            )
        };
        assert_eq!(rc, 0, "fallocate failed");
    } else {
        file.set_len(len).unwrap();
    }
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for (slot, block) in blocks.iter().enumerate() {
        file.write_all_at(block.as_bytes(), slot as u64 * B)
            .unwrap();
        if (slot + 1) % sync_every == 0 {
            file.sync_data().unwrap();
        }
    }
    file.sync_data().unwrap();
    let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
    let mut back = vec![0u8; BLOCK_LEN];
    file.read_exact_at(&mut back, (BLOCKS - 1) * B).unwrap();
    assert_eq!(&back[..], blocks.last().unwrap().as_bytes());
    let how = if reserve { "fallocated" } else { "sparse" };
    report(
        &format!("flat slot file ({how}), fdatasync / {sync_every}"),
        cpu,
        wall,
    );
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn cost_of_caching_a_block() {
    let blocks = blocks("relayed");
    println!("{BLOCKS} blocks of {BLOCK_LEN} bytes (64 MiB) per run");
    for batch in [1, 2, 8, 32, 128] {
        cache_run(&blocks, batch, 2 * BLOCKS);
    }
    for batch in [2, 32] {
        cache_run(&blocks, batch, BLOCKS / 4);
    }
    flat_run(&blocks, 256, false);
    flat_run(&blocks, 256, true);
}
