//! Tempo-compatible trace API: trace by id (OTLP/JSON), search, tag names and values.
//!
//! - `GET /api/traces/{id}` → `{"batches": [resourceSpans…]}` (Tempo v1 shape)
//! - `GET /api/v2/traces/{id}` → `{"trace": {"resourceSpans": […]}}`
//! - `GET /api/search?tags=…&minDuration=…&maxDuration=…&limit=…&start=…&end=…`, plus
//!   lastmile's own `service`, `operation` and `status` parameters
//! - `GET /api/search/tags`, `GET /api/search/tag/{tag}/values`, `GET /api/echo`
//!
//! Ids are accepted in any spelling lastmile normalises (hex, UUID, base64, B3,
//! traceparent). Errors are plain text, as Tempo answers.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lastmile_model::StatusCode as SpanStatus;
use lastmile_model::TraceId;
use lastmile_model::duration::parse_go_duration;
use lastmile_trace_store::{TraceQuery, TraceSummary};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::PlainError;
use crate::otlp_json::resource_spans;
use crate::params::Params;

/// Most traces one search may return.
const MAX_LIMIT: usize = 10_000;

pub fn parse_trace_id(raw: &str) -> Result<TraceId, PlainError> {
    TraceId::parse_any(raw).ok_or_else(|| {
        PlainError::bad_request(format!(
            "invalid trace id {raw:?}: expected 32 hex digits (or a UUID, a 16-digit 64-bit id, base64, a B3 or traceparent header)"
        ))
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, lastmile_trace_store::TraceStoreError> + Send + 'static,
) -> Result<T, PlainError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PlainError::internal(e.to_string()))?
        .map_err(|e| PlainError::internal(e.to_string()))
}

async fn load(st: &AppState, raw: &str) -> Result<lastmile_model::SpanBatch, PlainError> {
    let id = parse_trace_id(raw)?;
    let store = st.traces.clone();
    blocking(move || store.trace(id))
        .await?
        .ok_or_else(|| PlainError::new(StatusCode::NOT_FOUND, format!("trace not found: {}", id)))
}

pub async fn trace_v1(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&st, &id).await {
        Ok(b) => axum::Json(json!({"batches": resource_spans(&b)})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn trace_v2(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&st, &id).await {
        Ok(b) => {
            axum::Json(json!({"trace": {"resourceSpans": resource_spans(&b)}})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn duration_param(p: &Params, key: &str) -> Result<Option<u64>, PlainError> {
    match p.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_go_duration(v)
            .map(|d: Duration| Some(d.as_nanos().min(u64::MAX as u128) as u64))
            .map_err(|e| PlainError::bad_request(format!("invalid {key}: {e}"))),
    }
}

/// Unix seconds (Tempo's `start`/`end`) to nanoseconds.
fn seconds_param(p: &Params, key: &str) -> Result<Option<u64>, PlainError> {
    match p.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .map(Some)
            .ok_or_else(|| {
                PlainError::bad_request(format!(
                    "invalid {key}: {v:?} is not a Unix time in seconds"
                ))
            }),
    }
}

fn parse_status(v: &str) -> Result<SpanStatus, PlainError> {
    match v.to_ascii_lowercase().as_str() {
        "error" | "2" | "status_code_error" => Ok(SpanStatus::Error),
        "ok" | "1" | "status_code_ok" => Ok(SpanStatus::Ok),
        "unset" | "0" | "status_code_unset" => Ok(SpanStatus::Unset),
        _ => Err(PlainError::bad_request(format!(
            "invalid status {v:?}: expected error, ok or unset"
        ))),
    }
}

/// Tempo's `tags` parameter: logfmt `key=value` pairs, values optionally double-quoted.
pub fn parse_logfmt_tags(s: &str) -> Result<Vec<(String, String)>, PlainError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err(PlainError::bad_request(format!(
                "invalid tags {s:?}: expected key=value pairs separated by spaces"
            )));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(PlainError::bad_request(format!(
                            "invalid tags {s:?}: unterminated quoted value"
                        )));
                    }
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        out.push((key, value));
    }
}

pub fn trace_query(p: &Params) -> Result<TraceQuery, PlainError> {
    if p.get("q")
        .is_some_and(|q| !q.trim().is_empty() && q.trim() != "{}")
    {
        return Err(PlainError::bad_request(
            "TraceQL is not supported: search with tags=, minDuration=, maxDuration=, service=, operation= and status=",
        ));
    }
    let mut q = TraceQuery {
        start_ns: seconds_param(p, "start")?,
        end_ns: seconds_param(p, "end")?,
        min_duration_ns: duration_param(p, "minDuration")?,
        max_duration_ns: duration_param(p, "maxDuration")?,
        service: p
            .get("service")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        operation: p
            .get("operation")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        status: p
            .get("status")
            .filter(|s| !s.is_empty())
            .map(parse_status)
            .transpose()?,
        tags: Vec::new(),
        limit: 20,
    };
    if let Some(limit) = p.get("limit").filter(|s| !s.is_empty()) {
        q.limit = limit
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| PlainError::bad_request(format!("invalid limit {limit:?}")))?
            .min(MAX_LIMIT);
    }
    for (k, v) in parse_logfmt_tags(p.get("tags").unwrap_or(""))? {
        match k.as_str() {
            "name" | "span.name" => q.operation = Some(v),
            "status" | "status.code" => q.status = Some(parse_status(&v)?),
            "service.name" | "resource.service.name" if q.service.is_none() => q.service = Some(v),
            _ => q.tags.push((k, v)),
        }
    }
    Ok(q)
}

pub fn summary_json(s: &TraceSummary) -> Value {
    json!({
        "traceID": s.trace_id.to_hex(),
        "rootServiceName": s.root_service,
        "rootTraceName": s.root_name,
        "startTimeUnixNano": s.start_ns.to_string(),
        "durationMs": s.duration_ns / 1_000_000,
        "durationNanos": s.duration_ns.to_string(),
        "spanCount": s.span_count,
        "errorCount": s.error_count,
        "services": s.services.iter().map(|(name, n)| json!({"name": name, "spanCount": n})).collect::<Vec<_>>(),
    })
}

pub async fn search(State(st): State<AppState>, p: Params) -> Response {
    let q = match trace_query(&p) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let store = st.traces.clone();
    match blocking(move || store.search(&q)).await {
        Ok(found) => axum::Json(json!({
            "traces": found.iter().map(summary_json).collect::<Vec<_>>(),
            "metrics": {"completedJobs": 1, "totalJobs": 1},
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn tags() -> Response {
    axum::Json(json!({"tagNames": ["service.name", "name", "status"]})).into_response()
}

pub async fn tag_values(State(st): State<AppState>, Path(tag): Path<String>) -> Response {
    let store = st.traces.clone();
    let ops = match blocking(move || Ok(store.operations())).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let values: Vec<String> = match tag.as_str() {
        "service.name" | "resource.service.name" => ops.into_iter().map(|(s, _)| s).collect(),
        "name" | "span.name" => {
            let mut v: Vec<String> = ops.into_iter().flat_map(|(_, n)| n).collect();
            v.sort();
            v.dedup();
            v
        }
        "status" => vec!["error".into(), "ok".into(), "unset".into()],
        _ => Vec::new(),
    };
    axum::Json(json!({"tagValues": values})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_tags_parse_with_quotes() {
        let t =
            parse_logfmt_tags(r#"service.name=checkout  http.route="/a b" x="q\"uote""#).unwrap();
        assert_eq!(
            t,
            vec![
                ("service.name".to_owned(), "checkout".to_owned()),
                ("http.route".to_owned(), "/a b".to_owned()),
                ("x".to_owned(), "q\"uote".to_owned()),
            ]
        );
        assert!(parse_logfmt_tags("novalue").is_err());
        assert!(parse_logfmt_tags("a=\"open").is_err());
        assert_eq!(parse_logfmt_tags("  ").unwrap(), vec![]);
    }
}
