//! lastmile's embedded log store (SPEC C5): durable appends, full-text search with
//! tantivy, a stream (label set) index, a trace-id index, time ranges and retention.
//!
//! ```text
//! append ──► WAL (group commit, acknowledged when durable)
//!        └─► tantivy writer ──(commit every few seconds)──► index/   (lines, tokens,
//!        └─► in-memory head (lines not committed yet, read alongside the index)
//! ```
//!
//! Reads take a [`Selection`] (streams, time range, substrings every line must contain)
//! and visit lines unordered ([`LogStore::for_each_line`], for metric queries) or in time
//! order ([`LogStore::for_each_line_ordered`], for log queries with a limit).
//! [`LogStore::lines_for_trace`] returns every line of a trace.

mod bloom;
mod chunk;
mod codec;
mod index;
mod store;
mod streams;
mod template;
mod tokens;

use std::path::{Path, PathBuf};

pub use codec::{decode_batch, encode_batch};
pub use index::{MAX_TOKEN_LEN, Selection};
pub use store::{
    Direction, LineRef, LogAppendStats, LogOpenReport, LogStore, LogStoreOptions, LogStoreStats,
};
pub use streams::{StreamId, StreamInfo};

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Store(#[from] lastmile_store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("log index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("log data directory {0} is in use by another lastmile process")]
    Locked(PathBuf),
    #[error(
        "the log index in {dir} has format {found}, this lastmile reads format {want}: \
         move that directory away (its lines are not read) or use the lastmile that wrote it"
    )]
    Format {
        dir: PathBuf,
        found: String,
        want: u32,
    },
    #[error("the log store is closed")]
    Closed,
}

impl From<tantivy::directory::error::OpenDirectoryError> for LogStoreError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        LogStoreError::Index(e.into())
    }
}

impl From<tantivy::directory::error::OpenReadError> for LogStoreError {
    fn from(e: tantivy::directory::error::OpenReadError) -> Self {
        LogStoreError::Index(e.into())
    }
}

impl LogStoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LogStoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        LogStoreError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
