//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON, optionally
//! gzip. Answers in the request's encoding (an `Export*ServiceResponse`, or a
//! `google.rpc.Status` for errors), as the OTLP/HTTP specification asks; a body of an
//! unknown media type gets a plain-text 415.
//!
//! Checks run in order, each before the work the next needs: declared size, media type and
//! encoding, size as read, decompression against the limit, decoding, conversion.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use lastmile_receivers::otlp::proto::logs_service::ExportLogsPartialSuccess;
use lastmile_receivers::otlp::proto::metrics_service::ExportMetricsPartialSuccess;
use lastmile_receivers::otlp::proto::trace_service::ExportTracePartialSuccess;
use lastmile_receivers::otlp::proto::{
    ExportLogsServiceResponse, ExportMetricsServiceResponse, ExportTraceServiceResponse,
};
use lastmile_receivers::otlp::{Compression, Encoding, decompress};
use prost::Message;

use super::{Accepted, IngestError, Signal, ingest_body};
use crate::AppState;

/// The OTLP routes alone, for the OTLP HTTP address.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the OTLP HTTP address serves POST /v1/traces, /v1/metrics and /v1/logs\n",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::self_metrics::track,
        ))
        .with_state(state)
}

pub async fn traces(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(&st, Signal::Traces, &headers, body).await
}

pub async fn metrics(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(&st, Signal::Metrics, &headers, body).await
}

pub async fn logs(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle(&st, Signal::Logs, &headers, body).await
}

/// `google.rpc.Status`, the error body OTLP/HTTP prescribes (details left empty).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn handle(st: &AppState, signal: Signal, headers: &HeaderMap, body: Body) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let encoding = match Encoding::from_content_type(content_type) {
        Ok(e) => e,
        Err(e) => {
            st.metrics.otlp.rejected_request(signal, "http", e.reason());
            tracing::debug!(signal = signal.item(), error = %e, "OTLP request refused");
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{e}\n"),
            )
                .into_response();
        }
    };
    match receive(st, signal, encoding, headers, body).await {
        Ok(a) => success(signal, encoding, a),
        Err(e) => {
            st.metrics
                .otlp
                .rejected_request(signal, encoding.protocol(), e.reason());
            tracing::debug!(signal = signal.item(), error = %e, "OTLP request refused");
            failure(encoding, &e)
        }
    }
}

async fn receive(
    st: &AppState,
    signal: Signal,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, IngestError> {
    let limit = st.limits.max_request_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(IngestError::TooLarge(format!(
            "request body of {len} bytes exceeds the limit of {limit} bytes"
        )));
    }
    let compression = Compression::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )?;
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                IngestError::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
            } else {
                IngestError::BadBody(format!("could not read the request body: {e}"))
            }
        })?
        .to_bytes();
    st.metrics
        .otlp
        .received_bytes(signal, encoding.protocol(), body.len() as u64);
    let raw = decompress(compression, &body, st.limits.max_decompressed_bytes)?;
    ingest_body(st, signal, encoding, &raw).await
}

fn success(signal: Signal, encoding: Encoding, a: Accepted) -> Response {
    let partial = a.rejected > 0;
    let body = match encoding {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial.then(|| ExportTracePartialSuccess {
                    rejected_spans: a.rejected,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial.then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: a.rejected,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: a.rejected,
                    error_message: a.message.clone(),
                }),
            }
            .encode_to_vec(),
        },
        Encoding::Json => {
            let v = if partial {
                let field = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Metrics => "rejectedDataPoints",
                    Signal::Logs => "rejectedLogRecords",
                };
                // int64 as a decimal string, per the protobuf JSON mapping OTLP/JSON uses.
                serde_json::json!({
                    "partialSuccess": { field: a.rejected.to_string(), "errorMessage": a.message }
                })
            } else {
                serde_json::json!({})
            };
            v.to_string().into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

fn failure(encoding: Encoding, e: &IngestError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let code = e.grpc_code() as i32;
    let message = e.to_string();
    let body = match encoding {
        Encoding::Protobuf => RpcStatus { code, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}
