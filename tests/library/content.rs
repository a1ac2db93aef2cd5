//! Splitting files into CHK blocks and manifests, and fetching them back
//! through an in-memory "network".

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use veil::content::{
    decode_manifest, encode_manifest, fetch_to_writer, fetch_with_progress, split, split_v1,
    split_with, ContentError, Fec, FetchOptions, Manifest, ManifestEntry, Progress, SplitFile,
    SplitOptions, MANIFEST_VERSION, MANIFEST_VERSION_V1, MANIFEST_VERSION_V2, MAX_DEPTH,
    MAX_FANOUT, MAX_FANOUT_V1, MAX_FANOUT_V2, MAX_FILE_LEN,
};
use veil::keys::{Block, BlockKind, Chk, RoutingKey, BLOCK_DATA_LEN};

type Net = Arc<HashMap<RoutingKey, Block>>;

/// Deterministic, non-repeating bytes (xorshift), so no two blocks collide.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn network(blocks: &[Block]) -> HashMap<RoutingKey, Block> {
    blocks
        .iter()
        .map(|b| (b.routing_key(), b.clone()))
        .collect()
}

fn getter(net: Net) -> impl Fn(RoutingKey) -> std::future::Ready<Result<Block, String>> + Clone {
    move |key: RoutingKey| {
        std::future::ready(
            net.get(&key)
                .cloned()
                .ok_or_else(|| "not in the network".to_string()),
        )
    }
}

/// Fetch with no retries (a missing block stays missing).
async fn get(uri: &Chk, net: HashMap<RoutingKey, Block>) -> Result<Vec<u8>, ContentError> {
    let opts = FetchOptions {
        concurrency: 4,
        retries: 0,
        ..FetchOptions::default()
    };
    let mut out = Vec::new();
    fetch_to_writer(uri, &opts, getter(Arc::new(net)), &mut out, |_| {}).await?;
    Ok(out)
}

/// The version-2 format without check blocks: the tree has the shape the
/// version-1 encoder gave, so its counts are easy to state.
fn plain(data: &[u8], fanout: usize) -> SplitFile {
    split_with(data, &no_check_blocks(fanout)).unwrap()
}

fn no_check_blocks(fanout: usize) -> SplitOptions {
    SplitOptions {
        redundancy: 0,
        fanout,
        ..SplitOptions::default()
    }
}

fn kinds(sf: &SplitFile) -> (usize, usize) {
    let mut data = 0;
    let mut manifests = 0;
    let net = network(&sf.blocks);
    // Open every block by walking the tree from the root.
    let mut stack = vec![sf.uri.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(chk) = stack.pop() {
        if !seen.insert(chk.routing) {
            continue;
        }
        let (kind, plain) = chk.decode_any(&net[&chk.routing]).unwrap();
        match kind {
            BlockKind::Data => data += 1,
            BlockKind::Manifest => {
                manifests += 1;
                let m = decode_manifest(&plain).unwrap();
                stack.extend(m.entries.into_iter().map(|e| e.chk));
            }
        }
    }
    assert_eq!(seen.len(), sf.blocks.len(), "every block is reachable");
    (data, manifests)
}

async fn round_trip(data: &[u8], sf: &SplitFile) {
    let got = get(&sf.uri, network(&sf.blocks)).await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "round trip differs");
}

#[tokio::test]
async fn small_files_are_one_data_block() {
    for len in [0usize, 1, 100, BLOCK_DATA_LEN] {
        let data = bytes(len, 1);
        let sf = split(&data).unwrap();
        assert_eq!(sf.blocks.len(), 1, "len {len}");
        assert_eq!(kinds(&sf), (1, 0));
        // The URI is just the data block's CHK.
        let (chk, block) = Chk::encode(&data).unwrap();
        assert_eq!(sf.uri, chk);
        assert_eq!(sf.blocks[0], block);
        round_trip(&data, &sf).await;
    }
}

#[tokio::test]
async fn one_byte_over_a_block_is_two_blocks_two_check_blocks_and_a_manifest() {
    let data = bytes(BLOCK_DATA_LEN + 1, 2);
    let sf = split(&data).unwrap();
    assert_eq!(sf.blocks.len(), 5);
    // Check blocks are sealed as data blocks.
    assert_eq!(kinds(&sf), (4, 1));
    // Data first, root manifest last, and the URI names the last block.
    assert_eq!(sf.blocks[4].routing_key(), sf.uri.routing);
    let (kind, plain) = sf.uri.decode_any(&sf.blocks[4]).unwrap();
    assert_eq!(kind, BlockKind::Manifest);
    let m = decode_manifest(&plain).unwrap();
    assert_eq!(m.version, MANIFEST_VERSION);
    assert_eq!(m.depth, 0);
    let b = BLOCK_DATA_LEN as u64;
    assert_eq!(
        m.fec,
        Some(Fec {
            file_length: b + 1,
            segment: 128,
            redundancy: 100
        })
    );
    // Stored bytes: the file and two full check blocks.
    assert_eq!(m.length, 3 * b + 1);
    let lens: Vec<u64> = m.entries.iter().map(|e| e.length).collect();
    assert_eq!(lens, vec![b, 1, b, b]);
    let want: [u8; 32] = sha256(&data);
    assert_eq!(m.sha256, Some(want));
    round_trip(&data, &sf).await;
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[tokio::test]
async fn several_megabytes_round_trip() {
    let len = 3 * 1024 * 1024 + 17;
    let data = bytes(len, 3);
    let sf = split(&data).unwrap();
    // 96 full blocks + one of 17 bytes and 97 check blocks, all listed by
    // one root manifest.
    assert_eq!(kinds(&sf), (194, 1));
    assert_eq!(sf.blocks.len(), 195);
    round_trip(&data, &sf).await;
    let sf = plain(&data, MAX_FANOUT);
    assert_eq!(kinds(&sf), (97, 1));
    round_trip(&data, &sf).await;
}

#[tokio::test]
async fn deep_trees_round_trip() {
    // 300 000 bytes = 10 data blocks (9 full + 5 088 bytes).
    let data = bytes(300_000, 4);
    // Fan-out 2: 10 -> 5 -> 3 -> 2 -> root (depth 3): 5+3+2+1 manifests.
    let sf2 = plain(&data, 2);
    assert_eq!(kinds(&sf2), (10, 11));
    let (_, root) = sf2.uri.decode_any(sf2.blocks.last().unwrap()).unwrap();
    assert_eq!(decode_manifest(&root).unwrap().depth, 3);
    round_trip(&data, &sf2).await;
    // Fan-out 3: 10 -> 4 -> 2 -> root (depth 2): 4+2+1 manifests.
    let sf3 = plain(&data, 3);
    assert_eq!(kinds(&sf3), (10, 7));
    let (_, root) = sf3.uri.decode_any(sf3.blocks.last().unwrap()).unwrap();
    assert_eq!(decode_manifest(&root).unwrap().depth, 2);
    round_trip(&data, &sf3).await;
    // Different fan-outs are different trees.
    assert_ne!(sf2.uri, sf3.uri);
}

#[test]
fn trees_deeper_than_the_limit_are_refused() {
    // Fan-out 2 and depth <= MAX_DEPTH hold 2^(MAX_DEPTH+1) blocks.
    let blocks = 1usize << (MAX_DEPTH + 1);
    let ok = bytes(blocks * BLOCK_DATA_LEN, 5);
    let with = |data: &[u8], fanout: usize| split_with(data, &no_check_blocks(fanout));
    assert!(with(&ok, 2).is_ok());
    let too_big = bytes(blocks * BLOCK_DATA_LEN + 1, 5);
    assert!(matches!(
        with(&too_big, 2),
        Err(ContentError::TooLarge { .. })
    ));
    assert!(matches!(with(b"x", 1), Err(ContentError::BadFanout(1))));
    assert!(matches!(
        with(b"x", MAX_FANOUT + 1),
        Err(ContentError::BadFanout(_))
    ));
    let bad = SplitOptions {
        redundancy: 301,
        ..SplitOptions::default()
    };
    assert!(matches!(
        split_with(b"x", &bad),
        Err(ContentError::BadOptions { .. })
    ));
}

#[tokio::test]
async fn convergence_and_deduplication() {
    let data = bytes(100_000, 6);
    let a = split(&data).unwrap();
    let b = split(&data).unwrap();
    assert_eq!(a.uri, b.uri);
    assert_eq!(a.blocks, b.blocks);
    let mut other = data.clone();
    other[99_999] ^= 1;
    assert_ne!(split(&other).unwrap().uri, a.uri);

    // Five identical blocks are stored once, and so are their check
    // blocks (Reed-Solomon is linear: zeros in, zeros out, the same block).
    let zeros = vec![0u8; 5 * BLOCK_DATA_LEN];
    let sf = split(&zeros).unwrap();
    assert_eq!(sf.blocks.len(), 2);
    round_trip(&zeros, &sf).await;
}

#[test]
fn fanout_is_the_most_that_fits_in_a_block() {
    assert_eq!(MAX_FANOUT, 418);
    assert_eq!(MAX_FANOUT_V1, 419);
    // Worst case: every integer at its widest.
    let chks: Vec<Chk> = (0..=MAX_FANOUT_V1)
        .map(|i| Chk::encode(&i.to_be_bytes()).unwrap().0)
        .collect();
    let worst = |version: u8, n: usize| Manifest {
        version,
        length: u64::MAX,
        sha256: Some([0xff; 32]),
        depth: u8::MAX,
        entries: chks[..n]
            .iter()
            .map(|chk| ManifestEntry {
                chk: chk.clone(),
                length: u64::MAX,
            })
            .collect(),
        fec: (version != MANIFEST_VERSION_V1).then_some(Fec {
            file_length: u64::MAX,
            segment: u8::MAX,
            redundancy: u16::MAX,
        }),
        checks: Vec::new(),
    };
    // Version 3: children and checks share the fan-out.
    let worst_v3 = |n: usize| {
        let mut m = worst(MANIFEST_VERSION, n);
        m.checks = m.entries.split_off(n / 2);
        m
    };
    assert!(encode_manifest(&worst_v3(MAX_FANOUT)).len() <= BLOCK_DATA_LEN);
    assert!(encode_manifest(&worst_v3(MAX_FANOUT + 1)).len() > BLOCK_DATA_LEN);
    for (version, fanout) in [
        (MANIFEST_VERSION, MAX_FANOUT),
        (MANIFEST_VERSION_V2, MAX_FANOUT_V2),
        (MANIFEST_VERSION_V1, MAX_FANOUT_V1),
    ] {
        let fits = encode_manifest(&worst(version, fanout));
        assert!(fits.len() <= BLOCK_DATA_LEN, "{}", fits.len());
        assert!(Chk::encode_kind(BlockKind::Manifest, &fits).is_ok());
        let over = encode_manifest(&worst(version, fanout + 1));
        assert!(over.len() > BLOCK_DATA_LEN, "{}", over.len());
    }
}

#[test]
fn a_full_manifest_round_trips() {
    let data = bytes(MAX_FANOUT * BLOCK_DATA_LEN, 7);
    let sf = plain(&data, MAX_FANOUT);
    // Exactly one full manifest, no tree.
    assert_eq!(kinds(&sf), (MAX_FANOUT, 1));
    let (_, opened) = sf.uri.decode_any(sf.blocks.last().unwrap()).unwrap();
    assert!(opened.len() <= BLOCK_DATA_LEN);
    let m = decode_manifest(&opened).unwrap();
    assert_eq!(m.entries.len(), MAX_FANOUT);
    assert_eq!(encode_manifest(&m), opened);
    // One more block needs a second level.
    let more = bytes(MAX_FANOUT * BLOCK_DATA_LEN + 1, 7);
    assert_eq!(kinds(&plain(&more, MAX_FANOUT)), (MAX_FANOUT + 1, 3));
}

// --- errors ---------------------------------------------------------------

/// The decryption-key half of a URI, which must never appear in an error.
fn secret(uri: &Chk) -> String {
    uri.to_uri().split(',').nth(1).unwrap().to_string()
}

fn assert_no_secrets(err: &ContentError, uris: &[&Chk]) {
    let shown = format!("{err} {err:?}");
    for uri in uris {
        assert!(!shown.contains(&secret(uri)), "{shown}");
    }
}

#[tokio::test]
async fn a_missing_block_is_unavailable() {
    let data = bytes(3 * BLOCK_DATA_LEN, 8);
    let sf = plain(&data, MAX_FANOUT);
    let mut net = network(&sf.blocks);
    let gone = sf.blocks[1].routing_key();
    net.remove(&gone);
    let err = get(&sf.uri, net).await.unwrap_err();
    match &err {
        ContentError::SegmentUnrecoverable {
            segment: 1,
            segments: 1,
            lost: 1,
            obtained: 2,
            needed: 3,
            total: 3,
            cause,
        } => match cause.as_ref() {
            ContentError::BlockUnavailable { key, source } => {
                assert_eq!(*key, gone.to_base64());
                assert_eq!(source.to_string(), "not in the network");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "segment 1 of 1: 1 of 3 blocks unrecoverable, 2 obtained, 3 needed"
    );
    assert!(err.unavailable_cause().is_some());
    assert_no_secrets(&err, &[&sf.uri]);

    // The root itself missing.
    let err = get(&sf.uri, HashMap::new()).await.unwrap_err();
    assert!(
        matches!(err, ContentError::BlockUnavailable { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_block_is_bad() {
    let data = bytes(2 * BLOCK_DATA_LEN, 9);
    let sf = plain(&data, MAX_FANOUT);
    let mut net = network(&sf.blocks);
    let key = sf.blocks[0].routing_key();
    // Serve another (valid) block under this key.
    net.insert(key, sf.blocks[1].clone());
    let err = get(&sf.uri, net).await.unwrap_err();
    assert!(
        matches!(&err, ContentError::BadBlock { key: k, .. } if *k == key.to_base64()),
        "{err:?}"
    );
}

/// Seal a manifest and add it to the network; its CHK is the new URI.
fn publish(net: &mut HashMap<RoutingKey, Block>, m: &Manifest) -> Chk {
    let (chk, block) = Chk::encode_kind(BlockKind::Manifest, &encode_manifest(m)).unwrap();
    net.insert(chk.routing, block);
    chk
}

fn root_of(sf: &SplitFile) -> Manifest {
    let (_, plain) = sf.uri.decode_any(sf.blocks.last().unwrap()).unwrap();
    decode_manifest(&plain).unwrap()
}

#[tokio::test]
async fn a_wrong_file_hash_is_caught() {
    let data = bytes(BLOCK_DATA_LEN + 1, 10);
    let sf = plain(&data, MAX_FANOUT);
    let mut net = network(&sf.blocks);
    let mut root = root_of(&sf);
    root.sha256 = Some([7; 32]);
    let uri = publish(&mut net, &root);
    let err = get(&uri, net.clone()).await.unwrap_err();
    assert!(matches!(err, ContentError::HashMismatch), "{err:?}");

    // A root without a hash is corrupt.
    root.sha256 = None;
    let uri = publish(&mut net, &root);
    let err = get(&uri, net).await.unwrap_err();
    assert!(matches!(err, ContentError::CorruptManifest(_)), "{err:?}");
}

#[tokio::test]
async fn wrong_lengths_are_caught() {
    let data = bytes(BLOCK_DATA_LEN + 1, 11);
    let sf = plain(&data, MAX_FANOUT);
    let mut net = network(&sf.blocks);
    let root = root_of(&sf);

    // Version 2: entry lengths that add up but do not fit the layout.
    let mut shifted = root.clone();
    shifted.entries[0].length -= 1;
    shifted.entries[1].length += 1;
    let uri = publish(&mut net, &shifted);
    let err = get(&uri, net.clone()).await.unwrap_err();
    assert!(matches!(err, ContentError::CorruptManifest(_)), "{err:?}");

    // Version 1: entry lengths that add up but do not match the blocks.
    let sf = split_v1(&data, MAX_FANOUT_V1).unwrap();
    let mut net = network(&sf.blocks);
    let root = root_of(&sf);
    assert_eq!(root.version, MANIFEST_VERSION_V1);
    let mut shifted = root.clone();
    shifted.entries[0].length -= 1;
    shifted.entries[1].length += 1;
    let uri = publish(&mut net, &shifted);
    let err = get(&uri, net.clone()).await.unwrap_err();
    // Blocks are asked for in random order: either one is caught first.
    assert!(
        matches!(
            err,
            ContentError::LengthMismatch {
                expected: 32767,
                actual: 32768
            } | ContentError::LengthMismatch {
                expected: 2,
                actual: 1
            }
        ),
        "{err:?}"
    );
    assert_no_secrets(&err, &[&uri, &root.entries[0].chk]);

    // A total that disagrees with the entries.
    let mut longer = root.clone();
    longer.length += 1;
    let uri = publish(&mut net, &longer);
    let err = get(&uri, net.clone()).await.unwrap_err();
    assert!(matches!(err, ContentError::CorruptManifest(_)), "{err:?}");
}

#[tokio::test]
async fn a_child_manifest_with_the_wrong_length_is_caught() {
    // Fan-out 2 over 4 blocks: root (depth 1) -> 2 manifests -> 4 blocks.
    let data = bytes(4 * BLOCK_DATA_LEN, 12);
    let sf = plain(&data, 2);
    let mut net = network(&sf.blocks);
    let mut root = root_of(&sf);
    assert_eq!(root.depth, 1);
    let child_chk = root.entries[0].chk.clone();
    let (kind, plain) = child_chk.decode_any(&net[&child_chk.routing]).unwrap();
    assert_eq!(kind, BlockKind::Manifest);
    let mut child = decode_manifest(&plain).unwrap();
    // A consistent child one byte shorter than its parent says.
    child.length -= 1;
    child.entries[0].length -= 1;
    root.entries[0].chk = publish(&mut net, &child);
    let uri = publish(&mut net, &root);
    let err = get(&uri, net.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ContentError::LengthMismatch {
                expected: 65536,
                actual: 65535
            }
        ),
        "{err:?}"
    );

    // A child at the wrong depth.
    let mut child = decode_manifest(&plain).unwrap();
    child.depth = 1;
    let mut root = root_of(&sf);
    root.entries[0].chk = publish(&mut net, &child);
    let uri = publish(&mut net, &root);
    let err = get(&uri, net).await.unwrap_err();
    assert!(matches!(err, ContentError::CorruptManifest(_)), "{err:?}");
}

#[tokio::test]
async fn garbage_manifests_are_corrupt() {
    let mut net = HashMap::new();
    let (uri, block) = Chk::encode_kind(BlockKind::Manifest, b"not cbor at all").unwrap();
    net.insert(uri.routing, block);
    let err = get(&uri, net).await.unwrap_err();
    assert!(matches!(err, ContentError::CorruptManifest(_)), "{err:?}");
    assert_no_secrets(&err, &[&uri]);
}

#[tokio::test]
async fn a_data_block_where_a_manifest_belongs_is_refused() {
    // A depth-1 root whose entries are really data blocks.
    let data = bytes(2 * BLOCK_DATA_LEN, 13);
    let sf = plain(&data, MAX_FANOUT);
    let mut net = network(&sf.blocks);
    let mut root = root_of(&sf);
    assert_eq!(root.depth, 0);
    root.depth = 1;
    let uri = publish(&mut net, &root);
    let err = get(&uri, net.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ContentError::WrongKind {
                expected: BlockKind::Manifest,
                found: BlockKind::Data,
                ..
            }
        ),
        "{err:?}"
    );

    // And a manifest where data belongs.
    let mut root = root_of(&sf);
    root.entries[0].chk = uri;
    let uri = publish(&mut net, &root);
    let err = get(&uri, net).await.unwrap_err();
    assert!(
        matches!(
            err,
            ContentError::WrongKind {
                expected: BlockKind::Data,
                found: BlockKind::Manifest,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn max_len_is_enforced() {
    let data = bytes(3 * BLOCK_DATA_LEN, 14);
    let sf = split(&data).unwrap();
    let opts = FetchOptions {
        concurrency: 2,
        max_len: 2 * BLOCK_DATA_LEN as u64,
        ..FetchOptions::default()
    };
    let mut out = Vec::new();
    let err = fetch_to_writer(
        &sf.uri,
        &opts,
        getter(Arc::new(network(&sf.blocks))),
        &mut out,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ContentError::TooLarge { .. }), "{err:?}");
    assert!(out.is_empty());
}

// --- concurrency and progress ---------------------------------------------

#[tokio::test]
async fn fetch_is_concurrent_but_bounded() {
    let data = bytes(3 * 1024 * 1024 + 17, 15);
    let sf = split(&data).unwrap();
    let net: Net = Arc::new(network(&sf.blocks));
    for concurrency in [1usize, 4, 16] {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch_block = {
            let (net, in_flight, peak, calls) =
                (net.clone(), in_flight.clone(), peak.clone(), calls.clone());
            move |key: RoutingKey| {
                let (net, in_flight, peak, calls) =
                    (net.clone(), in_flight.clone(), peak.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    net.get(&key).cloned().ok_or("missing")
                }
            }
        };
        let progress = Arc::new(Mutex::new(Vec::<Progress>::new()));
        let seen = progress.clone();
        let got = fetch_with_progress(&sf.uri, concurrency, fetch_block, move |p| {
            seen.lock().unwrap().push(p)
        })
        .await
        .unwrap();
        assert!(got == data);
        assert_eq!(calls.load(Ordering::SeqCst), 98);
        assert_eq!(
            peak.load(Ordering::SeqCst),
            concurrency,
            "concurrency {concurrency}"
        );
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);

        let progress = progress.lock().unwrap();
        let last = progress.last().unwrap();
        assert_eq!(last.blocks_done, 98);
        assert_eq!(last.blocks_known, 98);
        assert_eq!(last.bytes_done, data.len() as u64);
        assert_eq!(last.bytes_total, data.len() as u64);
        assert_eq!((last.segments_done, last.segments_total), (1, 1));
        assert!(progress
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done && w[0].blocks_done <= w[1].blocks_done));
    }
}

#[tokio::test]
async fn slow_early_blocks_still_come_out_in_order() {
    // The first blocks are the slowest, so later ones finish first.
    let data = bytes(40 * BLOCK_DATA_LEN + 5, 16);
    let sf = plain(&data, 3);
    let net: Net = Arc::new(network(&sf.blocks));
    let order: HashMap<RoutingKey, u64> = sf
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (b.routing_key(), i as u64))
        .collect();
    let order = Arc::new(order);
    let fetch_block = move |key: RoutingKey| {
        let (net, order) = (net.clone(), order.clone());
        async move {
            let rank = order.get(&key).copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_micros(3000u64.saturating_sub(rank * 60))).await;
            net.get(&key).cloned().ok_or("missing")
        }
    };
    let got = veil::content::fetch(&sf.uri, 8, fetch_block).await.unwrap();
    assert!(got == data);
}

// --- decode_manifest never panics -------------------------------------------

fn sample_manifest_bytes() -> Vec<u8> {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE
        .get_or_init(|| {
            let data = bytes(5 * BLOCK_DATA_LEN + 3, 17);
            let sf = plain(&data, 2);
            let (_, plain) = sf.uri.decode_any(sf.blocks.last().unwrap()).unwrap();
            plain
        })
        .clone()
}

#[test]
fn decode_manifest_refuses_oversized_and_bad_versions() {
    assert!(matches!(
        decode_manifest(&vec![0u8; BLOCK_DATA_LEN + 1]),
        Err(ContentError::CorruptManifest(_))
    ));
    let good = sample_manifest_bytes();
    let mut m = decode_manifest(&good).unwrap();
    assert_eq!(encode_manifest(&m), good);
    // Trailing bytes.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode_manifest(&trailing).is_err());
    // A root length other than its layout stores.
    m.length += 1;
    assert!(matches!(
        decode_manifest(&encode_manifest(&m)),
        Err(ContentError::CorruptManifest(_))
    ));
    // A length beyond the file limit (version 1 says it in `length`).
    let mut v1 = root_of(&split_v1(&bytes(2 * BLOCK_DATA_LEN, 17), 2).unwrap());
    v1.length = MAX_FILE_LEN + 1;
    assert!(matches!(
        decode_manifest(&encode_manifest(&v1)),
        Err(ContentError::TooLarge { .. })
    ));
    // Version 1 with a fec field is corrupt.
    let mut v1 = root_of(&split_v1(&bytes(2 * BLOCK_DATA_LEN, 17), 2).unwrap());
    v1.fec = decode_manifest(&good).unwrap().fec;
    v1.version = MANIFEST_VERSION;
    let mut bytes_v1 = encode_manifest(&v1);
    let pos = bytes_v1.windows(2).position(|w| w == [0x61, b'v']).unwrap();
    bytes_v1[pos + 2] = 0x01;
    assert!(matches!(
        decode_manifest(&bytes_v1),
        Err(ContentError::CorruptManifest(_))
    ));
    // Depth beyond the limit.
    let mut m = decode_manifest(&good).unwrap();
    m.depth = MAX_DEPTH + 1;
    assert!(decode_manifest(&encode_manifest(&m)).is_err());
    // No entries.
    let mut m = decode_manifest(&good).unwrap();
    m.entries.clear();
    m.length = 0;
    assert!(decode_manifest(&encode_manifest(&m)).is_err());
    // A version this code does not read: patch the `v` value (the byte after
    // the "v" key, which follows the map head).
    let pos = good.windows(2).position(|w| w == [0x61, b'v']).unwrap();
    let mut v4 = good.clone();
    v4[pos + 2] = 0x04;
    assert!(matches!(
        decode_manifest(&v4),
        Err(ContentError::UnsupportedVersion(4))
    ));
    // A data entry longer than a block.
    let data = bytes(2 * BLOCK_DATA_LEN, 18);
    let sf = split(&data).unwrap();
    let mut m = root_of(&sf);
    m.entries[0].length += 1;
    m.entries[1].length -= 1;
    assert!(matches!(
        decode_manifest(&encode_manifest(&m)),
        Err(ContentError::CorruptManifest(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_manifest_never_panics_on_random_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let _ = decode_manifest(&data);
    }

    #[test]
    fn decode_manifest_never_panics_on_mutations(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut data = sample_manifest_bytes();
        for (at, byte) in edits {
            let i = at % data.len();
            data[i] = byte;
        }
        let _ = decode_manifest(&data);
        let _ = decode_manifest(&data[..cut % (data.len() + 1)]);
    }
}
