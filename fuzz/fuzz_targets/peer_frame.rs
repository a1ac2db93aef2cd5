//! `PeerFrame::decode` on arbitrary bytes: never a panic, and anything that
//! decodes re-encodes to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil::message::PeerFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = PeerFrame::decode(data) else {
        return;
    };
    let again = frame.encode();
    let back = PeerFrame::decode(&again).expect("a re-encoded frame decodes");
    assert_eq!(back, frame, "re-encoding changed the frame");
    assert_eq!(back.encode(), again, "encoding is not a fixed point");
    if let PeerFrame::Hello { .. } = frame {
        // A hello has exactly one encoding.
        assert_eq!(again, data, "a hello decoded from non-canonical bytes");
    }
});
