//! The datastore's errors.

/// Errors from the datastore.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create datastore directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open datastore {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error(
        "datastore {path} has layout version {found}; this build reads versions {} and {}",
        super::SCHEMA_WHOLE_BLOCKS,
        super::SCHEMA_VERSION
    )]
    Schema {
        path: std::path::PathBuf,
        found: u64,
    },
    #[error("cannot open the cache's slot files beside {path}: {source}")]
    CacheOpen {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write to the cache's slot file: {0}")]
    CacheWrite(#[source] std::io::Error),
    #[error("datastore database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the datastore is read-only after an I/O error it could not recover from")]
    ReadOnly,
    #[error("the datastore is closed after an I/O error it could not recover from")]
    Closed,
    #[error("the store has no room for the block")]
    NotStored,
    #[error("the store's write queue is full")]
    Busy,
}

impl StoreError {
    /// Whether this is an I/O error (after which redb must be reopened).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
        )
    }
}

macro_rules! via_redb_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
via_redb_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
