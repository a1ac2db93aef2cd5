//! `Sealed::from_cell_bytes` (what a hop or the originator reads out of a
//! cell it opened) on arbitrary bytes: never a panic, and anything that
//! decodes re-encodes into a cell of a legal size that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::message::{Cell, Sealed};

fuzz_target!(|data: &[u8]| {
    let Ok(sealed) = Sealed::from_cell_bytes(data) else {
        return;
    };
    let bytes = sealed
        .to_cell_bytes()
        .expect("a decoded plaintext re-encodes");
    assert!(
        Cell::from_bytes(bytes.clone()).is_ok(),
        "re-encoded to an illegal size"
    );
    let back = Sealed::from_cell_bytes(&bytes).expect("a re-encoded plaintext decodes");
    assert_eq!(back, sealed, "re-encoding changed the plaintext");
});
