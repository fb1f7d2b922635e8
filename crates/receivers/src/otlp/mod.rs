//! OTLP (OpenTelemetry protocol): traces, metrics and logs, sent as protobuf or OTLP/JSON,
//! into lastmile's model.
//!
//! The wire types are `opentelemetry-proto`'s generated prost messages (re-exported as
//! [`proto`]); their serde implementation follows the OTLP/JSON rules (hex ids, lowerCamelCase
//! keys, 64-bit integers as strings or numbers, enums as integers). What that crate leaves
//! unchecked is checked here: ids must be 16 (trace) or 8 (span) bytes.
//!
//! Each signal has a converter that consumes a decoded request and returns the model batch
//! plus the items it refused ([`Refusals`], reported to the client as OTLP
//! `partial_success`), or an [`OtlpError`] that refuses the whole request:
//!
//! - traces → [`lastmile_model::SpanBatch`] ([`spans_from_request`])
//! - logs → [`lastmile_model::LogBatch`], Loki-style streams ([`logs_from_request`])
//! - metrics → [`MetricsBatch`], Prometheus series per the OpenTelemetry
//!   Prometheus-compatibility rules, which lends out a [`lastmile_model::WriteBatch`]
//!   ([`metrics_from_request`])

mod body;
mod ids;
mod logs;
mod metrics;
pub mod naming;
mod refusals;
mod traces;
mod values;

pub use body::{Compression, Encoding, decode_request, decompress};
pub use logs::{INDEXED_RESOURCE_ATTRIBUTES, logs_from_request};
pub use metrics::{MetricsBatch, data_points_of, metrics_from_request};
pub use refusals::{Refusals, RefuseReason};
pub use traces::spans_from_request;
pub use values::{any_value_json, any_value_text};

/// The generated OTLP messages and gRPC service stubs (`opentelemetry-proto`).
pub mod proto {
    pub use opentelemetry_proto::tonic::collector::logs::v1 as logs_service;
    pub use opentelemetry_proto::tonic::collector::metrics::v1 as metrics_service;
    pub use opentelemetry_proto::tonic::collector::trace::v1 as trace_service;
    pub use opentelemetry_proto::tonic::common::v1 as common;
    pub use opentelemetry_proto::tonic::logs::v1 as logs;
    pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
    pub use opentelemetry_proto::tonic::resource::v1 as resource;
    pub use opentelemetry_proto::tonic::trace::v1 as trace;

    pub use logs_service::{ExportLogsServiceRequest, ExportLogsServiceResponse};
    pub use metrics_service::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
    pub use trace_service::{ExportTraceServiceRequest, ExportTraceServiceResponse};
}

/// Why a whole OTLP request is refused. Nothing of such a request is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtlpError {
    #[error(
        "unsupported Content-Type {0:?}: OTLP/HTTP bodies are application/x-protobuf or application/json"
    )]
    UnsupportedContentType(String),
    #[error("unsupported Content-Encoding {0:?}: OTLP/HTTP bodies are gzip or not encoded")]
    UnsupportedEncoding(String),
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLargeUndeclared { limit: usize },
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    #[error("malformed protobuf {message}: {detail}")]
    Protobuf {
        message: &'static str,
        detail: String,
    },
    #[error("invalid OTLP/JSON {message}: {detail}")]
    Json {
        message: &'static str,
        detail: String,
    },
    #[error("{path}.{field} is {len} bytes long; an OTLP {what} id is {want} bytes ({hex} hex digits in OTLP/JSON)", hex = want * 2)]
    IdLength {
        path: String,
        field: &'static str,
        what: &'static str,
        len: usize,
        want: usize,
    },
}

impl OtlpError {
    /// The HTTP status this error calls for: 413 (too large), 415 (media type or encoding)
    /// or 400 (anything malformed).
    pub fn http_status(&self) -> u16 {
        match self {
            OtlpError::UnsupportedContentType(_) | OtlpError::UnsupportedEncoding(_) => 415,
            OtlpError::TooLarge { .. } | OtlpError::TooLargeUndeclared { .. } => 413,
            _ => 400,
        }
    }

    /// A short, fixed name for self-metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            OtlpError::UnsupportedContentType(_) | OtlpError::UnsupportedEncoding(_) => {
                "unsupported_media_type"
            }
            OtlpError::TooLarge { .. } | OtlpError::TooLargeUndeclared { .. } => "too_large",
            OtlpError::Gzip(_) => "bad_compression",
            OtlpError::Protobuf { .. } => "bad_protobuf",
            OtlpError::Json { .. } => "bad_json",
            OtlpError::IdLength { .. } => "invalid_id",
        }
    }
}
