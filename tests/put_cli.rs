//! `veil put` as a new user tries it: a directory given as FILE is
//! inserted as a site (as `--dir`), with or without `--usk`, and `--usk`
//! given the request URI of an existing site is refused, saying which URI
//! to give, instead of publishing under a new key.

mod common;

use common::{runtime, veil, veil_ok, TestNode};

#[test]
fn put_takes_a_directory_and_refuses_a_request_uri_for_publishing() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = TestNode::linked_pair(tmp.path(), &rt);
    let (na, nb) = (a.dir.to_str().unwrap(), b.dir.to_str().unwrap());
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("img")).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>hi</h1>").unwrap();
    std::fs::write(site.join("img/a.txt"), b"a").unwrap();
    let site_s = site.to_str().unwrap();
    let cache = tmp.path().join("editions.json");
    let cache_s = cache.to_str().unwrap();

    // Plain `veil put DIR`: a directory's URI, its listing fetched back.
    let dir_uri = veil_ok(&["put", "--node", na, site_s]);
    let listing = veil_ok(&["get", "--node", nb, dir_uri.trim()]);
    assert!(
        listing.contains("index.html") && listing.contains("img/a.txt"),
        "{listing}"
    );

    // `--usk INSERT/site DIR` publishes edition 0 of the directory.
    let keys = veil_ok(&["keygen"]);
    let mut lines = keys.lines();
    let (insert, request) = (lines.next().unwrap(), lines.next().unwrap());
    let put_usk = |uri: String| {
        veil(&[
            "put",
            "--node",
            na,
            "--usk-cache",
            cache_s,
            "--usk",
            &uri,
            site_s,
        ])
    };
    let out = put_usk(format!("{insert}blog"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usk = String::from_utf8(out.stdout).unwrap();
    assert!(usk.trim().ends_with("/blog/0"), "{usk}");
    let page = veil_ok(&["get", "--node", nb, &format!("{}/index.html", usk.trim())]);
    assert_eq!(page, "<h1>hi</h1>");

    // The request URI where the insert URI belongs: refused, nothing new.
    let out = put_usk(format!("{request}blog"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a request URI published: {err}");
    assert!(
        err.contains("request URI") && err.contains("insert URI"),
        "{err}"
    );

    // Also for a site's first edition, where no earlier edition could give
    // the request URI away: the two URIs look different.
    let fresh = veil_ok(&["keygen"]);
    let request = fresh.lines().nth(1).unwrap();
    let out = put_usk(format!("{request}new"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a request URI published: {err}");
    assert!(
        err.contains("request URI") && err.contains(",insert/"),
        "{err}"
    );
}
