//! `decode_manifest` on arbitrary bytes: never a panic; anything accepted
//! satisfies the documented checks, fits in one block when re-encoded, and
//! decodes back to the same manifest. Covers versions 1 to 3 (version 3
//! adds `checks`, the check blocks over child manifests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::content::{decode_manifest, encode_manifest, MAX_DEPTH, MAX_FILE_LEN};
use veil::keys::BLOCK_DATA_LEN;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode_manifest(data) else {
        return;
    };
    assert!(m.depth <= MAX_DEPTH);
    let fanout = veil::content::manifest::max_fanout(m.version);
    assert!(!m.entries.is_empty() && m.entries.len() + m.checks.len() <= fanout);
    // Version 3: check blocks over child manifests only, each a full block,
    // at most 300% of the children; none before version 3.
    if m.version < veil::content::MANIFEST_VERSION || m.depth == 0 {
        assert!(m.checks.is_empty());
    }
    assert!(m.checks.len() <= 3 * m.entries.len());
    assert!(m.checks.iter().all(|c| c.length == BLOCK_DATA_LEN as u64));
    // Version 2 and 3 roots state the file's length in `fec`; `length`
    // also counts the leaves' check blocks (never the manifests' checks).
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
