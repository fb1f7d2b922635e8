//! Loki's HTTP API: push (`POST /loki/api/v1/push`) and the query endpoints
//! (`query_range`, `query`, `labels`, `label/{name}/values`, `series`), in Loki's JSON
//! shapes. Errors are plain text, as Loki sends them: 400 for the client's mistakes,
//! 413/415 for bodies refused before decoding, 500/503 for the server's troubles.
//!
//! Push checks run in order, each before the work the next needs: declared size, media
//! type, size as read, content encoding (gzip, capped), decoding (snappy capped, then
//! protobuf or JSON), label validation. Only a request that passes them all reaches the
//! store, and it is acknowledged (204) once its WAL record is durable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use lastmile_log_store::{Direction, LogAppendStats, LogStore, LogStoreError};
use lastmile_model::{Labels, LogBatch};
use lastmile_query::logql::{self, LogqlError, LogqlOptions, LogqlResult};
use lastmile_receivers::logs::{TraceFields, enrich_batch};
use lastmile_receivers::loki::{self as decode, LokiPushError, PushFormat};
use serde_json::{Value, json};

use crate::AppState;
use crate::params::Params;

/// What the log routes need: the store and how lines are read at ingest.
#[derive(Clone)]
pub struct LogsState {
    pub store: Arc<LogStore>,
    /// Field names that carry trace and span ids in log bodies and metadata.
    pub trace_fields: Arc<TraceFields>,
    pub query: LogqlOptions,
}

/// A Loki-style error: status and a plain-text message.
#[derive(Debug)]
pub struct LokiError(pub StatusCode, pub String);

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = self.0.as_u16(), error = %self.1, "log request failed");
        }
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

fn bad(msg: impl Into<String>) -> LokiError {
    LokiError(StatusCode::BAD_REQUEST, msg.into())
}

impl From<LogStoreError> for LokiError {
    fn from(e: LogStoreError) -> Self {
        match e {
            LogStoreError::Closed | LogStoreError::Store(_) => {
                LokiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => LokiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<LogqlError> for LokiError {
    fn from(e: LogqlError) -> Self {
        match e {
            LogqlError::Storage(s) => s.into(),
            other => bad(other.to_string()),
        }
    }
}

/// Why a push was refused, as counted in `lastmile_loki_push_rejected_requests_total`.
pub fn push_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "too_large",
        415 => "unsupported_media_type",
        400 => "invalid",
        _ => "unavailable",
    }
}

pub async fn push(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match push_inner(&st, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            st.metrics.loki_push_rejected(push_reason(e.0));
            tracing::debug!(status = e.0.as_u16(), error = %e.1, "Loki push refused");
            e.into_response()
        }
    }
}

async fn push_inner(st: &AppState, headers: &HeaderMap, body: Body) -> Result<(), LokiError> {
    let limit = st.limits.max_request_bytes;
    let too_large = |m: String| LokiError(StatusCode::PAYLOAD_TOO_LARGE, m);
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(format!(
            "request body of {len} bytes exceeds the limit of {limit} bytes"
        )));
    }
    let media = |e: LokiPushError| LokiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
    let format = PushFormat::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(media)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    if let Some(e) = &encoding {
        let e = e.trim().to_ascii_lowercase();
        if !matches!(e.as_str(), "" | "identity" | "gzip" | "x-gzip") {
            return Err(media(LokiPushError::UnsupportedContentEncoding(e)));
        }
    }
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large(format!("request body exceeds the limit of {limit} bytes"))
            } else {
                bad(format!("could not read request body: {e}"))
            }
        })?
        .to_bytes();
    let max = st.limits.max_decompressed_bytes;
    let refuse = |e: LokiPushError| {
        if e.is_too_large() {
            too_large(e.to_string())
        } else if e.is_unsupported_media() {
            media(e)
        } else {
            bad(e.to_string())
        }
    };
    let raw = decode::decode_content_encoding(encoding.as_deref(), &body, max).map_err(refuse)?;
    let batch = decode::decode_push(format, &raw, max).map_err(refuse)?;
    let stats = store_logs(st, batch).await?;
    let format_name = match format {
        PushFormat::Json => "json",
        PushFormat::Protobuf => "protobuf",
    };
    st.metrics.loki_push_received(
        format_name,
        body.len() as u64,
        stats.entries as u64,
        stats.bytes as u64,
    );
    Ok(())
}

/// Stores a decoded batch, whatever brought it (Loki push, OTLP logs): trace and span ids
/// are filled from metadata or the line first, then the log rules apply; the answer comes
/// once the WAL record is durable.
pub async fn store_logs(st: &AppState, mut batch: LogBatch) -> Result<LogAppendStats, LokiError> {
    enrich_batch(&mut batch, &st.logs.trace_fields);
    // Log rules (inheritance, deny list, drop and sample) see the ids just found.
    let ruled = st.rules.current().apply_logs(&mut batch);
    st.metrics.log_rules_applied(&ruled);
    let store = st.logs.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.append_owned(batch))
        .await
        .map_err(|e| {
            LokiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("log append task failed: {e}"),
            )
        })??;
    Ok(stats)
}

/// `POST /api/v1/admin/logs/flush`: commits the log index now (normally every
/// `logs.commit_interval`), so on-disk figures and a restart see everything.
pub async fn flush(State(st): State<AppState>) -> Result<Response, LokiError> {
    let store = st.logs.store.clone();
    tokio::task::spawn_blocking(move || store.commit())
        .await
        .map_err(|e| {
            LokiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("flush task failed: {e}"),
            )
        })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Loki's timestamp parameters: float seconds, integer seconds (≤ 10 digits) or
/// nanoseconds, or RFC 3339.
pub fn parse_loki_time(v: &str) -> Result<i64, String> {
    let v = v.trim();
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
    {
        if !f.is_finite() || f.abs() > 9.2e9 {
            return Err(format!("timestamp {v:?} is out of range"));
        }
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round() / 1000.0;
        return Ok(secs as i64 * 1_000_000_000 + (frac * 1e9).round() as i64);
    }
    if let Ok(n) = v.parse::<i64>() {
        if v.trim_start_matches('-').len() <= 10 {
            return n
                .checked_mul(1_000_000_000)
                .ok_or_else(|| format!("timestamp {v:?} is out of range"));
        }
        return Ok(n);
    }
    lastmile_model::time::parse_api_time(v)
        .map(|ms| ms.saturating_mul(1_000_000))
        .map_err(|_| format!("cannot parse {v:?} to a valid timestamp"))
}

/// Loki's step/duration parameters: a Prometheus duration or float seconds.
fn parse_step(v: &str) -> Result<i64, String> {
    if let Ok(f) = v.trim().parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.2e9 {
            return Err(format!("step {v:?} is out of range"));
        }
        return Ok((f * 1e9).round() as i64);
    }
    lastmile_model::duration::parse_duration(v.trim())
        .map_err(|e| e.to_string())
        .and_then(|d| {
            i64::try_from(d.as_nanos()).map_err(|_| format!("step {v:?} is out of range"))
        })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn time_param(p: &Params, key: &str, default: i64) -> Result<i64, LokiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(v) => parse_loki_time(v).map_err(|e| bad(format!("invalid {key}: {e}"))),
    }
}

fn limit_param(p: &Params) -> Result<usize, LokiError> {
    match p.get("limit") {
        None | Some("") => Ok(100),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            bad(format!(
                "invalid limit: {v:?} is not a non-negative integer"
            ))
        }),
    }
}

fn direction_param(p: &Params) -> Result<Direction, LokiError> {
    match p.get("direction").map(|d| d.to_ascii_lowercase()) {
        None => Ok(Direction::Backward),
        Some(d) if d.is_empty() || d == "backward" => Ok(Direction::Backward),
        Some(d) if d == "forward" => Ok(Direction::Forward),
        Some(d) => Err(bad(format!(
            "invalid direction {d:?}: use forward or backward"
        ))),
    }
}

fn query_param(p: &Params) -> Result<String, LokiError> {
    match p.get("query") {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(bad("missing parameter \"query\"")),
    }
}

pub async fn query_range(State(st): State<AppState>, p: Params) -> Result<Response, LokiError> {
    let query = query_param(&p)?;
    let now = now_ns();
    let end = time_param(&p, "end", now)?;
    let start = time_param(&p, "start", end.saturating_sub(3_600_000_000_000))?;
    if end < start {
        return Err(bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    let limit = limit_param(&p)?;
    let direction = direction_param(&p)?;
    let step = match p.get("step") {
        None | Some("") => {
            // Loki's default: a resolution of about 250 points, at least 1s.
            ((end - start) / 250_000_000_000).max(1) * 1_000_000_000
        }
        Some(v) => parse_step(v).map_err(|e| bad(format!("invalid step: {e}")))?,
    };
    let store = st.logs.store.clone();
    let opts = st.logs.query.clone();
    let result = tokio::task::spawn_blocking(move || {
        logql::range_query(&store, &query, start, end, step, limit, direction, &opts)
    })
    .await
    .map_err(|e| {
        LokiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query task failed: {e}"),
        )
    })??;
    Ok(axum::Json(answer(result)).into_response())
}

pub async fn query(State(st): State<AppState>, p: Params) -> Result<Response, LokiError> {
    let query = query_param(&p)?;
    let time = time_param(&p, "time", now_ns())?;
    limit_param(&p)?;
    direction_param(&p)?;
    let store = st.logs.store.clone();
    let opts = st.logs.query.clone();
    let result =
        tokio::task::spawn_blocking(move || logql::instant_query(&store, &query, time, &opts))
            .await
            .map_err(|e| {
                LokiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("query task failed: {e}"),
                )
            })??;
    Ok(axum::Json(answer(result)).into_response())
}

fn labels_json(l: &Labels) -> Value {
    serde_json::to_value(l).unwrap_or_else(|_| json!({}))
}

/// Seconds, as a JSON number (the Prometheus-style point time Loki uses in matrices).
fn point_time(ns: i64) -> Value {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    if frac == 0 {
        json!(secs)
    } else {
        json!(ns as f64 / 1e9)
    }
}

fn answer(r: LogqlResult) -> Value {
    let (result_type, result) = match r {
        LogqlResult::Streams(streams) => (
            "streams",
            streams
                .into_iter()
                .map(|s| {
                    json!({
                        "stream": labels_json(&s.labels),
                        "values": s.entries.into_iter().map(|(t, l)| json!([t.to_string(), l])).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>(),
        ),
        LogqlResult::Matrix(series) => (
            "matrix",
            series
                .into_iter()
                .map(|s| {
                    json!({
                        "metric": labels_json(&s.labels),
                        "values": s.points.into_iter().map(|(t, v)| json!([point_time(t), lastmile_model::format_value(v)])).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
        LogqlResult::Vector(v) => (
            "vector",
            v.into_iter()
                .map(|(l, t, v)| {
                    json!({"metric": labels_json(&l), "value": [point_time(t), lastmile_model::format_value(v)]})
                })
                .collect(),
        ),
    };
    json!({
        "status": "success",
        "data": {"resultType": result_type, "result": result, "stats": {}},
    })
}

/// Default window of the label endpoints: the last 6 hours (Loki's default).
const LABELS_LOOKBACK_NS: i64 = 6 * 3_600_000_000_000;

fn label_range(p: &Params) -> Result<(i64, i64), LokiError> {
    let end = time_param(p, "end", now_ns())?;
    let start = time_param(p, "start", end.saturating_sub(LABELS_LOOKBACK_NS))?;
    Ok((start, end))
}

pub async fn labels(State(st): State<AppState>, p: Params) -> Result<Response, LokiError> {
    let (start, end) = label_range(&p)?;
    let names = match p.get("query").filter(|q| !q.trim().is_empty()) {
        None => st.logs.store.label_names(start, end),
        Some(q) => {
            let m = logql::parse_selector(q).map_err(|e| bad(e.to_string()))?;
            let mut names: Vec<String> = st
                .logs
                .store
                .streams(&m, start, end)
                .iter()
                .flat_map(|s| {
                    s.labels
                        .iter()
                        .map(|l| l.name.to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    Ok(axum::Json(json!({"status": "success", "data": names})).into_response())
}

pub async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, LokiError> {
    let (start, end) = label_range(&p)?;
    let values = match p.get("query").filter(|q| !q.trim().is_empty()) {
        None => st.logs.store.label_values(&name, start, end),
        Some(q) => {
            let m = logql::parse_selector(q).map_err(|e| bad(e.to_string()))?;
            let mut values: Vec<String> = st
                .logs
                .store
                .streams(&m, start, end)
                .iter()
                .filter_map(|s| s.labels.get(&name).map(str::to_string))
                .collect();
            values.sort();
            values.dedup();
            values
        }
    };
    Ok(axum::Json(json!({"status": "success", "data": values})).into_response())
}

pub async fn series(State(st): State<AppState>, p: Params) -> Result<Response, LokiError> {
    let (start, end) = label_range(&p)?;
    let mut selectors = Vec::new();
    for m in p.all("match[]").into_iter().chain(p.all("match")) {
        selectors.push(
            logql::parse_selector(&m).map_err(|e| bad(format!("invalid match[] {m:?}: {e}")))?,
        );
    }
    if selectors.is_empty() {
        return Err(bad(
            "missing parameter \"match[]\": give at least one stream selector",
        ));
    }
    let data: Vec<Value> = logql::series(&st.logs.store, &selectors, start, end)
        .iter()
        .map(labels_json)
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_time_formats() {
        assert_eq!(
            parse_loki_time("1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_loki_time("1700000000123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_loki_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_loki_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_loki_time("yesterday").is_err());
        assert_eq!(parse_step("15s").unwrap(), 15_000_000_000);
        assert_eq!(parse_step("0.5").unwrap(), 500_000_000);
    }
}
