//! OTLP ingest, shared by OTLP/HTTP (`POST /v1/traces|metrics|logs`, on the main HTTP
//! address and the OTLP HTTP address) and OTLP/gRPC (the three collector services on the
//! OTLP gRPC address).
//!
//! A request is decoded and converted whole before anything is stored: one that fails
//! (malformed, an id of the wrong length) stores nothing and is refused with a precise
//! message. Items refused one by one (a span with an all-zero id, a delta-temporality sum,
//! a sample the store finds out of order) are reported in OTLP's `partial_success`.
//! Traces go to the span store (and span metrics), metrics through the relabel rules into the metrics store
//! (as remote write does), logs to the log store; each answers once the write is durable.

mod grpc;
mod http;
mod metrics;

use lastmile_receivers::otlp::proto::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
};
use lastmile_receivers::otlp::{
    self, OtlpError, Refusals, RefuseReason, logs_from_request, metrics_from_request,
    spans_from_request,
};

use crate::AppState;

pub use grpc::serve as serve_grpc;
pub use http::{logs as http_logs, metrics as http_metrics, router, traces as http_traces};
pub use metrics::OtlpMetrics;

/// The three OTLP signals, as self-metrics and messages name their items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// Label value of `lastmile_otlp_*` self-metrics.
    pub fn item(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }
}

/// An accepted request: how many items were refused (0: all stored) and why.
#[derive(Debug, Default)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

/// A request refused whole; nothing of it was stored.
#[derive(Debug)]
pub enum IngestError {
    /// Malformed, too large, or of a media type OTLP does not use.
    Invalid(OtlpError),
    /// Over the compressed size limit (413, checked before reading or decompressing).
    TooLarge(String),
    /// Could not be read (the client went away mid-body).
    BadBody(String),
    /// Converted series the store cannot take (cannot happen with lastmile's own mapping,
    /// kept so a mapping bug is a 400, not a panic).
    InvalidSeries(String),
    /// The store failed; retryable.
    Unavailable(String),
}

impl IngestError {
    pub fn http_status(&self) -> u16 {
        match self {
            IngestError::Invalid(e) => e.http_status(),
            IngestError::TooLarge(_) => 413,
            IngestError::BadBody(_) | IngestError::InvalidSeries(_) => 400,
            IngestError::Unavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Invalid(e) => e.reason(),
            IngestError::TooLarge(_) => "too_large",
            IngestError::BadBody(_) => "bad_body",
            IngestError::InvalidSeries(_) => "invalid_series",
            IngestError::Unavailable(_) => "unavailable",
        }
    }

    /// gRPC status for the same refusal (OTLP/gRPC retries only UNAVAILABLE and friends).
    pub fn grpc_code(&self) -> tonic::Code {
        match self.http_status() {
            413 => tonic::Code::ResourceExhausted,
            503 => tonic::Code::Unavailable,
            _ => tonic::Code::InvalidArgument,
        }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Invalid(e) => write!(f, "{e}"),
            IngestError::TooLarge(m)
            | IngestError::BadBody(m)
            | IngestError::InvalidSeries(m)
            | IngestError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl From<OtlpError> for IngestError {
    fn from(e: OtlpError) -> Self {
        IngestError::Invalid(e)
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Counts what a conversion refused and turns it into the answer.
fn accepted(
    st: &AppState,
    signal: Signal,
    protocol: &'static str,
    stored: u64,
    refused: &Refusals,
) -> Accepted {
    let m = &st.metrics.otlp;
    m.received(signal, protocol, stored);
    for (reason, n) in refused.by_reason() {
        m.refused(signal, protocol, reason, n);
    }
    if refused.is_empty() {
        return Accepted::default();
    }
    Accepted {
        rejected: refused.total() as i64,
        message: refused.message(signal.noun(), stored + refused.total()),
    }
}

pub async fn ingest_traces(
    st: &AppState,
    req: ExportTraceServiceRequest,
    protocol: &'static str,
) -> Result<Accepted, IngestError> {
    let (batch, refused) = spans_from_request(req)?;
    if !batch.is_empty() {
        crate::spans::ingest_spans(st, &batch)
            .await
            .map_err(|e| IngestError::Unavailable(format!("the span store failed: {e}")))?;
    }
    Ok(accepted(
        st,
        Signal::Traces,
        protocol,
        batch.span_count() as u64,
        &refused,
    ))
}

pub async fn ingest_logs(
    st: &AppState,
    req: ExportLogsServiceRequest,
    protocol: &'static str,
) -> Result<Accepted, IngestError> {
    let (batch, refused) = logs_from_request(req, now_ns())?;
    let stats = if batch.entry_count() == 0 {
        Default::default()
    } else {
        crate::loki::store_logs(st, batch)
            .await
            .map_err(|e| IngestError::Unavailable(format!("the log store failed: {}", e.1)))?
    };
    Ok(accepted(
        st,
        Signal::Logs,
        protocol,
        stats.entries as u64,
        &refused,
    ))
}

pub async fn ingest_metrics(
    st: &AppState,
    req: ExportMetricsServiceRequest,
    protocol: &'static str,
) -> Result<Accepted, IngestError> {
    let now_ms = now_ns() / 1_000_000;
    let (batch, refused) = metrics_from_request(req, now_ms)?;
    let points = batch.data_points();
    let write = batch
        .write_batch()
        .map_err(|e| IngestError::InvalidSeries(e.to_string()))?;
    let arena = lastmile_rules::StringArena::new();
    let (write, ruled) = st.rules.apply(write, &arena);
    st.metrics.rules_applied(&ruled);
    let outcome = st
        .db
        .write(&write)
        .await
        .map_err(|e| IngestError::Unavailable(format!("the metrics store failed: {e}")))?;
    let mut answer = accepted(st, Signal::Metrics, protocol, points, &refused);
    // Samples the store refused (one OTLP point can be many samples): counted and reported
    // after the points the conversion refused.
    let mut store = Refusals::default();
    store.add_counted(RefuseReason::OutOfOrder, outcome.out_of_order);
    store.add_counted(RefuseReason::TooOld, outcome.too_old);
    store.add_counted(
        RefuseReason::DuplicateTimestamp,
        outcome.duplicate_timestamp,
    );
    store.add_counted(RefuseReason::TooFarInFuture, outcome.too_far_in_future);
    if !store.is_empty() {
        for (reason, n) in store.by_reason() {
            st.metrics
                .otlp
                .refused(Signal::Metrics, protocol, reason, n);
        }
        let part = store.message("samples", outcome.samples + store.total());
        answer.rejected += store.total() as i64;
        answer.message = if answer.message.is_empty() {
            part
        } else {
            format!("{}; {part}", answer.message)
        };
    }
    Ok(answer)
}

/// The decoded request of one signal, whatever transport brought it.
pub(crate) async fn ingest_body(
    st: &AppState,
    signal: Signal,
    encoding: otlp::Encoding,
    body: &[u8],
) -> Result<Accepted, IngestError> {
    let protocol = encoding.protocol();
    match signal {
        Signal::Traces => {
            let req = otlp::decode_request(encoding, body, "ExportTraceServiceRequest")?;
            ingest_traces(st, req, protocol).await
        }
        Signal::Metrics => {
            let req = otlp::decode_request(encoding, body, "ExportMetricsServiceRequest")?;
            ingest_metrics(st, req, protocol).await
        }
        Signal::Logs => {
            let req = otlp::decode_request(encoding, body, "ExportLogsServiceRequest")?;
            ingest_logs(st, req, protocol).await
        }
    }
}
