use std::collections::BTreeMap;
use std::convert::Infallible;

use super::*;
use crate::keys::{Edition, SskPrivate};

fn site() -> SskInsertUri {
    SskInsertUri {
        key: SskPrivate::from_seed([9; 32], [8; 32]),
        docname: "site".into(),
    }
}

/// A network holding the given editions of `site()`.
fn network(editions: &[u64]) -> (UskUri, BTreeMap<RoutingKey, Block>) {
    let insert = site();
    let mut held = BTreeMap::new();
    for &n in editions {
        let (target, _) = Chk::encode(format!("edition {n}").as_bytes()).unwrap();
        let (key, block, _) = sign_edition(&insert, n, &target).unwrap();
        held.insert(key, block);
    }
    (UskUri::of_insert(&insert, Edition::Latest).unwrap(), held)
}

fn probe(editions: &[u64], from: u64) -> (Option<u64>, usize) {
    let (usk, held) = network(editions);
    let mut asked = 0;
    let found = futures_lite(find_latest(&usk, from, |key| {
        asked += 1;
        let got = held.get(&key).cloned();
        async move { Ok::<_, Infallible>(got) }
    }))
    .unwrap();
    (found.map(|(n, _)| n), asked)
}

/// Run a future that never waits (the test network answers at once).
fn futures_lite<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn finds_the_latest_edition_within_bounds() {
    assert_eq!(probe(&[0, 1, 2], 0), (Some(2), 5));
    // Starting from a remembered edition asks fewer.
    assert_eq!(probe(&[0, 1, 2], 2), (Some(2), 3));
    // A single skipped edition is stepped over; two end the search.
    assert_eq!(probe(&[0, 2], 0).0, Some(2));
    assert_eq!(probe(&[0, 3], 0).0, Some(0));
    assert_eq!(probe(&[], 0), (None, PROBE_GAP as usize));
    // Never more than MAX_PROBES asks, however many editions exist.
    let many: Vec<u64> = (0..40).collect();
    assert_eq!(probe(&many, 0), (Some(MAX_PROBES - 1), MAX_PROBES as usize));
}

#[test]
fn edition_opens_to_its_redirect() {
    let (target, _) = Chk::encode(b"content").unwrap();
    let (key, block, usk) = sign_edition(&site(), 3, &target).unwrap();
    assert_eq!(usk.edition, Edition::Number(3));
    assert_eq!(usk.edition_uri(3).routing_key(), key);
    assert_eq!(open_edition(&usk, 3, &block).unwrap(), target);
    assert!(open_edition(&usk, 4, &block).is_err());
    // A signed block whose payload is not a URI is refused.
    let (_, junk) = site().key.sign("site-5", b"not a uri").unwrap();
    assert!(matches!(
        open_edition(&usk, 5, &junk),
        Err(UskError::BadRedirect(5))
    ));
}

#[test]
fn cache_remembers_per_node_and_site() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("usk.json");
    let (usk, _) = network(&[]);
    let mut cache = EditionCache::load(&path);
    assert_eq!(cache.get("127.0.0.1:1", &usk), None);
    cache.remember("127.0.0.1:1", &usk, 4).unwrap();
    cache.remember("127.0.0.1:1", &usk, 2).unwrap(); // never goes back
    let again = EditionCache::load(&path);
    assert_eq!(again.get("127.0.0.1:1", &usk), Some(4));
    assert_eq!(again.get("127.0.0.1:2", &usk), None);
    // The file does not name the site.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("site"));
    // A damaged file is an empty cache.
    std::fs::write(&path, b"{not json").unwrap();
    assert_eq!(EditionCache::load(&path).get("127.0.0.1:1", &usk), None);
}
