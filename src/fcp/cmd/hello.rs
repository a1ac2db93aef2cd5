//! `ClientHello` → `NodeHello`, and `GetNode` → `NodeData`.
//!
//! veil presents itself as an FCP 2.0 node. Fields that describe fred's
//! build (`Version`, `Build`) name veil's own version instead; clients
//! such as pyfreenet read them only for display.

use super::Conn;
use crate::fcp::frame::Message;

/// veil's version, as `NodeHello` and `NodeData` give it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The answer to the first `ClientHello`.
pub fn node_hello(conn: &Conn, hello: &Message) -> Message {
    let _ = hello.get("Name");
    Message::new("NodeHello")
        .with("FCPVersion", "2.0")
        .with("Node", "veil")
        .with("Version", format!("veil,{VERSION},2.0,0"))
        .with("Build", 0)
        .with("Revision", VERSION)
        .with("Testnet", conn.server.config.testnet)
        .with("ConnectionIdentifier", &conn.id)
        .with("NodeLanguage", "ENGLISH")
}

/// `GetNode`: who this node is, as far as an FCP client needs.
pub fn node_data(conn: &Conn, msg: &Message) -> Message {
    Message::new("NodeData")
        .with_opt("Identifier", msg.identifier())
        .with("identity", &conn.server.config.identity)
        .with("version", format!("veil,{VERSION}"))
        .with("opennet", false)
        .with("testnet", conn.server.config.testnet)
        .with("lastGoodVersion", format!("veil,{VERSION}"))
}
