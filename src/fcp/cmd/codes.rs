//! Freenet's numeric codes, as fred defines them (`ProtocolErrorMessage`,
//! `FetchExceptionMode`, `InsertExceptionMode`), and the veil failures each
//! stands for.

use crate::client::site::SiteError;
use crate::client::transfer::TransferError;
use crate::content::ContentError;
use crate::error::{ErrorKind, HasKind};

// ProtocolError codes.
pub const CLIENT_HELLO_MUST_BE_FIRST: u32 = 1;
pub const NO_LATE_CLIENT_HELLOS: u32 = 2;
pub const MESSAGE_PARSE_ERROR: u32 = 3;
pub const URI_PARSE_ERROR: u32 = 4;
pub const MISSING_FIELD: u32 = 5;
pub const ERROR_PARSING_NUMBER: u32 = 6;
pub const INVALID_MESSAGE: u32 = 7;
pub const INVALID_FIELD: u32 = 8;
pub const FILE_NOT_FOUND: u32 = 9;
pub const DISK_TARGET_EXISTS: u32 = 10;
pub const COULD_NOT_CREATE_FILE: u32 = 12;
pub const NO_SUCH_IDENTIFIER: u32 = 15;
pub const NOT_SUPPORTED: u32 = 16;
pub const INTERNAL_ERROR: u32 = 17;
pub const DIRECT_DISK_ACCESS_DENIED: u32 = 25;
pub const COULD_NOT_READ_FILE: u32 = 26;

/// The text fred gives a ProtocolError code.
pub fn protocol_text(code: u32) -> &'static str {
    match code {
        CLIENT_HELLO_MUST_BE_FIRST => "ClientHello must be first message",
        NO_LATE_CLIENT_HELLOS => "No late ClientHello's accepted",
        MESSAGE_PARSE_ERROR => "Unknown error parsing message",
        URI_PARSE_ERROR => "Error parsing URI",
        MISSING_FIELD => "Missing field",
        ERROR_PARSING_NUMBER => "Error parsing a numeric field",
        INVALID_MESSAGE => "Don't know what to do with message",
        INVALID_FIELD => "Invalid field value",
        FILE_NOT_FOUND => "File not found, not a file or not readable",
        DISK_TARGET_EXISTS => "Disk target exists, refusing to overwrite for security reasons",
        COULD_NOT_CREATE_FILE => "Could not create file",
        NO_SUCH_IDENTIFIER => "No such identifier",
        NOT_SUPPORTED => "Not supported",
        INTERNAL_ERROR => "Internal error",
        DIRECT_DISK_ACCESS_DENIED => "Direct Disk Access operation denied: did you send a FileHash field ? Did you run TestDDA?",
        COULD_NOT_READ_FILE => "Could not read file",
        _ => "Error",
    }
}

/// A failure as GetFailed or PutFailed tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub code: u32,
    pub short: &'static str,
    pub long: String,
    /// Whether asking again cannot help.
    pub fatal: bool,
}

// FetchException codes.
pub const FETCH_INVALID_METADATA: u32 = 4;
pub const FETCH_NOT_IN_ARCHIVE: u32 = 10;
pub const FETCH_DATA_NOT_FOUND: u32 = 13;
pub const FETCH_ROUTE_NOT_FOUND: u32 = 14;
pub const FETCH_REJECTED_OVERLOAD: u32 = 15;
pub const FETCH_INTERNAL_ERROR: u32 = 17;
pub const FETCH_INVALID_URI: u32 = 20;
pub const FETCH_TOO_BIG: u32 = 21;
pub const FETCH_NOT_ENOUGH_PATH_COMPONENTS: u32 = 24;
pub const FETCH_CANCELLED: u32 = 25;
pub const FETCH_ALL_DATA_NOT_FOUND: u32 = 28;
pub const FETCH_CONTENT_HASH_FAILED: u32 = 34;

pub fn fetch_short(code: u32) -> &'static str {
    match code {
        FETCH_INVALID_METADATA => "Invalid metadata",
        FETCH_NOT_IN_ARCHIVE => "Not in archive",
        FETCH_DATA_NOT_FOUND => "Data not found",
        FETCH_ROUTE_NOT_FOUND => "Route not found",
        FETCH_REJECTED_OVERLOAD => "Timeout or overload",
        FETCH_INTERNAL_ERROR => "Internal error",
        FETCH_INVALID_URI => "Invalid URI",
        FETCH_TOO_BIG => "Too big",
        FETCH_NOT_ENOUGH_PATH_COMPONENTS => "Not enough path components",
        FETCH_CANCELLED => "Cancelled",
        FETCH_ALL_DATA_NOT_FOUND => "All data not found",
        FETCH_CONTENT_HASH_FAILED => "Hash does not match",
        _ => "Error",
    }
}

/// A fetch failure: the key not found is 13, a file some of whose
/// segments could not be rebuilt is 28, and so on by what went wrong.
pub fn fetch_failed(code: u32, long: impl Into<String>) -> Failed {
    Failed {
        code,
        short: fetch_short(code),
        long: long.into(),
        fatal: !matches!(
            code,
            FETCH_DATA_NOT_FOUND
                | FETCH_ROUTE_NOT_FOUND
                | FETCH_REJECTED_OVERLOAD
                | FETCH_ALL_DATA_NOT_FOUND
        ),
    }
}

/// The fetch code of a failed get.
pub fn of_fetch(e: &SiteError) -> Failed {
    let code = match e {
        SiteError::Address(_) => FETCH_INVALID_URI,
        SiteError::NoSuchPath(_) | SiteError::NotADirectory(..) => FETCH_NOT_IN_ARCHIVE,
        SiteError::Transfer(TransferError::Content(c)) => match c {
            ContentError::TooLarge { .. } => FETCH_TOO_BIG,
            ContentError::SegmentUnrecoverable { .. } => FETCH_ALL_DATA_NOT_FOUND,
            ContentError::HashMismatch => FETCH_CONTENT_HASH_FAILED,
            _ => by_kind(e.kind()),
        },
        _ => by_kind(e.kind()),
    };
    fetch_failed(code, e.to_string())
}

fn by_kind(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::NotFound | ErrorKind::Timeout => FETCH_DATA_NOT_FOUND,
        ErrorKind::NoPeers => FETCH_ROUTE_NOT_FOUND,
        ErrorKind::Overloaded | ErrorKind::Refused => FETCH_REJECTED_OVERLOAD,
        ErrorKind::BadData => FETCH_INVALID_METADATA,
        _ => FETCH_INTERNAL_ERROR,
    }
}

// InsertException codes.
pub const INSERT_INVALID_URI: u32 = 1;
pub const INSERT_BUCKET_ERROR: u32 = 2;
pub const INSERT_INTERNAL_ERROR: u32 = 3;
pub const INSERT_REJECTED_OVERLOAD: u32 = 4;
pub const INSERT_ROUTE_NOT_FOUND: u32 = 5;
pub const INSERT_TOO_MANY_RETRIES_IN_BLOCKS: u32 = 7;
pub const INSERT_ROUTE_REALLY_NOT_FOUND: u32 = 8;
pub const INSERT_COLLISION: u32 = 9;
pub const INSERT_CANCELLED: u32 = 10;

pub fn insert_short(code: u32) -> &'static str {
    match code {
        INSERT_INVALID_URI => "Invalid URI",
        INSERT_BUCKET_ERROR => "Temp files error",
        INSERT_INTERNAL_ERROR => "Internal error",
        INSERT_REJECTED_OVERLOAD => "Timeout or overload",
        INSERT_ROUTE_NOT_FOUND => "Route not found",
        INSERT_TOO_MANY_RETRIES_IN_BLOCKS => "Some blocks ran out of retries",
        INSERT_ROUTE_REALLY_NOT_FOUND => "Request could not leave the node",
        INSERT_COLLISION => "Collided with existing data",
        INSERT_CANCELLED => "Cancelled",
        _ => "Error",
    }
}

pub fn insert_failed(code: u32, long: impl Into<String>) -> Failed {
    Failed {
        code,
        short: insert_short(code),
        long: long.into(),
        fatal: matches!(
            code,
            INSERT_INVALID_URI | INSERT_COLLISION | INSERT_BUCKET_ERROR | INSERT_CANCELLED
        ),
    }
}

/// The insert code of a failed put.
pub fn of_insert(e: &SiteError) -> Failed {
    let code = match e {
        SiteError::Address(_) | SiteError::InsertUri(_) | SiteError::NoSiteName => {
            INSERT_INVALID_URI
        }
        SiteError::Io { .. } => INSERT_BUCKET_ERROR,
        SiteError::Transfer(TransferError::InsertFailed { .. }) => {
            INSERT_TOO_MANY_RETRIES_IN_BLOCKS
        }
        _ => match e.kind() {
            ErrorKind::Refused => INSERT_COLLISION,
            ErrorKind::Overloaded | ErrorKind::Timeout => INSERT_REJECTED_OVERLOAD,
            ErrorKind::NoPeers => INSERT_ROUTE_REALLY_NOT_FOUND,
            ErrorKind::NotFound => INSERT_ROUTE_NOT_FOUND,
            _ => INSERT_INTERNAL_ERROR,
        },
    };
    insert_failed(code, e.to_string())
}
