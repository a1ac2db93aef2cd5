//! Erasure coding end to end over real `veil node` processes: a file whose
//! data blocks are partly missing from every store still comes back byte
//! for byte through `veil get`; with too many gone, the error names the
//! segment.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use veil::client::Client;
use veil::content::{split_with, top_copies, SplitOptions, TOP_COPIES};
use veil::keys::{Block, BLOCK_DATA_LEN};

/// Insert `blocks` through the node's client API.
fn insert(rt: &tokio::runtime::Runtime, node: &TestNode, blocks: Vec<Block>) {
    rt.block_on(async {
        let mut c = Client::connect(&node.client, Duration::from_secs(30))
            .await
            .unwrap();
        for block in blocks {
            c.insert(block).await.unwrap();
        }
    });
}

/// `veil get --node CLIENT URI -o OUT --retries N`.
fn get_into<'a>(client: &'a str, uri: &'a str, out: &'a Path, retries: &'a str) -> [&'a str; 8] {
    let out = out.to_str().unwrap();
    [
        "get",
        "--node",
        client,
        uri,
        "-o",
        out,
        "--retries",
        retries,
    ]
}

#[test]
fn check_blocks_stand_in_for_missing_data_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b) = TestNode::linked_pair(tmp.path(), &rt);

    // 40 data blocks in segments of at most 16: three segments of
    // 14 + 13 + 13 data blocks, each with as many check blocks.
    let opts = SplitOptions {
        segment: 16,
        ..SplitOptions::default()
    };
    let data = bytes(40 * BLOCK_DATA_LEN - 1000, 21);
    let sf = split_with(&data, &opts).unwrap();
    assert_eq!(sf.blocks.len(), 81);
    // Leaves in order: [14 data, 14 check], [13, 13], [13, 13], root.
    let segs = [(0usize, 14usize), (28, 13), (54, 13)];

    // 40% of every segment's data blocks never reach any store.
    let mut kept = Vec::new();
    for &(first, k) in &segs {
        for j in 0..2 * k {
            let dropped = j < k && j % 5 < 2;
            if !dropped {
                kept.push(sf.blocks[first + j].clone());
            }
        }
    }
    kept.push(sf.blocks[80].clone());
    insert(&rt, &a, kept);

    let out = tmp.path().join("out.bin");
    let uri = sf.uri.to_uri();
    let client = b.client.to_string();
    veil_ok(&get_into(&client, &uri, &out, "0"));
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");

    // Another file: its second segment keeps 12 of 26 blocks, one short
    // of the 13 it needs; the others are whole.
    let data = bytes(40 * BLOCK_DATA_LEN - 1000, 22);
    let sf = split_with(&data, &opts).unwrap();
    let mut kept = Vec::new();
    for (i, block) in sf.blocks.iter().enumerate() {
        if !(28..28 + 14).contains(&i) {
            kept.push(block.clone());
        }
    }
    insert(&rt, &a, kept);
    let out = tmp.path().join("out2.bin");
    let r = veil(&get_into(&client, &sf.uri.to_uri(), &out, "1"));
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("segment 2 of 3: 14 of 26 blocks unrecoverable, 12 obtained, 13 needed"),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
    assert!(!out.exists());
    // The whole segments before the lost one stay in the part file, for a
    // later run to resume from.
    let mut part = out.clone().into_os_string();
    part.push(".veil-part");
    assert!(
        std::path::Path::new(&part).exists(),
        "no part file to resume from"
    );

    // A manifest bomb's worth of declared size is refused by default.
    let r = veil(&[
        "get",
        "--node",
        &client,
        &sf.uri.to_uri(),
        "--max-size",
        "1MiB",
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("the limit is 1048576"), "{err}");
}

/// The top block is stored by no node, but a copy of it is (at its own
/// keys): `veil get` of the URI finds the copy through its signed pointer
/// and fetches the file. With neither the top block nor a copy it fails
/// with one line saying the URI's block was not found.
#[test]
fn a_copy_of_the_top_block_stands_in_when_no_node_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b) = TestNode::linked_pair(tmp.path(), &rt);
    let client = b.client.to_string();

    let data = bytes(5 * BLOCK_DATA_LEN + 77, 23);
    let sf = split_with(&data, &SplitOptions::default()).unwrap();
    let (top, rest) = sf.blocks.split_last().unwrap();
    let copies = top_copies(&sf.uri, top, TOP_COPIES).unwrap();
    // Only the last copy, block and pointer; never the top block itself.
    let last = copies.last().unwrap();
    let mut kept = rest.to_vec();
    kept.extend([last.block.clone(), last.pointer.clone()]);
    insert(&rt, &a, kept);

    let out = tmp.path().join("copy.bin");
    veil_ok(&get_into(&client, &sf.uri.to_uri(), &out, "0"));
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");

    // Another file, inserted without its top block or any copy.
    let data = bytes(3 * BLOCK_DATA_LEN, 24);
    let sf = split_with(&data, &SplitOptions::default()).unwrap();
    insert(&rt, &a, sf.blocks[..sf.blocks.len() - 1].to_vec());
    let r = veil(&["get", "--node", &client, &sf.uri.to_uri(), "--retries", "0"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&sf.uri.routing.to_base64()), "{err}");
    assert!(err.contains("not found"), "{err}");
}
