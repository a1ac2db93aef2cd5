//! `Chk::from_str` on arbitrary text: never a panic, and a parsed URI prints
//! back (`to_uri`) as the trimmed input and re-parses equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::keys::Chk;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(chk) = text.parse::<Chk>() else {
        return;
    };
    let uri = chk.to_uri();
    let back: Chk = uri.parse().expect("a printed URI parses");
    assert_eq!(back, chk, "printing and re-parsing changed the key");
    // Each key has exactly one URI: no second spelling (e.g. non-zero
    // trailing base64 bits) is accepted.
    assert_eq!(uri, text.trim(), "a non-canonical URI was accepted");
});
