//! The cache part of the datastore in its slot file: eviction order,
//! reopening, budget changes, torn writes after a crash and write failures.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use veil::keys::{Block, Chk, SskPrivate, BLOCK_LEN};
use veil::store::{Datastore, StoreError, StoreState, Torn};

const B: u64 = BLOCK_LEN as u64;

fn block(tag: &str, n: u64) -> Block {
    Chk::encode(format!("{tag} cached block {n}").as_bytes())
        .unwrap()
        .1
}

fn open(path: &Path, cache_blocks: u64) -> Datastore {
    Datastore::open(path, 4 * B, cache_blocks * B).unwrap()
}

fn held(ds: &Datastore, blocks: &[&Block]) -> Vec<bool> {
    blocks
        .iter()
        .map(|b| ds.contains_cache(&b.routing_key()).unwrap())
        .collect()
}

#[test]
fn puts_gets_and_evictions_follow_recency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let ds = open(&path, 3);
    let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| block("order", i));
    for x in [&a, &b, &c] {
        ds.put_cache(x).unwrap();
    }
    assert_eq!(ds.usage().cache_blocks, 3);
    assert_eq!(ds.usage().cache_bytes, 3 * B);
    // A hit refreshes a; putting b again refreshes b: c is now the oldest.
    assert_eq!(ds.get(&a.routing_key()).unwrap(), Some(a.clone()));
    ds.put_cache(&b).unwrap();
    ds.put_cache(&d).unwrap();
    assert_eq!(held(&ds, &[&a, &b, &c, &d]), [true, true, false, true]);
    ds.put_cache(&e).unwrap();
    assert_eq!(held(&ds, &[&a, &b, &d, &e]), [false, true, true, true]);
    assert_eq!(ds.get(&c.routing_key()).unwrap(), None);
    for x in [&b, &d, &e] {
        assert_eq!(ds.get(&x.routing_key()).unwrap(), Some(x.clone()));
        assert!(ds.holds(&x.routing_key()));
    }
    assert_eq!(ds.usage().cache_blocks, 3);
    // The slot files sit beside the database and never exceed the budget.
    let data = std::fs::metadata(path.with_extension("slots")).unwrap();
    assert!(data.len() <= 3 * B, "{}", data.len());
    assert!(path.with_extension("slots-meta").exists());
    assert_eq!(ds.cache_stats().damaged, 0);
}

#[test]
fn reopening_keeps_cached_blocks_and_applies_a_new_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let blocks: Vec<Block> = (0..6).map(|i| block("reopen", i)).collect();
    {
        let ds = open(&path, 6);
        for b in &blocks {
            ds.put_cache(b).unwrap();
        }
        ds.put_store(&blocks[0]).unwrap();
    }
    {
        let ds = open(&path, 6);
        assert_eq!(ds.usage().cache_blocks, 6);
        for b in &blocks {
            assert_eq!(ds.get(&b.routing_key()).unwrap(), Some(b.clone()));
        }
    }
    // A smaller cache drops what does not fit; what is kept still verifies.
    {
        let ds = open(&path, 4);
        let u = ds.usage();
        assert_eq!((u.cache_blocks, u.cache_limit), (4, 4 * B));
        let kept = blocks
            .iter()
            .filter(|b| ds.contains_cache(&b.routing_key()).unwrap())
            .count();
        assert_eq!(kept, 4);
        for b in &blocks[1..] {
            if ds.contains_cache(&b.routing_key()).unwrap() {
                assert_eq!(ds.get(&b.routing_key()).unwrap(), Some(b.clone()));
            }
        }
        // The store part is untouched by the cache's budget.
        assert_eq!(ds.usage().store_blocks, 1);
        let slots = std::fs::metadata(path.with_extension("slots")).unwrap();
        assert!(slots.len() <= 4 * B);
    }
    // A larger one keeps the four and has room for more.
    let ds = open(&path, 8);
    assert_eq!(ds.usage().cache_blocks, 4);
    ds.put_cache(&block("reopen", 10)).unwrap();
    assert_eq!(ds.usage().cache_blocks, 5);
}

/// Signed blocks (a site's pointer, an update) are far shorter than a
/// slot: they are cached, read back whole, found damaged when their slot
/// is, and survive a reopen beside full blocks.
#[test]
fn signed_blocks_shorter_than_a_slot_are_cached_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let owner = SskPrivate::from_seed([5; 32], [6; 32]);
    let signed: Vec<Block> = (0..3)
        .map(|i| owner.sign(&format!("site-{i}"), b"CHK@pointer").unwrap().1)
        .collect();
    assert!(signed.iter().all(|b| b.as_bytes().len() < BLOCK_LEN / 4));
    let full = [block("mixed", 0), block("mixed", 1)];
    let all: Vec<&Block> = signed.iter().chain(&full).collect();
    {
        let ds = open(&path, 8);
        for b in &all {
            ds.put_cache(b).unwrap();
        }
        for b in &all {
            assert_eq!(ds.get(&b.routing_key()).unwrap().as_ref(), Some(*b));
        }
    }
    let ds = open(&path, 8);
    assert_eq!(ds.usage().cache_blocks, 5);
    for b in &all {
        assert_eq!(ds.get(&b.routing_key()).unwrap().as_ref(), Some(*b));
    }
    // Damage to a signed block's slot is found like any other.
    assert_eq!(
        ds.corrupt_for_test(&signed[1].routing_key(), false)
            .unwrap(),
        1
    );
    assert_eq!(ds.get(&signed[1].routing_key()).unwrap(), None);
    assert_eq!(ds.cache_stats().damaged, 1);
    assert_eq!(
        ds.get(&signed[2].routing_key()).unwrap().as_ref(),
        Some(&signed[2])
    );
}

/// Reopen after a put stopped half way, as after a crash.
fn torn(how: Torn) -> (PathBuf, tempfile::TempDir, [Block; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let [x, y, z] = [0, 1, 2].map(|i| block(&format!("torn {how:?}"), i));
    let ds = open(&path, 2);
    ds.put_cache(&x).unwrap();
    ds.put_cache(&y).unwrap();
    // z takes x's slot (the least recently used) and stops half way.
    ds.put_cache_torn_for_test(&z, how).unwrap();
    drop(ds);
    (path, dir, [x, y, z])
}

#[test]
fn a_torn_write_is_never_served() {
    // Data written, record not: the record still names x over z's data.
    let (path, _dir, [x, y, z]) = torn(Torn::DataOnly);
    let ds = open(&path, 2);
    assert!(ds.holds(&x.routing_key()));
    assert_eq!(ds.get(&x.routing_key()).unwrap(), None);
    assert_eq!(ds.get(&z.routing_key()).unwrap(), None);
    assert!(!ds.holds(&x.routing_key()), "the damaged slot is freed");
    assert_eq!(ds.cache_stats().damaged, 1);
    assert_eq!(ds.get(&y.routing_key()).unwrap(), Some(y.clone()));
    assert_eq!(ds.usage().cache_blocks, 1);
    // The freed slot is used again, and stays fixed after reopening.
    ds.put_cache(&z).unwrap();
    drop(ds);
    let ds = open(&path, 2);
    assert_eq!(ds.get(&z.routing_key()).unwrap(), Some(z));
    assert_eq!(ds.get(&x.routing_key()).unwrap(), None);
    assert_eq!(ds.cache_stats().damaged, 0);

    // Record written, data not: the record names z over x's data.
    let (path, _dir, [x, y, z]) = torn(Torn::RecordOnly);
    let ds = open(&path, 2);
    assert!(ds.holds(&z.routing_key()));
    assert_eq!(ds.get(&z.routing_key()).unwrap(), None);
    assert_eq!(ds.get(&x.routing_key()).unwrap(), None);
    assert_eq!(ds.cache_stats().damaged, 1);
    assert_eq!(ds.get(&y.routing_key()).unwrap(), Some(y));
}

#[test]
fn damage_in_the_slot_file_is_freed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let ds = open(&path, 2);
    let a = block("damage", 0);
    ds.put_cache(&a).unwrap();
    // Another process (or a failing disk) scribbles over slot 0.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path.with_extension("slots"))
        .unwrap();
    file.write_all_at(&[0xAA; 512], 1000).unwrap();
    assert_eq!(ds.get(&a.routing_key()).unwrap(), None);
    assert!(!ds.contains_cache(&a.routing_key()).unwrap());
    assert_eq!(ds.cache_stats().damaged, 1);
    ds.put_cache(&a).unwrap();
    assert_eq!(ds.get(&a.routing_key()).unwrap(), Some(a));
}

#[test]
fn a_failing_cache_write_leaves_the_store_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.redb");
    let ds = open(&path, 4);
    let (kept, lost, stored) = (block("fail", 0), block("fail", 1), block("fail", 2));
    ds.put_cache(&kept).unwrap();
    ds.fail_cache_writes_for_test(true);
    let err = ds.put_cache(&lost).unwrap_err();
    assert!(matches!(err, StoreError::CacheWrite(_)), "{err}");
    assert!(
        !err.is_io(),
        "a cache write error must not reopen the database"
    );
    assert!(!ds.holds(&lost.routing_key()));
    assert_eq!(ds.cache_stats().write_errors, 1);
    // The store part writes, reads and stays healthy; the cache still serves.
    ds.put_store(&stored).unwrap();
    assert_eq!(ds.get(&stored.routing_key()).unwrap(), Some(stored));
    assert_eq!(ds.get(&kept.routing_key()).unwrap(), Some(kept));
    let health = ds.health();
    assert_eq!((health.state, health.failed_writes), (StoreState::Ok, 0));
    assert_eq!(ds.usage().cache_blocks, 1);
    // Once writes work again the block is cached.
    ds.fail_cache_writes_for_test(false);
    ds.put_cache(&lost).unwrap();
    assert_eq!(ds.get(&lost.routing_key()).unwrap(), Some(lost));
}

#[test]
fn a_memory_backed_datastore_caches_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mem.redb");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let file = std::sync::Arc::new(std::sync::Mutex::new(Some(file)));
    let source = veil::store::StoreSource::Backend {
        name: "test".into(),
        open: std::sync::Arc::new(move || {
            let f = file.lock().unwrap().take().expect("opened once");
            Ok(
                Box::new(redb::backends::FileBackend::new(f).map_err(std::io::Error::other)?)
                    as Box<dyn redb::StorageBackend>,
            )
        }),
    };
    let ds = Datastore::open_source(source, 2 * B, 2 * B).unwrap();
    let blocks: Vec<Block> = (0..3).map(|i| block("mem", i)).collect();
    for b in &blocks {
        ds.put_cache(b).unwrap();
    }
    assert_eq!(
        held(&ds, &[&blocks[0], &blocks[1], &blocks[2]]),
        [false, true, true]
    );
    assert_eq!(
        ds.get(&blocks[2].routing_key()).unwrap(),
        Some(blocks[2].clone())
    );
    assert!(!path.with_extension("slots").exists());
}
