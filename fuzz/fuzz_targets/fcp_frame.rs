//! `fcp::frame::decode` over arbitrary bytes, message after message: never
//! a panic, never a message taking no bytes, never more than the bounds;
//! and every decoded header re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::fcp::frame::{decode, MAX_FIELDS, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((msg, used))) = decode(rest, 1 << 20) {
        assert!(used > 0 && used <= rest.len() && used <= MAX_HEADER);
        assert!(msg.fields.len() <= MAX_FIELDS);
        let again = msg.encode();
        let (back, n) = decode(&again, 1 << 20)
            .expect("a re-encoded message decodes")
            .expect("a re-encoded message is whole");
        assert_eq!(n, again.len());
        assert_eq!(back.name, msg.name);
        assert_eq!(back.data_len, msg.data_len);
        // A payload follows the header: skip it as a connection would.
        let skip = msg.data_len.unwrap_or(0).min((rest.len() - used) as u64) as usize;
        rest = &rest[used + skip..];
    }
});
