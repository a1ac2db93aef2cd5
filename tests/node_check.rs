//! `veil node DIR --check`: a directory that would start passes with a
//! summary (text and JSON) and no socket opened; one that would not fails
//! with an error that names what is wrong.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{veil, veil_ok};
use serde_json::Value;

/// `veil init DIR` with a TCP client API, returning its public key.
fn init(dir: &Path, listen: &str, client: &str) -> String {
    let d = dir.to_str().unwrap();
    veil_ok(&["init", d, "--listen", listen, "--client", client])
        .trim()
        .to_string()
}

fn check_fails(dir: &Path, needle: &str) {
    let out = veil(&["node", dir.to_str().unwrap(), "--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "wanted {needle:?} in: {stderr}");
}

#[test]
fn a_fresh_node_directory_checks_clean_in_text_and_json() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let key_a = init(&a, "127.0.0.1:7411", "127.0.0.1:8411");
    init(&b, "127.0.0.1:7412", "127.0.0.1:8412");
    let id_b = veil_ok(&["id", b.to_str().unwrap()]);
    let toml = std::fs::read_to_string(a.join("node.toml")).unwrap();
    std::fs::write(a.join("node.toml"), format!("{toml}\n{id_b}")).unwrap();

    let text = veil_ok(&["node", a.to_str().unwrap(), "--check"]);
    assert!(text.contains("would start"), "{text}");
    assert!(text.contains("127.0.0.1:7411"), "{text}");
    assert!(text.contains("tcp 127.0.0.1:8411"), "{text}");
    assert!(text.contains("127.0.0.1:7412"), "{text}");

    let json: Value = serde_json::from_str(&veil_ok(&[
        "node",
        a.to_str().unwrap(),
        "--check",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["public_key"], key_a.as_str());
    assert_eq!(json["listen"], "127.0.0.1:7411");
    assert_eq!(json["client"]["kind"], "tcp");
    assert_eq!(json["client"]["addr"], "127.0.0.1:8411");
    assert_eq!(json["peers"].as_array().unwrap().len(), 1);
    assert_eq!(json["peers"][0]["address"], "127.0.0.1:7412");
    assert_eq!(json["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(json["testnet"], false);

    // Opens no socket: nothing listens at the addresses, no cookie is
    // written, no store created.
    assert!(std::net::TcpStream::connect("127.0.0.1:8411").is_err());
    assert!(!a.join("client.cookie").exists());
    assert!(!a.join("store").exists());

    // --testnet as `veil node` takes it; a node without peers warns.
    let json: Value = serde_json::from_str(&veil_ok(&[
        "node",
        b.to_str().unwrap(),
        "--check",
        "--testnet",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["testnet"], true);
    assert!(json["warnings"][0].as_str().unwrap().contains("no peers"));
}

#[test]
fn what_would_stop_a_node_fails_the_check_by_name() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    init(&a, "127.0.0.1:7421", "127.0.0.1:8421");
    let toml = std::fs::read_to_string(a.join("node.toml")).unwrap();

    // Its own key as a peer.
    let own = veil_ok(&["id", a.to_str().unwrap()]);
    std::fs::write(a.join("node.toml"), format!("{toml}\n{own}")).unwrap();
    check_fails(&a, "this node's own public key");

    // An unknown setting.
    std::fs::write(a.join("node.toml"), format!("bogus = 1\n{toml}")).unwrap();
    check_fails(&a, "bogus");

    // A client API off loopback.
    let public = toml.replace("127.0.0.1:8421", "10.1.2.3:8421");
    std::fs::write(a.join("node.toml"), public).unwrap();
    check_fails(&a, "not loopback");

    // An identity others can read: the node starts (and warns), so the
    // check passes with the same warning.
    std::fs::write(a.join("node.toml"), &toml).unwrap();
    let key = a.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let json: Value = serde_json::from_str(&veil_ok(&[
        "node",
        a.to_str().unwrap(),
        "--check",
        "--json",
    ]))
    .unwrap();
    let warnings = json["warnings"].to_string();
    assert!(warnings.contains("mode 0600"), "{warnings}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A Unix client socket too long to bind.
    let deep = root.path().join("d".repeat(100));
    let d = deep.to_str().unwrap();
    veil_ok(&["init", d, "--listen", "127.0.0.1:7422"]);
    check_fails(&deep, "at most 107");

    // No directory at all.
    check_fails(&root.path().join("missing"), "cannot read");

    veil_ok(&["node", a.to_str().unwrap(), "--check"]);
}
