//! Streaming put and get: the streamed split is the in-memory split, its
//! buffers are bounded by a segment, and an interrupted get resumes from
//! its part file, fetching fewer blocks and giving the exact bytes. Then
//! the same through `veil put` (a file and stdin) and `veil get` (a file,
//! resumed after a failure, and stdout) over two real nodes.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use veil::client::Client;
use veil::content::{
    fetch_to_path, part_path, record_path, split_with, ContentError, FetchOptions, SplitOptions,
    Splitter,
};
use veil::keys::{Block, RoutingKey, BLOCK_DATA_LEN};

const B: usize = BLOCK_DATA_LEN;

fn small_segments() -> SplitOptions {
    SplitOptions {
        segment: 8,
        fanout: 8,
        ..SplitOptions::default()
    }
}

#[test]
fn a_streamed_split_is_the_in_memory_split_and_holds_one_segment_at_a_time() {
    for (len, opts) in [
        (0, SplitOptions::default()),
        (B, SplitOptions::default()),
        (3 * B + 17, SplitOptions::default()),
        (61 * B - 5, small_segments()),
    ] {
        let data = bytes(len, len as u64);
        let whole = split_with(&data, &opts).unwrap();
        let mut splitter = Splitter::new(&data[..], len as u64, &opts).unwrap();
        let total = splitter.total_blocks();
        let mut streamed: Vec<Block> = Vec::new();
        while let Some(seg) = splitter.next_segment().unwrap() {
            // The structural bound: one segment's leaves (8 data + 8 check
            // here, at most 128 + 128 by default) and the manifests it closed.
            assert!(seg.leaves.len() <= 2 * usize::from(opts.segment), "{len}");
            // Each manifest closed brings its check blocks (version 3).
            let closed = 1 + usize::from(veil::content::MAX_DEPTH);
            assert!(seg.manifests.len() <= closed * opts.fanout);
            streamed.extend(seg.leaves);
            streamed.extend(seg.manifests.into_iter().map(|(_, b)| b));
        }
        let end = splitter.finish().unwrap();
        streamed.extend(end.manifests.into_iter().map(|(_, b)| b));
        streamed.push(end.root);
        assert_eq!(end.uri, whole.uri, "{len} bytes: another URI");
        assert_eq!(streamed.len() as u64, total, "{len} bytes");
        let key_set = |bs: &[Block]| -> std::collections::BTreeSet<[u8; 32]> {
            bs.iter().map(|b| b.routing_key().0).collect()
        };
        assert_eq!(key_set(&streamed), key_set(&whole.blocks), "{len} bytes");
    }
}

#[test]
fn an_input_that_changes_length_while_read_is_refused() {
    let data = bytes(10 * B, 3);
    let opts = small_segments();
    let drain = |mut s: Splitter<&[u8]>| -> Result<(), ContentError> {
        while s.next_segment()?.is_some() {}
        s.finish().map(|_| ())
    };
    let shrunk = Splitter::new(&data[..9 * B], 10 * B as u64, &opts).unwrap();
    assert!(matches!(
        drain(shrunk),
        Err(ContentError::InputShort { .. })
    ));
    let grown = Splitter::new(&data[..], 10 * B as u64 - 1, &opts).unwrap();
    assert!(matches!(drain(grown), Err(ContentError::InputLong { .. })));
}

type Net = Arc<HashMap<RoutingKey, Block>>;

/// Blocks with their places in a split's block list.
type Numbered = Vec<(usize, Block)>;

/// A fetcher over `net` that counts its calls and fails every call past
/// `fail_after` (a node gone mid-way).
fn fetcher(
    net: Net,
    calls: Arc<AtomicUsize>,
    fail_after: usize,
) -> impl Fn(RoutingKey) -> std::future::Ready<Result<Block, String>> + Clone + Send + Sync {
    move |key| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n >= fail_after {
            Err("the node went away".to_string())
        } else {
            net.get(&key)
                .cloned()
                .ok_or_else(|| "not found".to_string())
        })
    }
}

/// A file of `len` bytes split in small segments, its blocks as a network,
/// an output path in a fresh directory, and fetch options.
fn fixture(
    len: usize,
    seed: u64,
    concurrency: usize,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<u8>,
    veil::content::SplitFile,
    Net,
    FetchOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    let data = bytes(len, seed);
    let sf = split_with(&data, &small_segments()).unwrap();
    let net: Net = Arc::new(
        sf.blocks
            .iter()
            .map(|b| (b.routing_key(), b.clone()))
            .collect(),
    );
    let opts = FetchOptions {
        concurrency,
        retries: 0,
        seed: Some(seed),
        ..FetchOptions::default()
    };
    (dir, out, data, sf, net, opts)
}

#[test]
fn an_interrupted_get_resumes_from_its_part_file() {
    // 80 data blocks in 10 segments of 8 (+8 check blocks each).
    let (dir, out, data, sf, net, opts) = fixture(80 * B - 100, 9, 1);
    let rt = runtime();

    // The whole file, uninterrupted: how many requests it takes.
    let calls = Arc::new(AtomicUsize::new(0));
    let whole = dir.path().join("whole.bin");
    let f = fetcher(net.clone(), calls.clone(), usize::MAX);
    rt.block_on(fetch_to_path(&sf.uri, &opts, f, &whole, |_| {}))
        .unwrap();
    assert!(std::fs::read(&whole).unwrap() == data);
    let full = calls.load(Ordering::SeqCst);

    // Interrupted: the node goes away after 60 requests.
    let calls = Arc::new(AtomicUsize::new(0));
    let f = fetcher(net.clone(), calls.clone(), 60);
    let e = rt
        .block_on(fetch_to_path(&sf.uri, &opts, f, &out, |_| {}))
        .unwrap_err();
    assert!(
        matches!(e, ContentError::SegmentUnrecoverable { .. }),
        "{e}"
    );
    assert!(
        !out.exists(),
        "no file under the final name before it is whole"
    );
    let part = std::fs::metadata(part_path(&out)).unwrap().len();
    assert!(
        part > 0 && part.is_multiple_of(8 * B as u64),
        "whole segments: {part}"
    );
    assert!(record_path(&out).exists());

    // Resumed: fewer requests, the exact bytes, no part file left.
    let calls = Arc::new(AtomicUsize::new(0));
    let f = fetcher(net.clone(), calls.clone(), usize::MAX);
    let got = rt
        .block_on(fetch_to_path(&sf.uri, &opts, f, &out, |_| {}))
        .unwrap();
    let resumed = calls.load(Ordering::SeqCst);
    assert!(got.segments_resumed >= 1, "{got:?}");
    assert_eq!(got.bytes_resumed, part);
    assert!(
        resumed + (got.segments_resumed as usize) * 8 <= full,
        "resumed {resumed} + skipped vs {full}"
    );
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    assert!(!part_path(&out).exists() && !record_path(&out).exists());
}

#[test]
fn a_damaged_part_file_is_fetched_again_from_the_damage_on() {
    let (_dir, out, data, sf, net, opts) = fixture(40 * B, 11, 2);
    let rt = runtime();
    let f = fetcher(net.clone(), Arc::new(AtomicUsize::new(0)), 30);
    assert!(rt
        .block_on(fetch_to_path(&sf.uri, &opts, f, &out, |_| {}))
        .is_err());
    // Flip one byte of the first segment: nothing from there on is kept.
    let part = part_path(&out);
    let mut bytes_on_disk = std::fs::read(&part).unwrap();
    assert!(bytes_on_disk.len() >= 8 * B);
    bytes_on_disk[3 * B + 7] ^= 1;
    std::fs::write(&part, &bytes_on_disk).unwrap();
    let f = fetcher(net, Arc::new(AtomicUsize::new(0)), usize::MAX);
    let got = rt
        .block_on(fetch_to_path(&sf.uri, &opts, f, &out, |_| {}))
        .unwrap();
    assert_eq!(got.segments_resumed, 0);
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
}

/// Run `veil ARGS` with `stdin` as its standard input, within a deadline.
fn veil_with_stdin(args: &[&str], stdin: std::fs::File) -> std::process::Output {
    let mut child = Command::new(VEIL)
        .args(args)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let mut guard = KillOnDrop::new(child);
    let read = |pipe: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = std::io::Read::read_to_end(&mut p, &mut buf);
            }
            buf
        })
    };
    let out = read(out);
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = err {
            let _ = std::io::Read::read_to_end(&mut p, &mut buf);
        }
        buf
    });
    let end = Instant::now() + VEIL_DEADLINE;
    let status = loop {
        if let Some(s) = guard.try_wait() {
            break s;
        }
        assert!(Instant::now() < end, "veil {args:?} did not finish; killed");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[test]
fn put_and_get_stream_through_two_nodes_and_a_failed_get_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b) = TestNode::linked_pair(tmp.path(), &rt);
    let (ca, cb) = (a.client.to_string(), b.client.to_string());

    // A file and the same bytes on stdin: one URI, and it fetches back.
    let data = bytes(300 * B + 5, 4);
    let src = tmp.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let uri = veil_ok(&["put", "--node", &ca, src.to_str().unwrap()]);
    let piped = veil_with_stdin(
        &["put", "--node", &ca, "-"],
        std::fs::File::open(&src).unwrap(),
    );
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(String::from_utf8(piped.stdout).unwrap(), uri);
    let uri = uri.trim();
    let out = tmp.path().join("out.bin");
    veil_ok(&["get", "--node", &cb, uri, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    let streamed = veil(&["get", "--node", &cb, uri, "-o", "-"]);
    assert!(streamed.status.success());
    assert!(streamed.stdout == data, "stdout differs");

    // A file whose third segment is missing from every store: the get
    // fails there, keeping two segments; once the blocks are in, the same
    // command resumes after them.
    let data = bytes(40 * B, 8);
    let opts = small_segments();
    let sf = split_with(&data, &opts).unwrap();
    // Leaves: 5 segments of 8 + 8; the third is leaves 32..48.
    let (missing, present): (Numbered, Numbered) = sf
        .blocks
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| (32..48).contains(i));
    let insert = |blocks: Numbered| {
        rt.block_on(async {
            let mut c = Client::connect(&a.client, Duration::from_secs(30))
                .await
                .unwrap();
            for (_, block) in blocks {
                c.insert(block).await.unwrap();
            }
        })
    };
    insert(present);
    let out = tmp.path().join("resumed.bin");
    let args = [
        "get",
        "--node",
        &cb,
        &sf.uri.to_uri(),
        "-o",
        out.to_str().unwrap(),
        "--retries",
        "0",
        "--concurrency",
        "4",
    ];
    let failed = veil(&args);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("segment 3 of 5") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(part_path(&out)).unwrap().len(),
        16 * B as u64
    );
    insert(missing);
    let done = veil(&args);
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(err.contains("resumed: 2 segments"), "{err}");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the resumed file differs"
    );
}
