use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{0}")]
    WalFailed(String),
    #[error("data directory {0} is in use by another lastmile process")]
    Locked(PathBuf),
    #[error("store upkeep stopped: {0}")]
    Stuck(String),
    #[error(
        "series limit reached: the head holds {0} series, the most a 32-bit series id allows; restart to renumber"
    )]
    SeriesIdsExhausted(u32),
}

impl StoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
