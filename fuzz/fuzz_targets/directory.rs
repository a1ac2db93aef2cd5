//! Directory documents, `KEY/path` addresses and the gateway's HTML
//! rewriting over arbitrary bytes: never a panic; a decoded directory
//! re-encodes to a document that decodes to the same directory; a parsed
//! address (CHK, SSK or USK key) has a path that passes the directory path
//! check and prints back to the same key and path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::client::address::Address;
use veil::content::dir::{check_path, Directory};
use veil::gateway::rewrite::rewrite_html;

fuzz_target!(|data: &[u8]| {
    let mut doc = veil::content::dir::DIR_MAGIC.to_vec();
    doc.extend_from_slice(data);
    for bytes in [data, doc.as_slice()] {
        if let Ok(dir) = Directory::decode(bytes) {
            let again = Directory::decode(&dir.encode()).expect("a re-encoded directory decodes");
            assert_eq!(again, dir);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(addr) = text.parse::<Address>() {
            assert!(addr.path.is_empty() || check_path(&addr.path).is_ok());
            // CHK, SSK and USK addresses print back to the same key and path.
            let back: Address = addr.to_uri().parse().expect("a printed address parses");
            assert_eq!((&back.key, &back.path), (&addr.key, &addr.path));
        }
    }
    if data.len() <= 4096 {
        let _ = rewrite_html(data);
    }
});
