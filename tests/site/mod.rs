//! Shared by the freesite and browser tests: a two-node network whose
//! second node runs the gateway (from `gateway = …` in its node.toml), a
//! small site, and a minimal HTTP/1.1 client for loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// An 8x8 PNG (red), so a browser really shows an image.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x02, 0x00, 0x00, 0x00, 0x4b, 0x6d, 0x29,
    0xdc, 0x00, 0x00, 0x00, 0x11, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x38, 0xa3, 0xa4, 0x84,
    0x15, 0x31, 0x0c, 0x2d, 0x09, 0x00, 0xbc, 0xce, 0x44, 0x01, 0x43, 0x5d, 0x0c, 0xd5, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

pub const INDEX: &str = r#"<!DOCTYPE html><html><head><title>Cat site</title></head><body>
<h1 id="title">The cat site</h1>
<p><a id="next" href="page2.html">Second page</a></p>
<p><img id="cat" src="img/cat.png" alt="cat"></p>
<p><img id="ext" src="http://example.invalid/x.png" alt="outside"></p>
<p><a id="out" href="https://example.invalid/">Outside</a></p>
<script>document.title = "scripted";</script>
</body></html>"#;

pub const PAGE2: &str = r#"<!DOCTYPE html><html><head><title>Page two</title></head><body>
<h1 id="title">Page two</h1><p><a href="index.html">back</a></p></body></html>"#;

/// Write the test site under `dir`: index.html, page2.html, img/cat.png,
/// and `big.bin` (`big` bytes; 0 leaves it out).
pub fn make_site(dir: &Path, big: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("index.html".to_string(), INDEX.as_bytes().to_vec()),
        ("page2.html".to_string(), PAGE2.as_bytes().to_vec()),
        ("img/cat.png".to_string(), PNG.to_vec()),
    ];
    if big > 0 {
        files.push(("big.bin".to_string(), bytes(big, 7)));
    }
    for (path, data) in &files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

/// Edition 1 of the site: another index.html (linking news.html) and
/// the image; page2.html is gone.
pub const INDEX_V1: &str = r#"<!DOCTYPE html><html><head><title>Cat site 1</title></head><body>
<h1 id="title">The cat site, edition 1</h1>
<p><a id="next" href="news.html">News</a></p>
<p><img id="cat" src="img/cat.png" alt="cat"></p>
</body></html>"#;

pub const NEWS: &str = r#"<!DOCTYPE html><html><head><title>News</title></head><body>
<h1 id="title">News of edition 1</h1></body></html>"#;

/// Write edition 1 of the test site under `dir`.
pub fn make_site_v1(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("index.html".to_string(), INDEX_V1.as_bytes().to_vec()),
        ("news.html".to_string(), NEWS.as_bytes().to_vec()),
        ("img/cat.png".to_string(), PNG.to_vec()),
    ];
    for (path, data) in &files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

/// A fresh key pair's insert URI for a site named `site`
/// (`SSK@<private>,<crypto>/site`).
pub fn new_site_key() -> String {
    let keys = veil_ok(&["keygen"]);
    let insert = keys.lines().next().expect("keygen prints the insert URI");
    format!("{insert}site")
}

/// Two linked nodes; `b` runs the gateway on the returned address.
pub fn network(root: &Path, rt: &tokio::runtime::Runtime) -> (TestNode, TestNode, SocketAddr) {
    let mut a = TestNode::init(root, "a", 0.25);
    let mut b = TestNode::init(root, "b", 0.75);
    a.befriend(&b);
    let gateway = free_addrs(1)[0];
    b.set(&format!("gateway = \"{gateway}\""));
    a.start(&[]);
    b.start(&[]);
    a.wait_peers(rt, 1);
    b.wait_peers(rt, 1);
    wait_listening(gateway);
    (a, b, gateway)
}

/// Wait (at most 30 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < end, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request (`Connection: close`), within 60 s.
pub fn http(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, "", b"")
}

/// Follow a job's progress page until it stops refreshing (at most 90 s);
/// the last page.
pub fn wait_job(addr: SocketAddr, progress: &str) -> Reply {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let r = get(addr, progress);
        if !r.text().contains("http-equiv=\"refresh\" content=\"1\"") {
            return r;
        }
        assert!(Instant::now() < end, "{progress} still running after 90 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A tar archive of `files`.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A multipart/form-data body with `kind` and one file; (content type, body).
pub fn multipart(kind: &str, name: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "veiltestboundary7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
