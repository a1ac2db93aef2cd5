use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::content::{fetch_to_writer, split_with, FetchOptions, SplitOptions};
use crate::keys::BLOCK_DATA_LEN;

/// An in-memory network: the blocks it holds, and how many requests it saw.
#[derive(Clone, Default)]
struct Net {
    blocks: Arc<HashMap<RoutingKey, Block>>,
    asked: Arc<AtomicUsize>,
}

impl Net {
    fn holding(blocks: impl IntoIterator<Item = Block>) -> Net {
        Net {
            blocks: Arc::new(blocks.into_iter().map(|b| (b.routing_key(), b)).collect()),
            asked: Arc::default(),
        }
    }

    fn fetcher(
        &self,
    ) -> impl Fn(RoutingKey) -> std::future::Ready<Result<Block, String>> + Clone + Send + Sync + 'static
    {
        let net = self.clone();
        move |key| {
            net.asked.fetch_add(1, Ordering::Relaxed);
            std::future::ready(
                net.blocks
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| "not found".into()),
            )
        }
    }

    fn fetch(&self, uri: &Chk, opts: &FetchOptions) -> Result<Vec<u8>, ContentError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut out = Vec::new();
        rt.block_on(fetch_to_writer(uri, opts, self.fetcher(), &mut out, |_| {}))?;
        Ok(out)
    }
}

fn opts() -> FetchOptions {
    FetchOptions {
        retries: 1,
        backoff: Duration::from_millis(1),
        seed: Some(7),
        ..FetchOptions::default()
    }
}

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A file's blocks without its top block, and its copies.
fn without_top(data: &[u8]) -> (Chk, Vec<Block>, Vec<TopCopy>) {
    let sf = split_with(data, &SplitOptions::default()).unwrap();
    let top = sf.blocks.last().unwrap().clone();
    assert_eq!(top.routing_key(), sf.uri.routing);
    let copies = top_copies(&sf.uri, &top, TOP_COPIES).unwrap();
    let rest = sf.blocks[..sf.blocks.len() - 1].to_vec();
    (sf.uri, rest, copies)
}

#[test]
fn copies_are_deterministic_and_at_independent_keys() {
    let data = file(3 * BLOCK_DATA_LEN, 1);
    let (uri, _, copies) = without_top(&data);
    let (_, _, again) = without_top(&data);
    assert_eq!(copies.len(), usize::from(TOP_COPIES));
    let mut keys = vec![uri.routing];
    for (a, b) in copies.iter().zip(&again) {
        assert_eq!(
            (a.block.clone(), a.pointer.clone()),
            (b.block.clone(), b.pointer.clone())
        );
        assert!(a.pointer.is_signed());
        assert_eq!(a.pointer.routing_key(), pointer_key(&uri, a.index));
        a.pointer.verify(&pointer_key(&uri, a.index)).unwrap();
        keys.push(a.block.routing_key());
        keys.push(a.pointer.routing_key());
    }
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        1 + 2 * usize::from(TOP_COPIES),
        "every place differs"
    );
}

#[test]
fn any_one_copy_stands_in_for_a_lost_top_block() {
    for (len, seed) in [(3 * BLOCK_DATA_LEN + 5, 2), (1000, 3)] {
        let data = file(len, seed);
        let (uri, rest, copies) = without_top(&data);
        for only in &copies {
            let net = Net::holding(
                rest.iter()
                    .cloned()
                    .chain([only.block.clone(), only.pointer.clone()]),
            );
            assert_eq!(
                net.fetch(&uri, &opts()).unwrap(),
                data,
                "copy {}",
                only.index
            );
        }
    }
}

#[test]
fn without_the_top_block_or_a_copy_the_fetch_fails_with_its_own_cause() {
    let data = file(2 * BLOCK_DATA_LEN, 4);
    let (uri, rest, copies) = without_top(&data);
    // A pointer without its block is no copy either.
    let net = Net::holding(
        rest.into_iter()
            .chain(copies.iter().map(|c| c.pointer.clone())),
    );
    let err = net.fetch(&uri, &opts()).unwrap_err();
    match &err {
        ContentError::BlockUnavailable { key, source } => {
            assert_eq!(*key, uri.routing.to_base64());
            assert_eq!(source.to_string(), "not found");
        }
        other => panic!("{other}"),
    }
    // The top block once, then 2 rounds (retries 1, doubled for the top
    // block) of the block and every copy's block (its pointer read once),
    // after a first round of the 3 pointers and blocks: 1 + 6 + 2 * 4.
    assert_eq!(net.asked.load(Ordering::Relaxed), 15);
}

#[test]
fn without_copies_a_fetch_asks_as_before() {
    let data = file(2 * BLOCK_DATA_LEN, 5);
    let (uri, rest, _) = without_top(&data);
    let net = Net::holding(rest);
    let old = FetchOptions {
        top_copies: 0,
        ..opts()
    };
    assert!(net.fetch(&uri, &old).is_err());
    assert_eq!(
        net.asked.load(Ordering::Relaxed),
        3,
        "the block and its 2 retries"
    );
    // Nothing in the network at all, copies looked for: the pointers too.
    let empty = Net::default();
    assert!(empty.fetch(&uri, &opts()).is_err());
    assert_eq!(empty.asked.load(Ordering::Relaxed), 1 + 3 + 2 * 4);
    // A failure not worth retrying asks nothing more.
    let refused = FetchOptions {
        retry_if: |_| false,
        ..opts()
    };
    let none = Net::default();
    assert!(none.fetch(&uri, &refused).is_err());
    assert_eq!(none.asked.load(Ordering::Relaxed), 1);
}

#[test]
fn a_copy_that_is_not_the_top_block_is_refused() {
    let data = file(2 * BLOCK_DATA_LEN, 6);
    let (uri, rest, copies) = without_top(&data);
    // Anyone holding the URI can sign a pointer to a block of their own.
    let (_, forged) = Chk::encode(b"something else").unwrap();
    let mut payload = vec![POINTER_VERSION];
    payload.extend_from_slice(&forged.routing_key().0);
    let (_, pointer) = subspace(&uri, 1).sign(DOCNAME, &payload).unwrap();
    let key = read_pointer(&uri, 1, &pointer).unwrap();
    assert!(matches!(
        top_from_copy(&uri, 1, &key, &forged),
        Err(CopyError::Block(1, _))
    ));
    // Copy 2's block sealed under copy 2's key, offered as copy 1.
    let two = &copies[1];
    assert!(top_from_copy(&uri, 1, &two.block.routing_key(), &two.block).is_err());
    // A block sealed under copy 1's key with other content.
    let other = Chk::seal_under(&copy_key(&uri, 1), b"other").unwrap();
    assert!(matches!(
        top_from_copy(&uri, 1, &other.routing_key(), &other),
        Err(CopyError::NotTheTop(1))
    ));
    // A pointer of another subspace, and a malformed one.
    assert!(matches!(
        read_pointer(&uri, 2, &pointer),
        Err(CopyError::Pointer(2, _))
    ));
    let (_, short) = subspace(&uri, 1).sign(DOCNAME, &[POINTER_VERSION]).unwrap();
    assert!(matches!(
        read_pointer(&uri, 1, &short),
        Err(CopyError::Format(1))
    ));
    // Through a fetch: the forged copy is skipped, the good one used.
    let net = Net::holding(rest.iter().cloned().chain([
        pointer.clone(),
        forged.clone(),
        copies[2].block.clone(),
        copies[2].pointer.clone(),
    ]));
    assert_eq!(net.fetch(&uri, &opts()).unwrap(), data);
    // With only the forged one, the fetch fails.
    let net = Net::holding(rest.into_iter().chain([pointer, forged]));
    assert!(net.fetch(&uri, &opts()).is_err());
}
