//! Error responses: Prometheus's JSON envelope on every API path.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use lastmile_query::QueryError;
use lastmile_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadData(String),
    TooLarge(String),
    UnsupportedMediaType(String),
    NotFound(String),
    /// The query is valid but its evaluation failed (Prometheus's `execution`, 422).
    Execution(String),
    Timeout(String),
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            ApiError::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data", m),
            ApiError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_data", m)
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Execution(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
            ApiError::Timeout(m) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = message, "request failed");
        }
        let body =
            serde_json::json!({"status": "error", "errorType": error_type, "error": message});
        (status, axum::Json(body)).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadData(m) => ApiError::BadData(m),
            QueryError::Storage(e) => e.into(),
        }
    }
}

impl From<lastmile_query::promql::PromqlError> for ApiError {
    fn from(e: lastmile_query::promql::PromqlError) -> Self {
        use lastmile_query::promql::PromqlError as P;
        match e {
            P::BadData(m) => ApiError::BadData(m),
            P::Execution(m) => ApiError::Execution(m),
            e @ P::TooManySamples(_) => ApiError::Execution(e.to_string()),
            e @ P::Timeout => ApiError::Timeout(e.to_string()),
            P::Storage(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WalFailed(m) => ApiError::Unavailable(m),
            StoreError::SeriesIdsExhausted(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// An error on a non-Prometheus path (Tempo, Loki, OTLP, lastmile's own): a status and a
/// plain-text message, as those APIs answer.
#[derive(Debug)]
pub struct PlainError {
    pub status: StatusCode,
    pub message: String,
}

impl PlainError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PlainError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        PlainError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        PlainError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for PlainError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut body = self.message;
        body.push('\n');
        (self.status, body).into_response()
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
