//! The version-2 or -3 splitfile root: arbitrary bytes sealed as a root manifest
//! and fetched from a network that holds only that root. Never a panic;
//! an accepted root's erasure-coding layout adds up; the fetch ends in an
//! error (every other block is missing) without fetching more than the
//! root allows.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use veil::content::{
    decode_manifest, fetch_to_writer, FetchOptions, Layout, MAX_REDUNDANCY, MAX_SEGMENT,
};
use veil::keys::{BlockKind, Chk, BLOCK_DATA_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_manifest(data) {
        if let Some(fec) = m.fec {
            assert!((1..=MAX_SEGMENT).contains(&fec.segment));
            assert!(fec.redundancy <= MAX_REDUNDANCY);
            let layout = Layout::new(fec);
            assert_eq!(layout.stored_len(), m.length);
            let (mut data_blocks, mut check, mut segments) = (0u64, 0u64, 0u64);
            for seg in layout.iter().take(1 << 16) {
                assert!(seg.data >= 1 && seg.data <= usize::from(fec.segment));
                assert_eq!(seg.first_data, data_blocks);
                assert_eq!(seg.first_leaf, data_blocks + check);
                data_blocks += seg.data as u64;
                check += seg.check as u64;
                segments += 1;
            }
            if segments == layout.segments() {
                assert_eq!(data_blocks, layout.data_blocks());
                assert_eq!(check, layout.check_blocks());
            }
        }
    }
    if data.len() > BLOCK_DATA_LEN {
        return;
    }
    let Ok((uri, root)) = Chk::encode_kind(BlockKind::Manifest, data) else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let fetch_block = move |key| {
        counted.fetch_add(1, Ordering::Relaxed);
        std::future::ready(if key == root.routing_key() {
            Ok(root.clone())
        } else {
            Err("missing")
        })
    };
    let opts = FetchOptions {
        concurrency: 4,
        retries: 0,
        seed: Some(0),
        ..FetchOptions::default()
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let mut out = Vec::new();
    let got = rt.block_on(fetch_to_writer(&uri, &opts, fetch_block, &mut out, |_| {}));
    // Only a root that lists itself (impossible: its own key) could
    // succeed; everything else it names is missing.
    assert!(got.is_err());
    assert!(out.is_empty());
    // The root, then at most one level of distinct children (no more than
    // it has entries) before the first missing block stops the fetch.
    assert!(calls.load(Ordering::Relaxed) <= 1 + 419);
});
