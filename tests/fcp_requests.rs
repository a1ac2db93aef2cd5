//! FCP requests between two linked nodes, over raw sockets: a persistent
//! global put (`Persistence=forever`, `Global=true`) started by one
//! connection completes after that client disconnects and after the node
//! restarts, and a new connection lists it with its outcome;
//! `SubscribeUSK` reports new editions; `ClientPutDiskDir` inserts a
//! directory after `TestDDARequest`, read back file by file.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{bytes, free_addrs, runtime, TestNode};

struct Fcp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug)]
struct Reply {
    name: String,
    fields: HashMap<String, String>,
    data: Vec<u8>,
}

impl Fcp {
    fn connect(addr: SocketAddr, name: &str) -> Fcp {
        let s = TcpStream::connect(addr).expect("connect to FCP");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut c = Fcp {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        c.send(format!("ClientHello\nName={name}\nExpectedVersion=2.0\nEndMessage\n").as_bytes());
        assert_eq!(c.read().name, "NodeHello");
        c
    }

    fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    fn read(&mut self) -> Reply {
        let mut name = String::new();
        let mut fields = HashMap::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed");
            let l = line.trim_end();
            if name.is_empty() {
                name = l.to_string();
                continue;
            }
            match l {
                "EndMessage" => {
                    return Reply {
                        name,
                        fields,
                        data: Vec::new(),
                    }
                }
                "Data" => {
                    let n: usize = fields["DataLength"].parse().unwrap();
                    let mut data = vec![0; n];
                    self.reader.read_exact(&mut data).unwrap();
                    return Reply { name, fields, data };
                }
                _ => {
                    let (k, v) = l.split_once('=').unwrap();
                    fields.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    /// The queue as `ListPersistentRequests` gives it, by message name.
    fn list(&mut self) -> Vec<Reply> {
        self.send(b"ListPersistentRequests\nEndMessage\n");
        let mut out = Vec::new();
        loop {
            let r = self.read();
            if r.name == "EndListPersistentRequests" {
                return out;
            }
            out.push(r);
        }
    }
}

fn node(root: &std::path::Path, name: &str, location: f64) -> (TestNode, SocketAddr) {
    let n = TestNode::init(root, name, location);
    let fcp = free_addrs(1)[0];
    n.set(&format!("fcp = \"{fcp}\""));
    (n, fcp)
}

/// Two befriended, running nodes, each with its FCP address.
fn linked_pair(
    root: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> ((TestNode, SocketAddr), (TestNode, SocketAddr)) {
    let (mut a, fcp_a) = node(root, "a", 0.25);
    let (mut b, fcp_b) = node(root, "b", 0.75);
    a.befriend(&b);
    a.start(&[]);
    b.start(&[]);
    a.wait_peers(rt, 1);
    b.wait_peers(rt, 1);
    ((a, fcp_a), (b, fcp_b))
}

#[test]
fn a_persistent_global_put_outlives_its_connection_and_a_restart() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ((mut a, fcp_a), (mut b, fcp_b)) = linked_pair(tmp.path(), &rt);

    // One client starts the put and leaves at once.
    let data = bytes(3 << 20, 7);
    let mut first = Fcp::connect(fcp_a, "uploader");
    let mut put = format!(
        "ClientPut\nIdentifier=keep\nURI=CHK@\nPersistence=forever\nGlobal=true\n\
         UploadFrom=direct\nDataLength={}\nData\n",
        data.len()
    )
    .into_bytes();
    put.extend_from_slice(&data);
    first.send(&put);
    first.send(b"Disconnect\nEndMessage\n");
    drop(first);

    // The node restarts before the put can have finished.
    std::thread::sleep(Duration::from_millis(300));
    a.stop();
    a.start(&[]);
    a.wait_peers(&rt, 1);

    // Another client, another name, finds it on the global queue and sees
    // it complete.
    let mut second = Fcp::connect(fcp_a, "watcher");
    second.send(b"WatchGlobal\nEnabled=true\nEndMessage\n");
    let deadline = Instant::now() + Duration::from_secs(120);
    let uri = loop {
        let listed = second.list();
        let put = listed
            .iter()
            .find(|r| r.name == "PersistentPut")
            .unwrap_or_else(|| {
                let files: Vec<_> = std::fs::read_dir(a.dir.join("fcp"))
                    .map(|d| d.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                panic!(
                    "the put is not listed: {listed:?}; {files:?}; log:\n{}",
                    a.log()
                )
            });
        assert_eq!(put.fields["Identifier"], "keep");
        assert_eq!(put.fields["Global"], "true");
        if let Some(done) = listed.iter().find(|r| r.name == "PutSuccessful") {
            break done.fields["URI"].clone();
        }
        assert!(
            listed.iter().all(|r| r.name != "PutFailed"),
            "the put failed: {listed:?}"
        );
        assert!(Instant::now() < deadline, "the put never completed");
        std::thread::sleep(Duration::from_millis(500));
    };

    // The other node gets the whole file.
    let mut getter = Fcp::connect(fcp_b, "getter");
    getter.send(
        format!("ClientGet\nIdentifier=g\nURI={uri}\nReturnType=direct\nEndMessage\n").as_bytes(),
    );
    let found = getter.read();
    assert_eq!(found.name, "DataFound", "{found:?}");
    let all = getter.read();
    assert_eq!(all.name, "AllData");
    assert!(all.data == data, "the file differs");

    // RemoveRequest takes it off the queue.
    second.send(b"RemoveRequest\nIdentifier=keep\nGlobal=true\nEndMessage\n");
    loop {
        let r = second.read();
        if r.name == "PersistentRequestRemoved" {
            break;
        }
    }
    assert!(second.list().is_empty());
    a.stop();
    b.stop();
}

#[test]
fn subscribe_usk_reports_each_new_edition() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ((mut a, fcp_a), (mut b, fcp_b)) = linked_pair(tmp.path(), &rt);

    let mut publisher = Fcp::connect(fcp_a, "publisher");
    publisher.send(b"GenerateSSK\nIdentifier=k\nEndMessage\n");
    let keys = publisher.read();
    let insert = keys.fields["InsertURI"].replacen("SSK@", "USK@", 1);
    let request = keys.fields["RequestURI"].replacen("SSK@", "USK@", 1);
    let mut publish = |edition: u64, body: &[u8]| {
        let mut put = format!(
            "ClientPut\nIdentifier=e{edition}\nURI={insert}site/{edition}\nDataLength={}\nData\n",
            body.len()
        )
        .into_bytes();
        put.extend_from_slice(body);
        publisher.send(&put);
        loop {
            let r = publisher.read();
            match r.name.as_str() {
                "PutSuccessful" => return r.fields["URI"].clone(),
                "URIGenerated" | "SimpleProgress" => {}
                _ => panic!("{r:?}"),
            }
        }
    };
    assert!(publish(0, b"edition zero").ends_with("/site/0"));

    let mut watcher = Fcp::connect(fcp_b, "watcher");
    watcher
        .send(format!("SubscribeUSK\nIdentifier=s\nURI={request}site/0\nEndMessage\n").as_bytes());
    assert_eq!(watcher.read().name, "SubscribedUSK");
    let update = watcher.read();
    assert_eq!(
        (update.name.as_str(), update.fields["Edition"].as_str()),
        ("SubscribedUSKUpdate", "0")
    );
    assert_eq!(watcher.read().name, "SubscribedUSKRoundFinished");

    assert!(publish(1, b"edition one").ends_with("/site/1"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = watcher.read();
        if r.name == "SubscribedUSKUpdate" {
            assert_eq!(r.fields["Edition"], "1");
            assert!(r.fields["URI"].ends_with("/site/1"));
            break;
        }
        assert_eq!(r.name, "SubscribedUSKRoundFinished");
        assert!(Instant::now() < deadline, "edition 1 never reported");
    }
    watcher.send(b"UnsubscribeUSK\nIdentifier=s\nEndMessage\n");
    a.stop();
    b.stop();
}

#[test]
fn put_disk_dir_inserts_a_directory_after_test_dda() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ((mut a, fcp_a), (mut b, fcp_b)) = linked_pair(tmp.path(), &rt);
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>disk dir</h1>").unwrap();
    std::fs::write(site.join("css/a.css"), b"p {}").unwrap();
    let dir = site.to_str().unwrap();

    let mut c = Fcp::connect(fcp_a, "dirs");
    // Without the test, the node will not read the directory.
    c.send(
        format!("ClientPutDiskDir\nIdentifier=d0\nURI=CHK@\nFilename={dir}\nEndMessage\n")
            .as_bytes(),
    );
    let refused = c.read();
    assert_eq!(
        (refused.name.as_str(), refused.fields["Code"].as_str()),
        ("ProtocolError", "25")
    );
    c.send(
        format!("TestDDARequest\nDirectory={dir}\nWantReadDirectory=true\nEndMessage\n").as_bytes(),
    );
    let reply = c.read();
    assert_eq!(reply.name, "TestDDAReply");
    let token = std::fs::read_to_string(&reply.fields["ReadFilename"]).unwrap();
    c.send(
        format!("TestDDAResponse\nDirectory={dir}\nReadContent={token}\nEndMessage\n").as_bytes(),
    );
    let done = c.read();
    assert_eq!(done.fields["ReadDirectoryAllowed"], "true");
    // The test's file is gone again, so it is not part of the site.
    assert!(!std::path::Path::new(&reply.fields["ReadFilename"]).exists());
    c.send(
        format!("ClientPutDiskDir\nIdentifier=d1\nURI=CHK@\nFilename={dir}\nEndMessage\n")
            .as_bytes(),
    );
    let uri = loop {
        let r = c.read();
        match r.name.as_str() {
            "PutSuccessful" => break r.fields["URI"].clone(),
            "URIGenerated" => {}
            _ => panic!("{r:?}"),
        }
    };
    let mut getter = Fcp::connect(fcp_b, "reader");
    for (path, body, mime) in [
        ("", &b"<h1>disk dir</h1>"[..], "text/html"),
        ("/css/a.css", &b"p {}"[..], "text/css"),
    ] {
        getter.send(
            format!("ClientGet\nIdentifier=g{path}\nURI={uri}{path}\nEndMessage\n").as_bytes(),
        );
        let found = getter.read();
        assert_eq!(found.name, "DataFound", "{found:?}");
        assert_eq!(found.fields["Metadata.ContentType"], mime);
        assert_eq!(getter.read().data, body);
    }
    a.stop();
    b.stop();
}
