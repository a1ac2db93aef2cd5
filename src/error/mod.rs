//! One vocabulary for what kind of failure an error is, as arti's `HasKind`:
//! every error type a caller may act on says its [`ErrorKind`], and
//! [`ErrorKind::peer_at_fault`] tells a misbehaving peer (disconnect it, log
//! it) from the network, a timeout or this machine.

/// What kind of failure an error is, for callers that act on it (as arti's
/// `HasKind`): retry, tell the user to start the node, or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No node within the search budget (hops-to-live) holds the data.
    NotFound,
    /// A peer, or the node, did not answer in time.
    Timeout,
    /// The other end (the node, or a peer's node) is not running, cannot be
    /// reached, or went away mid-request.
    NodeDown,
    /// The node has no connected peer to ask.
    NoPeers,
    /// The node or its peers are handling too much.
    Overloaded,
    /// The node refused the request.
    Refused,
    /// What came back does not verify or is inconsistent: whoever served or
    /// built it is at fault.
    BadData,
    /// The other end broke the protocol: a bad handshake, a frame that does not
    /// authenticate, bytes that do not decode.
    Protocol,
    /// A failure on this machine (writing the output, a task that died, a bug).
    Local,
}

impl ErrorKind {
    /// True when the other side (the node, a peer, or the uploader) is to
    /// blame rather than this machine or the network's reach.
    pub fn peer_at_fault(self) -> bool {
        matches!(self, ErrorKind::BadData | ErrorKind::Protocol)
    }
}

/// An error that can say what kind of failure it is.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
}
