//! The signed block decoder: arbitrary bytes as a block (CBOR byte string or
//! raw), verified against the key it claims and opened. Never a panic; a
//! block that verifies under its claimed key must be a signed block whose
//! signature checks, so flipping any byte makes it fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::keys::{Block, SskPrivate, SSK_BLOCK_LEN};

fuzz_target!(|data: &[u8]| {
    // Through the wire decoder: a message that may carry a signed block.
    let _ = veil::message::Message::decode(data);
    // Raw bytes, padded or cut to a signed block's length.
    let mut bytes = data.to_vec();
    bytes.resize(SSK_BLOCK_LEN, 0);
    let Ok(block) = Block::from_bytes(bytes) else {
        panic!("a block of the signed length is refused");
    };
    let claimed = block.routing_key();
    if block.verify(&claimed).is_ok() {
        // Only possible for a real signature: check it is not malleable.
        let mut flipped = block.as_bytes().to_vec();
        flipped[SSK_BLOCK_LEN - 1] ^= 1;
        let flipped = Block::from_bytes(flipped).expect("same length");
        assert!(
            flipped.verify(&claimed).is_err(),
            "a flipped block verified"
        );
    }
    // Opening it under some subspace never panics.
    let key = SskPrivate::from_seed([1; 32], [2; 32]).public();
    let _ = key.decode("site-0", &block);
});
