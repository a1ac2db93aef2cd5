//! `decode_manifest` on arbitrary bytes: never a panic; anything accepted
//! satisfies the documented checks, fits in one block when re-encoded, and
//! decodes back to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::content::{decode_manifest, encode_manifest, MAX_DEPTH, MAX_FILE_LEN};
use veil::keys::BLOCK_DATA_LEN;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode_manifest(data) else {
        return;
    };
    assert!(m.depth <= MAX_DEPTH);
    assert!((1..=veil::content::manifest::max_fanout(m.version)).contains(&m.entries.len()));
    // Version 2 roots state the file's length in `fec`; `length` also
    // counts check blocks.
    assert!(m.fec.map_or(m.length, |f| f.file_length) <= MAX_FILE_LEN);
    if let Some(fec) = m.fec {
        assert_eq!(veil::content::Layout::new(fec).stored_len(), m.length);
    }
    assert!(m.entries.iter().all(|e| e.length > 0));
    assert_eq!(m.entries.iter().map(|e| e.length).sum::<u64>(), m.length);

    let again = encode_manifest(&m);
    assert!(
        again.len() <= BLOCK_DATA_LEN,
        "an accepted manifest re-encodes to {} bytes, more than a block",
        again.len()
    );
    let back = decode_manifest(&again).expect("a re-encoded manifest decodes");
    assert_eq!(back, m, "re-encoding changed the manifest");
    assert_eq!(
        encode_manifest(&back),
        again,
        "encoding is not a fixed point"
    );
});
