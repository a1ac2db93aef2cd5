//! `Message::decode` on arbitrary bytes: never a panic, and anything that
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::message::{Message, MAX_MESSAGE_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    let again = msg.encode();
    assert!(
        again.len() <= MAX_MESSAGE_LEN,
        "a decoded message re-encodes to {} bytes, over the limit",
        again.len()
    );
    let back = Message::decode(&again).expect("a re-encoded message decodes");
    assert_eq!(back, msg, "re-encoding changed the message");
    // The encoder is deterministic: encode(decode(encode(m))) == encode(m).
    assert_eq!(back.encode(), again, "encoding is not a fixed point");
});
