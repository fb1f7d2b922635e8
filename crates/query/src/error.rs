/// Errors a query can end in, mapped by the API to Prometheus's `errorType`s.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The client's request is malformed (HTTP 400, `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The store failed while answering (HTTP 500, `internal`).
    #[error("{0}")]
    Storage(#[from] lastmile_store::StoreError),
}

impl QueryError {
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Storage(_) => "internal",
        }
    }
}
