//! The client API locked down: a Unix socket (mode 0600) by default, a TCP
//! address only with the node's cookie, refusal at once when full, and
//! many concurrent clients served. Real `veil node` processes.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{free_addrs, runtime, veil, veil_ok, TestNode};
use veil::client::endpoint::{read_cookie, COOKIE_FILE};
use veil::client::{Client, ClientError, ClientRequest, Endpoint};
use veil::keys::Chk;

/// Deadline for anything the node should answer; generous, never a
/// measurement.
const ANSWER: Duration = Duration::from_secs(30);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Send a status request over a raw TCP connection that skips the cookie;
/// returns every byte the node sent back before it closed.
fn raw_status_without_cookie(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(ANSWER)).unwrap();
    let mut frame = Vec::new();
    ciborium::ser::into_writer(&ClientRequest::Status, &mut frame).unwrap();
    let mut msg = (frame.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&frame);
    // 32 bytes of this message stand in for the cookie; they are wrong.
    msg.resize(64, 0);
    let _ = s.write_all(&msg);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn a_tcp_client_api_needs_the_cookie() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(root.path(), "a", 0.5);
    let addr = free_addrs(1)[0];
    node.set(&format!("client = \"{addr}\""));
    let cookie = node.dir.join(COOKIE_FILE);
    node.client = Endpoint::Tcp {
        addr,
        cookie: cookie.clone(),
    };
    node.start(&[]);
    assert_eq!(mode(&cookie), 0o600, "the cookie file is private");
    assert_eq!(read_cookie(&cookie).unwrap().len(), 32);

    // No cookie (or a wrong one): no answer at all, and a line in the log.
    assert!(raw_status_without_cookie(addr).is_empty());
    let wrong = root.path().join("wrong.cookie");
    std::fs::write(&wrong, [7u8; 32]).unwrap();
    let rt = runtime();
    let refused = rt.block_on(async {
        let forged = Endpoint::Tcp {
            addr,
            cookie: wrong.clone(),
        };
        Client::connect(&forged, ANSWER).await?.status().await
    });
    assert!(
        matches!(refused, Err(ClientError::Closed | ClientError::Io(_))),
        "{refused:?}"
    );
    let deadline = Instant::now() + ANSWER;
    while node
        .log()
        .matches("without the right cookie refused")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "not logged:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // The CLI: the node directory finds address and cookie; HOST:PORT
    // alone is refused before connecting, and works with --cookie.
    let dir = node.dir.to_str().unwrap();
    assert!(veil_ok(&["status", "--node", dir]).contains(&node.key));
    let bare = veil(&["status", "--node", &addr.to_string()]);
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--cookie"));
    let with = veil_ok(&[
        "status",
        "--node",
        &addr.to_string(),
        "--cookie",
        cookie.to_str().unwrap(),
    ]);
    assert!(with.contains(&node.key));
}

#[test]
fn the_default_socket_is_private_and_full_means_refused_at_once() {
    let root = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(root.path(), "a", 0.5);
    // 200 idle connections, the status request, one more idle: full.
    node.set("runtime.client_max_connections = 202");
    node.start(&[]);
    let Endpoint::Unix { path: socket } = node.client.clone() else {
        panic!("the default client API is a Unix socket");
    };
    assert_eq!(mode(&socket), 0o600, "the socket is private");
    let dir = node.dir.to_str().unwrap();
    assert!(veil_ok(&["status", "--node", dir]).contains(&node.key));

    let rt = runtime();
    rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(tokio::net::UnixStream::connect(&socket).await.unwrap());
        }
        // Status answers with 200 idle connections open.
        let mut c = Client::connect(&node.client, ANSWER).await.unwrap();
        let status = tokio::time::timeout(ANSWER, c.status()).await;
        assert!(matches!(status, Ok(Ok(ref s)) if s.public_key == node.key));
        idle.push(tokio::net::UnixStream::connect(&socket).await.unwrap());
        // Every slot is taken: the next client is told so, not made to wait.
        let mut late = Client::connect(&node.client, ANSWER).await.unwrap();
        let refused = tokio::time::timeout(ANSWER, late.status()).await;
        match refused {
            Ok(Err(ClientError::Refused(why))) => assert!(why.contains("full"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A slot that frees is served again.
        drop(c);
        idle.clear();
        let deadline = Instant::now() + ANSWER;
        loop {
            let mut again = Client::connect(&node.client, ANSWER).await.unwrap();
            match again.status().await {
                Ok(s) => {
                    assert_eq!(s.public_key, node.key);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn sixty_four_gets_and_sixty_four_puts_at_once_all_succeed() {
    let root = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (a, b) = TestNode::linked_pair(root.path(), &rt);
    let stored: Vec<_> = (0..64u32)
        .map(|i| Chk::encode(format!("stored block {i}").as_bytes()).unwrap())
        .collect();
    let fresh: Vec<_> = (0..64u32)
        .map(|i| Chk::encode(format!("fresh block {i}").as_bytes()).unwrap())
        .collect();
    rt.block_on(async {
        let mut c = Client::connect(&a.client, ANSWER).await.unwrap();
        for (_, block) in &stored {
            c.insert(block.clone()).await.unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (chk, _) in stored.clone() {
            let to = b.client.clone();
            tasks.spawn(async move {
                let mut c = Client::connect(&to, ANSWER).await?;
                let block = c.get(chk.routing).await?;
                assert!(chk.decode(&block).is_ok());
                Ok::<_, ClientError>("get")
            });
        }
        for (_, block) in fresh.clone() {
            let to = b.client.clone();
            tasks.spawn(async move {
                let mut c = Client::connect(&to, ANSWER).await?;
                c.insert(block).await?;
                Ok("put")
            });
        }
        let (mut gets, mut puts) = (0, 0);
        let all = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(done) = tasks.join_next().await {
                match done.unwrap() {
                    Ok("get") => gets += 1,
                    Ok(_) => puts += 1,
                    Err(e) => panic!("a concurrent request failed: {e}"),
                }
            }
        })
        .await;
        assert!(
            all.is_ok(),
            "{gets} gets and {puts} puts done at the deadline"
        );
        assert_eq!((gets, puts), (64, 64));
    });
}
