//! `node.toml`: what `veil init` writes loads, `veil id` output pastes in
//! as a `[[peers]]` entry, the `[router]`, `[link]` and `[runtime]` tables
//! take defaults, and impossible values are refused by name.

mod common;

use std::path::Path;

use common::{runtime, veil_ok, TestNode};
use veil::config::{ConfigError, InvalidSetting, NodeConfig, CONFIG_FILE};
use veil::link::LinkConfig;
use veil::routing::{RouterConfig, DEFAULT_MAX_HTL};

fn append(dir: &Path, text: &str) {
    let path = dir.join(CONFIG_FILE);
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(text);
    std::fs::write(&path, toml).unwrap();
}

fn prepend(dir: &Path, line: &str) {
    let path = dir.join(CONFIG_FILE);
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{line}\n{toml}")).unwrap();
}

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join(CONFIG_FILE), text).unwrap();
}

const MINIMAL: &str = "listen = \"127.0.0.1:7400\"\nclient = \"127.0.0.1:8400\"\n";

/// The documented paste, end to end with the binary: `veil init` two nodes,
/// append each one's `veil id` output (a whole `[[peers]]` entry) to the
/// other's node.toml, and the two nodes load it and link up.
#[test]
fn veil_id_output_pastes_into_a_fresh_node_toml() {
    let root = tempfile::tempdir().unwrap();
    let mut a = TestNode::init(root.path(), "a", 0.25);
    let mut b = TestNode::init(root.path(), "b", 0.75);

    let init_text = std::fs::read_to_string(a.dir.join(CONFIG_FILE)).unwrap();
    assert!(!init_text.contains("peers"), "{init_text}");

    for (from, to) in [(&a, &b), (&b, &a)] {
        let id = veil_ok(&["id", from.dir.to_str().unwrap()]);
        append(&to.dir, &format!("\n{id}"));
    }
    for (node, friend) in [(&a, &b), (&b, &a)] {
        let config = NodeConfig::load(&node.dir).unwrap();
        assert_eq!(config.peers.len(), 1);
        assert_eq!(config.peers[0].public_key.to_string(), friend.key);
        assert_eq!(config.peers[0].address, friend.listen);
    }

    // A second friend pastes in below the first.
    let c = TestNode::init(root.path(), "c", 0.5);
    let id = veil_ok(&["id", c.dir.to_str().unwrap()]);
    append(&a.dir, &format!("\n{id}"));
    assert_eq!(NodeConfig::load(&a.dir).unwrap().peers.len(), 2);

    // `veil node` accepts the pasted files: a and b link.
    let rt = runtime();
    a.start(&[]);
    b.start(&[]);
    a.wait_peers(&rt, 1);
    b.wait_peers(&rt, 1);
}

#[test]
fn saved_configs_put_peers_last_and_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(
        "127.0.0.1:7400".parse().unwrap(),
        Some("127.0.0.1:8400".parse().unwrap()),
        Some(0.5),
    );
    config.save(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
    // Defaults are not written: no empty peers, no default tables.
    assert!(!text.contains("peers"), "{text}");
    assert!(!text.contains("[router]"), "{text}");
    assert_eq!(NodeConfig::load(dir.path()).unwrap(), config);

    config.router.max_htl = 7;
    config.link.idle_timeout_secs = 60;
    config.peers.push(veil::config::PeerConfig {
        address: "127.0.0.1:7401".parse().unwrap(),
        public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .unwrap(),
        name: Some("f".into()),
    });
    config.save(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
    let peers_at = text.find("[[peers]]").unwrap();
    assert!(text.find("[router]").unwrap() < peers_at, "{text}");
    assert!(text.find("[link]").unwrap() < peers_at, "{text}");
    assert_eq!(NodeConfig::load(dir.path()).unwrap(), config);
}

#[test]
fn tables_default_and_dotted_keys_set_single_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), MINIMAL);
    let config = NodeConfig::load(dir.path()).unwrap();
    assert_eq!(config.router, RouterConfig::default());
    assert_eq!(config.router.max_htl, DEFAULT_MAX_HTL);
    assert_eq!(config.link, LinkConfig::default());
    assert_eq!(config.link.handshake_timeout_ms, 10_000);
    assert_eq!(config.runtime.router_queue, 1024);
    // 0: the runtime takes one thread per core.
    assert_eq!(config.runtime.worker_threads, 0);

    prepend(dir.path(), "router.max_htl = 1");
    prepend(dir.path(), "link.keepalive_secs = 3");
    let config = NodeConfig::load(dir.path()).unwrap();
    assert_eq!(config.router.max_htl, 1);
    assert_eq!(
        config.router.max_inflight_per_peer,
        RouterConfig::default().max_inflight_per_peer
    );
    assert_eq!(config.link.keepalive_secs, 3);
    assert_eq!(config.link.idle_timeout_secs, 35);

    write(
        dir.path(),
        &format!("{MINIMAL}[runtime]\nclient_request_timeout_secs = 5\n"),
    );
    let config = NodeConfig::load(dir.path()).unwrap();
    assert_eq!(config.runtime.client_request_timeout_secs, 5);
    assert_eq!(
        config.runtime.client_max_connections,
        veil::config::RuntimeConfig::default().client_max_connections
    );
}

#[test]
fn impossible_and_unknown_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |extra: &str| {
        write(dir.path(), &format!("{extra}\n{MINIMAL}"));
        NodeConfig::load(dir.path()).unwrap_err()
    };
    for (line, name) in [
        ("router.max_htl = 0", "router.max_htl"),
        ("link.write_queue = 0", "link.write_queue"),
        ("link.handshake_timeout_ms = 0", "link.handshake_timeout_ms"),
        ("runtime.router_queue = 0", "runtime.router_queue"),
        (
            "runtime.cache_writes_in_flight = 0",
            "runtime.cache_writes_in_flight",
        ),
    ] {
        match refused(line) {
            ConfigError::Invalid { source, .. } => {
                assert_eq!(source, InvalidSetting::Zero(name), "{line}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
    assert!(matches!(
        refused("link.redial_min_ms = 5000\nlink.redial_max_ms = 100"),
        ConfigError::Invalid {
            source: InvalidSetting::RedialBounds,
            ..
        }
    ));
    match refused("runtime.worker_threads = 100000") {
        ConfigError::Invalid { source, .. } => {
            assert_eq!(source, InvalidSetting::TooManyThreads(100_000));
            assert!(source.to_string().contains("runtime.worker_threads"));
        }
        other => panic!("{other:?}"),
    }
    // The old top-level spellings and unknown keys in a table do not parse.
    for line in ["max_htl = 5", "max_inflight_per_peer = 2", "link.typo = 1"] {
        assert!(matches!(refused(line), ConfigError::Parse { .. }), "{line}");
    }
    // The empty `peers = []` of older `veil init` output still loads.
    write(dir.path(), &format!("{MINIMAL}peers = []\n"));
    assert!(NodeConfig::load(dir.path()).unwrap().peers.is_empty());
}
