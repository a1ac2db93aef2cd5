//! Erasure-coded splitfiles over an in-memory "network": any k of a
//! segment's n blocks rebuild it, fewer fail naming the segment; version-1
//! files still fetch; a manifest bomb is refused early, fetching little.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common;

use common::bytes;
use proptest::prelude::*;
use veil::content::{
    decode_manifest, encode_manifest, fetch_to_writer, split_v1, split_with, ContentError, Fec,
    FetchOptions, Layout, Manifest, ManifestEntry, SplitOptions, DEFAULT_MAX_LEN, MANIFEST_VERSION,
    MANIFEST_VERSION_V1, MANIFEST_VERSION_V2, MAX_FANOUT, MAX_FANOUT_V1,
};
use veil::keys::{Block, BlockKind, Chk, RoutingKey, BLOCK_DATA_LEN};

const B: u64 = BLOCK_DATA_LEN as u64;

type Net = HashMap<RoutingKey, Block>;

fn net_of(blocks: &[Block]) -> Net {
    blocks
        .iter()
        .map(|b| (b.routing_key(), b.clone()))
        .collect()
}

/// Fetch through `net`, counting calls; no retries unless asked.
async fn get_counted(
    uri: &Chk,
    net: Net,
    opts: FetchOptions,
) -> (Result<Vec<u8>, ContentError>, usize) {
    let net = Arc::new(net);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let fetch_block = move |key: RoutingKey| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(
            net.get(&key)
                .cloned()
                .ok_or_else(|| "not in the network".to_string()),
        )
    };
    let mut out = Vec::new();
    let got = fetch_to_writer(uri, &opts, fetch_block, &mut out, |_| {})
        .await
        .map(|_| out);
    (got, calls.load(Ordering::SeqCst))
}

/// The distinct check blocks over the manifests of the tree under `uri`.
fn manifest_checks(uri: &Chk, net: &Net) -> std::collections::HashSet<RoutingKey> {
    let mut checks = std::collections::HashSet::new();
    let mut todo = vec![uri.clone()];
    while let Some(chk) = todo.pop() {
        let (_, text) = chk.decode_any(&net[&chk.routing]).unwrap();
        let m = decode_manifest(&text).unwrap();
        checks.extend(m.checks.iter().map(|c| c.chk.routing));
        if m.depth > 0 {
            todo.extend(m.entries.into_iter().map(|e| e.chk));
        }
    }
    checks
}

fn opts(seed: u64) -> FetchOptions {
    FetchOptions {
        concurrency: 3,
        retries: 0,
        seed: Some(seed),
        ..FetchOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Drop any set of leaves: the file comes back byte for byte exactly
    /// when every segment keeps at least k of its n blocks; otherwise the
    /// error names the first segment that does not, and how many it lost.
    #[test]
    fn any_k_of_n_decode_and_fewer_fail_cleanly(
        blocks in 2u64..10,
        tail in 0u64..B,
        segment in 1u8..5,
        redundancy in prop_oneof![Just(0u16), Just(50), Just(100), Just(200), 1u16..=300],
        drop_mask in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let len = ((blocks - 1) * B + tail + 1) as usize;
        let data = bytes(len, seed);
        let sf = split_with(&data, &SplitOptions { redundancy, segment, fanout: MAX_FANOUT }).unwrap();
        let layout = Layout::new(Fec { file_length: len as u64, segment, redundancy });
        // The leaves, from the root (one manifest at this size). Leaves
        // may share a block: a one-block segment's check blocks are copies
        // of its (full) data block.
        let (_, plain) = sf.uri.decode_any(sf.blocks.last().unwrap()).unwrap();
        let root = decode_manifest(&plain).unwrap();
        prop_assert_eq!(root.depth, 0);
        prop_assert_eq!(root.entries.len() as u64, layout.leaves());
        let keys: Vec<RoutingKey> = root.entries.iter().map(|e| e.chk.routing).collect();
        let mut net: Net = net_of(&sf.blocks);
        for (leaf, key) in keys.iter().enumerate() {
            if drop_mask >> (leaf % 64) & 1 == 1 {
                net.remove(key);
            }
        }
        let mut first_short = None;
        for (number, seg) in (1u64..).zip(layout.iter()) {
            let n = seg.data + seg.check;
            let first = seg.first_leaf as usize;
            let kept = keys[first..first + n].iter().filter(|k| net.contains_key(k)).count();
            if kept < seg.data && first_short.is_none() {
                first_short = Some((number, n - kept, kept, seg.data, n));
            }
        }
        let (got, _) = runtime().block_on(get_counted(&sf.uri, net, opts(seed)));
        match first_short {
            None => prop_assert!(got.unwrap() == data),
            Some((number, lost, kept, k, n)) => match got {
                Err(ContentError::SegmentUnrecoverable { segment, segments, lost: l, obtained, needed, total, cause }) => {
                    prop_assert_eq!(segment, number);
                    prop_assert_eq!(segments, layout.segments());
                    prop_assert_eq!((l, obtained, needed, total), (lost, kept, k, n));
                    let unavailable = matches!(*cause, ContentError::BlockUnavailable { .. });
                    prop_assert!(unavailable);
                }
                other => prop_assert!(false, "{:?}", other.map(|d| d.len())),
            },
        }
    }

    /// The same one level up (version 3): drop any of the root's child
    /// manifests and the check blocks over them. The file comes back byte
    /// for byte exactly when any `c` of the `c + m` remain; otherwise the
    /// fetch fails with an error, never a panic or a wrong file.
    #[test]
    fn any_c_of_a_manifests_children_and_checks_decode_and_fewer_fail_cleanly(
        blocks in 10u64..24,
        fanout in 4usize..9,
        redundancy in prop_oneof![Just(0u16), Just(50), Just(100), Just(200), 1u16..=300],
        drop_mask in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let len = (blocks * B - 7) as usize;
        let data = bytes(len, seed);
        let opts_split = SplitOptions { redundancy, segment: 128, fanout };
        let sf = split_with(&data, &opts_split).unwrap();
        let mut net: Net = net_of(&sf.blocks);
        let (_, plain) = sf.uri.decode_any(&net[&sf.uri.routing]).unwrap();
        let root = decode_manifest(&plain).unwrap();
        prop_assert_eq!(root.version, MANIFEST_VERSION);
        prop_assert!(root.depth > 0);
        prop_assert!(root.entries.len() + root.checks.len() <= fanout);
        if redundancy == 0 {
            prop_assert!(root.checks.is_empty());
        }
        let group: Vec<RoutingKey> = root.entries.iter().chain(&root.checks)
            .map(|e| e.chk.routing).collect();
        for (i, key) in group.iter().enumerate() {
            if drop_mask >> (i % 64) & 1 == 1 {
                net.remove(key);
            }
        }
        let kept = group.iter().filter(|k| net.contains_key(k)).count();
        let (got, _) = runtime().block_on(get_counted(&sf.uri, net, opts(seed)));
        if kept >= root.entries.len() {
            prop_assert!(got.unwrap() == data);
        } else {
            match got {
                Err(ContentError::BlockUnavailable { .. }) => {}
                other => prop_assert!(false, "{:?}", other.map(|d| d.len())),
            }
        }
    }
}

#[test]
fn a_fetch_asks_for_only_k_blocks_in_a_random_order() {
    let data = bytes(20 * BLOCK_DATA_LEN, 1);
    let sf = split_with(&data, &SplitOptions::default()).unwrap();
    let net: Net = net_of(&sf.blocks);
    let rt = runtime();
    let order = |seed: u64| {
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let net = Arc::new(net.clone());
        let fetch_block = move |key: RoutingKey| {
            seen.lock().unwrap().push(key);
            std::future::ready(net.get(&key).cloned().ok_or("missing"))
        };
        let mut out = Vec::new();
        rt.block_on(fetch_to_writer(
            &sf.uri,
            &FetchOptions {
                concurrency: 1,
                seed: Some(seed),
                ..FetchOptions::default()
            },
            fetch_block,
            &mut out,
            |_| {},
        ))
        .unwrap();
        assert!(out == data);
        let asked = asked.lock().unwrap().clone();
        asked
    };
    let a = order(1);
    let b = order(2);
    // The root, then exactly k = 20 of the 40 leaves.
    assert_eq!(a.len(), 21);
    assert_eq!(b.len(), 21);
    assert_ne!(a, b, "two seeds asked in the same order");
    let check_keys: Vec<RoutingKey> = sf.blocks[20..40].iter().map(|b| b.routing_key()).collect();
    assert!(
        a.iter().any(|k| check_keys.contains(k)),
        "no check block was asked for"
    );
    assert_eq!(order(1), a, "the same seed, the same order");
}

#[test]
fn failed_blocks_are_retried_with_a_new_request() {
    // The first request for every block fails; the retry succeeds.
    let data = bytes(3 * BLOCK_DATA_LEN, 2);
    let sf = split_with(
        &data,
        &SplitOptions {
            redundancy: 0,
            ..SplitOptions::default()
        },
    )
    .unwrap();
    let net: Arc<Net> = Arc::new(net_of(&sf.blocks));
    let tried = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let fetch_block = move |key: RoutingKey| {
        let first = tried.lock().unwrap().insert(key);
        std::future::ready(if first {
            Err("timed out")
        } else {
            net.get(&key).cloned().ok_or("missing")
        })
    };
    let mut out = Vec::new();
    let mut last = None;
    runtime()
        .block_on(fetch_to_writer(
            &sf.uri,
            &FetchOptions {
                retries: 1,
                backoff: Duration::from_millis(1),
                ..FetchOptions::default()
            },
            fetch_block.clone(),
            &mut out,
            |p| last = Some(p),
        ))
        .unwrap();
    assert!(out == data);
    // Root and three data blocks, each retried once.
    assert_eq!(last.unwrap().retries, 4);
    // No retries: the root fails.
    let err = runtime()
        .block_on(fetch_to_writer(
            &Chk::encode(b"other").unwrap().0,
            &FetchOptions {
                retries: 0,
                ..FetchOptions::default()
            },
            fetch_block,
            &mut Vec::new(),
            |_| {},
        ))
        .unwrap_err();
    assert!(
        matches!(err, ContentError::BlockUnavailable { .. }),
        "{err}"
    );
}

#[test]
fn old_format_files_still_fetch() {
    // The version-1 encoder: no check blocks, the file's length in `length`.
    let data = bytes(5 * BLOCK_DATA_LEN + 100, 3);
    let old = split_v1(&data, MAX_FANOUT_V1).unwrap();
    assert_eq!(old.blocks.len(), 7);
    let (_, plain) = old.uri.decode_any(old.blocks.last().unwrap()).unwrap();
    // The old wire form: "v": 1 and no "fec" key at all.
    assert_eq!(&plain[1..4], &[0x61, b'v', 0x01]);
    assert!(!plain.windows(4).any(|w| w == [0x63, b'f', b'e', b'c']));
    let m = decode_manifest(&plain).unwrap();
    assert_eq!(m.version, MANIFEST_VERSION_V1);
    assert_eq!(m.length, data.len() as u64);
    assert_eq!(m.fec, None);
    // Its data blocks are the same blocks the new encoder makes.
    let new = split_with(&data, &SplitOptions::default()).unwrap();
    assert_eq!(old.blocks[..6], new.blocks[..6]);
    assert_ne!(old.uri, new.uri);
    let net: Net = net_of(&old.blocks);
    let (got, calls) = runtime().block_on(get_counted(&old.uri, net, opts(3)));
    assert!(got.unwrap() == data);
    assert_eq!(calls, 7);
    // A deeper old tree, too.
    let old = split_v1(&data, 2).unwrap();
    let net: Net = net_of(&old.blocks);
    let (got, _) = runtime().block_on(get_counted(&old.uri, net, opts(4)));
    assert!(got.unwrap() == data);
    // Version 2 (check blocks over the leaves, no "checks" key): the same
    // leaves under a root written as version 2 still fetch.
    let (_, plain) = new.uri.decode_any(new.blocks.last().unwrap()).unwrap();
    let mut root = decode_manifest(&plain).unwrap();
    assert_eq!((root.version, root.depth), (MANIFEST_VERSION, 0));
    root.version = MANIFEST_VERSION_V2;
    let plain = encode_manifest(&root);
    assert!(!plain.windows(7).any(|w| w == b"\x66checks"));
    let (uri, block) = Chk::encode_kind(BlockKind::Manifest, &plain).unwrap();
    let mut net: Net = net_of(&new.blocks);
    net.insert(uri.routing, block);
    let (got, _) = runtime().block_on(get_counted(&uri, net, opts(5)));
    assert!(got.unwrap() == data);
}

/// One data block of zeros, a depth-0 manifest listing it `MAX_FANOUT`
/// times, a depth-1 manifest listing that `MAX_FANOUT` times, and a root
/// listing that 192 times: four blocks claiming almost 1 TiB.
fn bomb(version: u8) -> (Chk, Net) {
    let mut net = Net::new();
    let mut seal = |kind, plain: &[u8]| {
        let (chk, block) = Chk::encode_kind(kind, plain).unwrap();
        net.insert(chk.routing, block);
        chk
    };
    let zeros = seal(BlockKind::Data, &[0u8; BLOCK_DATA_LEN]);
    let level = |chk: &Chk, len: u64, depth: u8, n: usize| Manifest {
        version,
        length: len * n as u64,
        sha256: None,
        depth,
        entries: vec![
            ManifestEntry {
                chk: chk.clone(),
                length: len,
            };
            n
        ],
        fec: None,
        checks: Vec::new(),
    };
    let m0 = level(&zeros, B, 0, MAX_FANOUT);
    let m0_chk = seal(BlockKind::Manifest, &encode_manifest(&m0));
    let m1 = level(&m0_chk, m0.length, 1, MAX_FANOUT);
    let m1_chk = seal(BlockKind::Manifest, &encode_manifest(&m1));
    let mut root = level(&m1_chk, m1.length, 2, 192);
    root.sha256 = Some([0; 32]);
    if version == MANIFEST_VERSION {
        root.fec = Some(Fec {
            file_length: root.length,
            segment: 128,
            redundancy: 0,
        });
    }
    let uri = seal(BlockKind::Manifest, &encode_manifest(&root));
    assert_eq!(decode_manifest(&encode_manifest(&root)).unwrap(), root);
    assert!(root.length > 1 << 39, "{}", root.length);
    (uri, net)
}

#[test]
fn a_manifest_bomb_is_refused_after_one_block() {
    for version in [MANIFEST_VERSION_V1, MANIFEST_VERSION] {
        let (uri, net) = bomb(version);
        let (got, calls) = runtime().block_on(get_counted(&uri, net, opts(5)));
        let err = got.unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::TooLarge {
                    max: DEFAULT_MAX_LEN,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("--max-size"), "{err}");
        assert!(!err.to_string().contains('\n'));
        assert_eq!(calls, 1, "only the root was fetched");
    }
}

#[test]
fn repeated_keys_are_fetched_once() {
    // 16 MiB of zeros (512 identical blocks, and identical check blocks):
    // the root, one manifest level's distinct children, and one block.
    let zeros = vec![0u8; 16 << 20];
    let sf = split_with(
        &zeros,
        &SplitOptions {
            fanout: 16,
            ..SplitOptions::default()
        },
    )
    .unwrap();
    let net: Net = net_of(&sf.blocks);
    // The check blocks over the manifests are not needed: nothing is lost.
    let distinct = net.len() - manifest_checks(&sf.uri, &net).len();
    let (got, calls) = runtime().block_on(get_counted(&sf.uri, net, opts(6)));
    assert!(got.unwrap() == zeros);
    assert_eq!(calls, distinct, "every distinct block needed once, no more");
    assert!(calls < 10, "{calls}");
    // Same for an old-format file.
    let old = split_v1(&zeros, 16).unwrap();
    let net: Net = net_of(&old.blocks);
    let distinct = net.len();
    let (got, calls) = runtime().block_on(get_counted(&old.uri, net, opts(7)));
    assert!(got.unwrap() == zeros);
    assert_eq!(calls, distinct);
}

#[test]
fn the_next_segments_requests_leave_before_the_current_one_is_complete() {
    // Six segments of 4 data + 2 check blocks; every block takes 1..=5 ms
    // to come, so they complete out of order.
    let data = bytes(24 * BLOCK_DATA_LEN - 100, 21);
    let sf = split_with(
        &data,
        &SplitOptions {
            redundancy: 50,
            segment: 4,
            ..SplitOptions::default()
        },
    )
    .unwrap();
    let net = Arc::new(net_of(&sf.blocks));
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (now.clone(), most.clone());
    let fetch_block = move |key: RoutingKey| {
        let (net, now, most) = (net.clone(), n.clone(), m.clone());
        async move {
            let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(in_flight, Ordering::SeqCst);
            let ms = 1 + u64::from(key.0[0] % 5);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            net.get(&key)
                .cloned()
                .ok_or_else(|| "not in the network".to_string())
        }
    };
    let opts = FetchOptions {
        concurrency: 8,
        ..opts(9)
    };
    let mut out = Vec::new();
    runtime()
        .block_on(fetch_to_writer(
            &sf.uri,
            &opts,
            fetch_block,
            &mut out,
            |_| {},
        ))
        .unwrap();
    assert!(out == data, "the segments came back out of order or wrong");
    // One segment alone never has more than its 4 needed blocks asked for:
    // more in flight means the next segment's requests went out before the
    // current one was complete (two segments open: at most 8).
    let most = most.load(Ordering::SeqCst);
    assert!(most > 4 && most <= 8, "at most {most} requests in flight");
}
