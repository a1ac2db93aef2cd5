//! Free loopback ports for a testnet's nodes, and the tail of a node's log
//! for error reports.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// Listen ports are drawn from below the kernel's ephemeral range, so that
/// no outgoing connection (which takes its local port from that range) can
/// grab one between the draw and the node's bind.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// `n` distinct loopback addresses that were free a moment ago: random
/// ports from [`PORT_RANGE`], bound together to check, then released. Two
/// testnets drawing at once collide only if they draw the same port in that
/// moment.
pub fn free_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    use rand::Rng;
    // Ports this process has handed out already are never drawn again: the
    // nodes they were meant for may not have bound them yet.
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = rand::thread_rng();
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while held.len() < n {
        attempts += 1;
        if attempts > 100 * n + 1000 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no {n} free ports in {PORT_RANGE:?}"),
            ));
        }
        let port = rng.gen_range(PORT_RANGE);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            held.push(l);
        }
    }
    held.iter().map(|l| l.local_addr()).collect()
}

/// The last `max` bytes of a log file, for error reports.
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    text
}
