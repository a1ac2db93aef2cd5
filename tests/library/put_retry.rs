//! `put_stream` against a scripted node on a Unix socket: a block whose
//! insert fails in a way another attempt may not meet is tried again, a
//! block that cannot succeed is not, and the put says how many of each.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use veil::client::transfer::{self, TransferError, INSERT_ATTEMPTS};
use veil::client::{read_frame, write_frame, ClientError, ClientRequest, ClientResponse, Endpoint};
use veil::content::SplitOptions;
use veil::keys::RoutingKey;
use veil::routing::Failure;

/// Answers every insert of a routing key with `answer(attempt)`, where
/// `attempt` counts that key's inserts from 0. Returns the attempts per key.
fn scripted_node(
    path: &Path,
    answer: fn(usize) -> ClientResponse,
) -> Arc<Mutex<HashMap<RoutingKey, usize>>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen: Arc<Mutex<HashMap<RoutingKey, usize>>> = Arc::default();
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                while let Ok(Some(req)) = read_frame::<_, ClientRequest>(&mut conn).await {
                    let ClientRequest::Insert { block } = req else {
                        return;
                    };
                    let attempt = {
                        let mut c = counts.lock().unwrap();
                        let n = c.entry(block.routing_key()).or_insert(0);
                        *n += 1;
                        *n - 1
                    };
                    if write_frame(&mut conn, &answer(attempt)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

async fn put(node: &Endpoint, data: &[u8]) -> (Result<(), TransferError>, transfer::PutProgress) {
    let last = Arc::new(Mutex::new(transfer::PutProgress::default()));
    let seen = last.clone();
    let input = std::io::Cursor::new(data.to_vec());
    let split = SplitOptions::default();
    let put = transfer::put_stream(node, input, data.len() as u64, 16, &split, move |p| {
        *seen.lock().unwrap() = p;
    })
    .await;
    let p = *last.lock().unwrap();
    (put.map(|_| ()), p)
}

#[tokio::test]
async fn an_insert_that_failed_along_its_path_is_tried_again_and_the_put_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("client.sock");
    // Every block's first insert fails further along its path; the second
    // is stored.
    let seen = scripted_node(&path, |attempt| match attempt {
        0 => ClientResponse::NetworkFailed(Failure::NotStored),
        _ => ClientResponse::Inserted,
    });
    let node = Endpoint::Unix { path };
    let data = crate::common::bytes(200_000, 3);
    let (put, p) = put(&node, &data).await;
    put.expect("a put whose blocks each failed once");
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 8, "only {} blocks", seen.len());
    assert!(seen.values().all(|&n| n == 2), "{:?}", seen.values());
    assert_eq!(p.blocks_failed, 0);
    assert_eq!(p.blocks_retried, seen.len() as u64);
    assert_eq!(p.copies_done, p.copies_total);
}

#[tokio::test]
async fn an_insert_that_keeps_failing_is_tried_a_bounded_number_of_times() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("client.sock");
    let seen = scripted_node(&path, |_| {
        ClientResponse::NetworkFailed(Failure::Overloaded)
    });
    let node = Endpoint::Unix { path };
    let data = crate::common::bytes(50_000, 4);
    let (put, p) = put(&node, &data).await;
    let Err(TransferError::InsertFailed {
        failed,
        total,
        first,
    }) = put
    else {
        panic!("a put the node always refuses: {put:?}");
    };
    assert!(matches!(first, ClientError::Network(Failure::Overloaded)));
    assert_eq!(failed, total - 1, "every block but the root fails");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, failed, "the root is never sent");
    assert!(seen.values().all(|&n| n == INSERT_ATTEMPTS as usize));
    assert_eq!(p.blocks_retried, failed * u64::from(INSERT_ATTEMPTS - 1));
}

#[tokio::test]
async fn a_block_that_cannot_succeed_is_not_tried_again() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("client.sock");
    let seen = scripted_node(&path, |_| ClientResponse::NetworkFailed(Failure::Collision));
    let node = Endpoint::Unix { path };
    let data = crate::common::bytes(50_000, 5);
    let (put, p) = put(&node, &data).await;
    assert!(
        matches!(put, Err(TransferError::InsertFailed { .. })),
        "{put:?}"
    );
    assert!(seen.lock().unwrap().values().all(|&n| n == 1));
    assert_eq!(p.blocks_retried, 0);
}
