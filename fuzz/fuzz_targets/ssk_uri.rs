//! The SSK and USK URI parsers on arbitrary text: never a panic, and any
//! URI that parses prints back to a URI that re-parses equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::keys::{SskInsertUri, SskUri, UskUri};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(usk) = text.parse::<UskUri>() {
        let back: UskUri = usk.to_string().parse().expect("a printed USK parses");
        assert_eq!(back, usk, "printing and re-parsing changed the USK");
    }
    if let Ok(ssk) = text.parse::<SskUri>() {
        let back: SskUri = ssk.to_string().parse().expect("a printed SSK parses");
        assert_eq!(back, ssk, "printing and re-parsing changed the SSK");
    }
    if let Ok(insert) = text.parse::<SskInsertUri>() {
        let back: SskInsertUri = insert
            .to_string()
            .parse()
            .expect("a printed insert URI parses");
        assert_eq!(
            back.public(),
            insert.public(),
            "re-parsing changed the key pair"
        );
    }
});
