//! `client::read_frame` over arbitrary bytes as an async stream, read as
//! requests (what a node reads) and as responses (what a client reads):
//! never a panic, never an endless loop, and each decoded frame's encoding
//! is a fixed point of decode-then-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use veil::client::{read_frame, write_frame, ClientRequest, ClientResponse, MAX_CLIENT_FRAME};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

async fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, value)
        .await
        .expect("a decoded frame re-encodes within the limit");
    out
}

async fn check<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let mut reader = data;
    // Each successful read consumes at least the 4-byte header, so this ends.
    for _ in 0..=data.len() / 4 {
        match read_frame::<_, T>(&mut reader).await {
            Ok(Some(value)) => {
                let once = encode(&value).await;
                assert!(once.len() <= 4 + MAX_CLIENT_FRAME);
                let mut r = once.as_slice();
                let back: T = read_frame(&mut r)
                    .await
                    .expect("a re-encoded frame reads")
                    .expect("a re-encoded frame is not end of stream");
                assert!(r.is_empty(), "re-encoded frame left bytes behind");
                assert_eq!(encode(&back).await, once, "encoding is not a fixed point");
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("read_frame returned frames without consuming input");
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        check::<ClientRequest>(data).await;
        check::<ClientResponse>(data).await;
    });
});
