//! The client layer: everything a front end (the CLI, the browser gateway,
//! FCP) does with a node, over the node's local client API. Files are split,
//! encrypted and decrypted here, on the client's side of the node; the node
//! only ever sees encrypted blocks.
//!
//! ```text
//! endpoint.rs   where a node's client API is (Unix socket, or TCP + cookie)
//! api.rs        the client API wire protocol and a connection to it (Client)
//! status.rs     what `veil status` shows: NodeStatus and its rendering
//! transfer.rs   whole files: put_stream, get_to_writer, get_to_path
//! address.rs    KEY/path addresses (CHK@, SSK@…/name, USK@…/site/N)
//! site.rs       freesites: a key to its CHK, directories in and out
//! usk.rs        sites under updatable keys: publish an edition, resolve one
//! ```
//!
//! The CLI and the gateway call these same functions; neither has its own
//! path to the node.

pub mod address;
pub mod api;
pub mod endpoint;
pub mod site;
pub mod status;
pub mod transfer;
pub mod usk;

pub use api::{
    failure_text, read_frame, write_frame, Client, ClientError, ClientRequest, ClientResponse,
    Conn, MAX_CLIENT_FRAME,
};
pub use endpoint::{Endpoint, EndpointError};
pub use status::{LoadStatus, NodeStatus, PeerStatus, SwapStatus, TreeStatus};
