//! The FCP server of one node, over raw sockets: the handshake, what a
//! malformed or oversized message gets (a ProtocolError naming its
//! Identifier, then the connection closed), and that other connections
//! keep being served meanwhile.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{free_addrs, TestNode};

/// One FCP client connection.
struct Fcp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A message read back: its name and fields (a payload is read past).
#[derive(Debug)]
struct Reply {
    name: String,
    fields: HashMap<String, String>,
}

impl Reply {
    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }
}

impl Fcp {
    fn connect(addr: SocketAddr) -> Fcp {
        let s = TcpStream::connect(addr).expect("connect to FCP");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Fcp {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    fn hello(&mut self) -> Reply {
        self.send(b"ClientHello\nName=test\nExpectedVersion=2.0\nEndMessage\n");
        let r = self.read().expect("NodeHello");
        assert_eq!(r.name, "NodeHello");
        r
    }

    /// The next message, or `None` once the server closed the connection.
    fn read(&mut self) -> Option<Reply> {
        let mut line = String::new();
        let mut name = String::new();
        let mut fields = HashMap::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let l = line.trim_end();
            if name.is_empty() {
                if !l.is_empty() {
                    name = l.to_string();
                }
                continue;
            }
            match l {
                "EndMessage" => return Some(Reply { name, fields }),
                "Data" => {
                    let n: usize = fields["DataLength"].parse().unwrap();
                    let mut data = vec![0; n];
                    self.reader.read_exact(&mut data).ok()?;
                    return Some(Reply { name, fields });
                }
                _ => {
                    let (k, v) = l.split_once('=').expect("Name=Value");
                    fields.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    /// The server closes the connection (after what it had to say).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

#[test]
fn malformed_clients_get_protocol_errors_and_others_keep_being_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = TestNode::init(tmp.path(), "n", 0.5);
    let fcp = free_addrs(1)[0];
    node.set(&format!("fcp = \"{fcp}\""));
    node.start(&[]);

    let mut good = Fcp::connect(fcp);
    let hello = good.hello();
    assert_eq!(hello.get("FCPVersion"), "2.0");
    assert_eq!(hello.get("ConnectionIdentifier").len(), 32);

    // Not a message name: an error, and the connection closes.
    let mut bad = Fcp::connect(fcp);
    bad.send(b"Client Hello\nEndMessage\n");
    let e = bad.read().expect("a ProtocolError");
    assert_eq!((e.name.as_str(), e.get("Code")), ("ProtocolError", "3"));
    assert!(bad.closed());

    // Something before ClientHello.
    let mut early = Fcp::connect(fcp);
    early.send(b"GetNode\nIdentifier=g\nEndMessage\n");
    let e = early.read().expect("a ProtocolError");
    assert_eq!((e.get("Code"), e.get("Identifier")), ("1", "g"));
    assert!(early.closed());

    // A DataLength of a terabyte is refused before anything is allocated,
    // naming the request.
    let mut huge = Fcp::connect(fcp);
    huge.hello();
    huge.send(b"ClientPut\nIdentifier=big\nURI=CHK@\nDataLength=1099511627776\nData\n");
    let e = huge.read().expect("a ProtocolError");
    assert_eq!((e.get("Code"), e.get("Identifier")), ("3", "big"));
    assert!(e.get("ExtraDescription").contains("DataLength"), "{e:?}");
    assert!(huge.closed());

    // A header that never ends.
    let mut endless = Fcp::connect(fcp);
    endless.hello();
    let mut junk = b"ClientGet\nIdentifier=long\nURI=".to_vec();
    junk.extend(std::iter::repeat_n(b'A', 300 * 1024));
    let _ = endless.writer.write_all(&junk);
    let e = endless.read().expect("a ProtocolError");
    assert_eq!((e.get("Code"), e.get("Identifier")), ("3", "long"));
    assert!(endless.closed());

    // An unknown message is refused but the connection goes on; a request
    // without an Identifier is told so.
    let mut odd = Fcp::connect(fcp);
    odd.hello();
    odd.send(b"FooBar\nIdentifier=y\nEndMessage\n");
    let e = odd.read().unwrap();
    assert_eq!((e.get("Code"), e.get("Identifier")), ("7", "y"));
    odd.send(b"ClientGet\nURI=CHK@x,y\nEndMessage\n");
    assert_eq!(odd.read().unwrap().get("Code"), "5");
    odd.send(b"GenerateSSK\nIdentifier=k\nEndMessage\n");
    let keys = odd.read().unwrap();
    assert_eq!(
        (keys.name.as_str(), keys.get("Identifier")),
        ("SSKKeypair", "k")
    );

    // The first connection was served all along.
    good.send(b"ClientPut\nIdentifier=p\nURI=CHK@\nGetCHKOnly=true\nDataLength=5\nData\nhello");
    let uri = good.read().unwrap();
    assert_eq!(
        (uri.name.as_str(), uri.get("Identifier")),
        ("URIGenerated", "p")
    );
    let done = good.read().unwrap();
    assert_eq!(done.name, "PutSuccessful");
    assert_eq!(done.get("URI"), uri.get("URI"));
    assert!(done.get("URI").starts_with("CHK@"));
    // A get of a bad URI fails with Freenet's code for it.
    good.send(b"ClientGet\nIdentifier=q\nURI=CHK@nonsense\nEndMessage\n");
    let failed = good.read().unwrap();
    assert_eq!(
        (
            failed.name.as_str(),
            failed.get("Identifier"),
            failed.get("Code")
        ),
        ("GetFailed", "q", "20")
    );
    good.send(b"Disconnect\nEndMessage\n");
    assert!(good.closed());
    node.stop();
}
