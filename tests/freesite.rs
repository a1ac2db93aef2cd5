//! Directories (freesites) and the gateway over two real `veil node`
//! processes: `veil put --dir` through one node, `veil get URI/path` and
//! `veil get URI -o DIR` through the other, then the gateway that the
//! second node starts from `gateway = …` in its node.toml: browsing, index
//! pages, safety headers and rewriting, error pages, the progress page of
//! a large file, the status page and an upload of a tar archive.

mod common;
mod site;

use common::*;
use site::*;

#[test]
fn a_directory_goes_in_through_one_node_and_comes_back_through_another_and_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b, gw) = network(tmp.path(), &rt);
    let src = tmp.path().join("site");
    // big.bin is over the gateway's 1 MiB inline limit: a progress page.
    let files = make_site(&src, (1 << 20) + 5000);
    let (ca, cb) = (a.client.to_string(), b.client.to_string());

    let uri = veil_ok(&["put", "--node", &ca, "--dir", src.to_str().unwrap()]);
    let uri = uri.trim().to_string();
    assert!(uri.starts_with("CHK@"), "{uri}");

    // One file by its path, through the other node.
    let cat = veil(&["get", "--node", &cb, &format!("{uri}/img/cat.png")]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, PNG);
    // The listing, and the whole tree.
    let listing = veil_ok(&["get", "--node", &cb, &uri]);
    assert!(listing.contains("img/cat.png\timage/png\t"), "{listing}");
    assert!(listing.contains("index.html\ttext/html\t"), "{listing}");
    let out = tmp.path().join("out");
    veil_ok(&["get", "--node", &cb, &uri, "-o", out.to_str().unwrap()]);
    for (path, data) in &files {
        assert!(
            &std::fs::read(out.join(path)).unwrap() == data,
            "{path} differs"
        );
    }
    // A path that is not there, and one that tries to climb out.
    let missing = veil(&["get", "--node", &cb, &format!("{uri}/nope.html")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no file or folder"));
    let climb = veil(&["get", "--node", &cb, &format!("{uri}/../x")]);
    assert!(!climb.status.success());

    // The gateway: its home page, with the safety headers.
    let home = get(gw, "/");
    assert_eq!(home.status, 200);
    let csp = home.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'none'") && csp.contains("default-src 'self'"));
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    // A folder without its '/' is redirected; with it, index.html is served,
    // rewritten: no script, the outside image and link sent to the warning.
    let bare = get(gw, &format!("/{uri}"));
    assert_eq!(bare.status, 308);
    assert_eq!(bare.header("location"), Some(format!("/{uri}/").as_str()));
    let index = get(gw, &format!("/{uri}/"));
    assert_eq!(index.status, 200);
    assert!(index.header("content-security-policy").is_some());
    let html = index.text();
    assert!(html.contains("href=\"page2.html\"") && html.contains("src=\"img/cat.png\""));
    assert!(!html.contains("<script") && !html.contains("\"http://example.invalid"));
    assert!(html.contains("src=\"/external?url=http%3A%2F%2Fexample%2Einvalid%2Fx%2Epng\""));
    let png = get(gw, &format!("/{uri}/img/cat.png"));
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.body, PNG);
    let folder = get(gw, &format!("/{uri}/img/"));
    assert!(folder.text().contains("<a href=\"cat%2Epng\">cat.png</a>"));
    let warning = get(gw, "/external?url=http%3A%2F%2Fexample.invalid%2F");
    assert!(warning.text().contains("leaves veil") && !warning.text().contains("<a href=\"http"));

    // Error pages.
    let nope = get(gw, &format!("/{uri}/nope.html"));
    assert_eq!(nope.status, 404);
    assert!(nope.text().contains("Not found"));
    let bad = get(gw, "/CHK@garbage");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("Bad URI"));
    // A request naming another host (DNS rebinding) is refused.
    let rebind = raw_host(gw, "evil.example:8888");
    assert_eq!(rebind, 421);

    // A large file: a progress page, then the bytes.
    let big = get(gw, &format!("/{uri}/big.bin"));
    assert_eq!(big.status, 303);
    let progress = big.header("location").unwrap().to_string();
    let done = wait_job(gw, &progress);
    assert!(done.text().contains("/result/"), "{}", done.text());
    let result = get(gw, &progress.replace("progress", "result"));
    assert!(result.body == files[3].1, "big.bin differs");

    // Status.
    let status = get(gw, "/status");
    assert_eq!(status.status, 200);
    assert!(
        status.text().contains("Peers (1 of 1 connected)"),
        "{}",
        status.text()
    );

    // Upload a site as a tar archive; its URI serves its index.html.
    let tar = tar_of(&files[..3]);
    let (ctype, body) = multipart("tar", "site.tar", &tar);
    let posted = http(
        gw,
        "POST",
        "/insert",
        &format!("Content-Type: {ctype}\r\n"),
        &body,
    );
    assert_eq!(posted.status, 303, "{}", posted.text());
    let done = wait_job(gw, posted.header("location").unwrap()).text();
    let start = done.find("<code id=\"uri\">").expect("a URI") + "<code id=\"uri\">".len();
    let new_uri = &done[start..start + done[start..].find('<').unwrap()];
    assert!(
        new_uri.starts_with("CHK@") && new_uri.ends_with('/'),
        "{new_uri}"
    );
    let page2 = get(gw, &format!("/{new_uri}page2.html"));
    assert!(page2.text().contains("Page two"));
    // A site under a USK: `-1` redirects (303) to the newest edition,
    // keeping the path; the edition serves its pages.
    let cache = tmp.path().join("usk-cache.json");
    let site = new_site_key();
    let usk0 = veil_ok(&[
        "put",
        "--node",
        &ca,
        "--usk-cache",
        cache.to_str().unwrap(),
        "--usk",
        &site,
        "--dir",
        src.to_str().unwrap(),
    ]);
    let usk0 = usk0.trim();
    assert!(
        usk0.starts_with("USK@") && usk0.ends_with("/site/0"),
        "{usk0}"
    );
    let latest = usk0.replace("/site/0", "/site/-1");
    let moved = get(gw, &format!("/{latest}/img/cat.png"));
    assert_eq!(moved.status, 303, "{}", moved.text());
    assert_eq!(
        moved.header("location"),
        Some(format!("/{usk0}/img/cat%2Epng").as_str())
    );
    let top = get(gw, &format!("/{latest}/"));
    assert_eq!(top.header("location"), Some(format!("/{usk0}/").as_str()));
    let page2 = get(gw, &format!("/{usk0}/page2.html"));
    assert!(page2.text().contains("Page two"));
    let nothing = get(gw, &format!("/{}/", latest.replace("/site/", "/other/")));
    assert_eq!(nothing.status, 404, "{}", nothing.text());

    // A cross-site form post is refused.
    let csrf = http(
        gw,
        "POST",
        "/insert",
        &format!("Origin: http://evil.example\r\nContent-Type: {ctype}\r\n"),
        &body,
    );
    assert_eq!(csrf.status, 403);
    drop((a, b));
}

/// The status of a request whose only Host header is `host`.
fn raw_host(addr: std::net::SocketAddr, host: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Edition 0 of a site (three files) through one node with `put --dir
/// --usk`, edition 1 from another directory through a second with `veil
/// update KEY DIR`, and from a third node `get USK@…/site/-1/PATH` and the
/// whole tree: edition 1's files byte for byte, edition 0 still there.
#[test]
fn a_site_under_a_usk_is_updated_and_its_newest_edition_fetched_from_a_third_node() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut nodes: Vec<TestNode> = (0..3)
        .map(|i| TestNode::init(tmp.path(), &format!("n{i}"), (i as f64 + 0.5) / 3.0))
        .collect();
    nodes[0].befriend(&nodes[1]);
    nodes[1].befriend(&nodes[2]);
    for n in &mut nodes {
        n.set("anonymity = \"none\"");
        n.start(&[]);
    }
    for (n, peers) in nodes.iter().zip([1, 2, 1]) {
        n.wait_peers(&rt, peers);
    }
    let (v0, v1) = (tmp.path().join("v0"), tmp.path().join("v1"));
    let old = make_site(&v0, 0);
    let new = make_site_v1(&v1);
    let site = new_site_key();
    // `veil CMD --node N --usk-cache CACHE-N ARGS…`, stdout trimmed.
    let run = |cmd: &str, i: usize, args: &[&str]| {
        let (node, cache) = (
            nodes[i].client.to_string(),
            tmp.path().join(format!("cache-{i}.json")),
        );
        let mut all = vec![cmd, "--node", &node, "--usk-cache", cache.to_str().unwrap()];
        all.extend_from_slice(args);
        veil(&all)
    };
    let ok = |out: std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };

    let usk0 = ok(run(
        "put",
        0,
        &["--usk", &site, "--dir", v0.to_str().unwrap()],
    ));
    assert!(usk0.ends_with("/site/0"), "{usk0}");
    let usk1 = ok(run("update", 1, &[&site, v1.to_str().unwrap()]));
    assert_eq!(usk1, usk0.replace("/site/0", "/site/1"));

    let latest = usk0.replace("/site/0", "/site/-1");
    let index = run("get", 2, &[&format!("{latest}/index.html")]);
    assert!(String::from_utf8_lossy(&index.stderr).contains("edition 1"));
    assert!(index.stdout == new[0].1, "-1/index.html is not edition 1's");
    let out = tmp.path().join("out");
    ok(run("get", 2, &[&latest, "-o", out.to_str().unwrap()]));
    for (path, data) in &new {
        assert!(&std::fs::read(out.join(path)).unwrap() == data, "{path}");
    }
    assert!(
        !out.join("page2.html").exists(),
        "edition 0's page came along"
    );
    // Edition 0 is still edition 0.
    let page2 = run("get", 2, &[&format!("{usk0}/page2.html")]);
    assert!(page2.stdout == old[1].1);
}

#[test]
fn a_gateway_on_a_public_address_needs_public() {
    let out = veil(&["gateway", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public"));
}
