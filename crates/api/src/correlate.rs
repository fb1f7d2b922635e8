//! `GET /api/v1/correlate?trace_id=…` (or `?text=…`: a log line or exemplar as shown,
//! from which the trace id is read): spans with critical path and slowest span, the
//! trace's log lines, exemplars pointing at it, and RED metrics of its services.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lastmile_model::TraceId;
use lastmile_query::correlate::{correlate, trace_id_in_text};
use serde_json::json;

use crate::params::Params;
use crate::{ApiError, AppState};

/// Log lines of one trace shown at most: a trace that logs more is a loop, not a story.
const MAX_LOG_LINES: usize = 10_000;

fn wanted_trace(p: &Params) -> Result<TraceId, ApiError> {
    if let Some(raw) = p.get("trace_id").filter(|s| !s.is_empty()) {
        return TraceId::parse_any(raw).ok_or_else(|| {
            ApiError::BadData(format!(
                "invalid parameter \"trace_id\": {raw:?} is not a trace id (32 hex digits, a UUID, base64, B3 or traceparent)"
            ))
        });
    }
    if let Some(text) = p.get("text").filter(|s| !s.is_empty()) {
        return trace_id_in_text(text).ok_or_else(|| {
            ApiError::BadData("invalid parameter \"text\": no trace id found in it".into())
        });
    }
    Err(ApiError::BadData(
        "missing parameter: trace_id (or text, a log line carrying one)".into(),
    ))
}

pub async fn handle(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let id = wanted_trace(&p)?;
    let opts = st.query.clone();
    let found = tokio::task::spawn_blocking(move || {
        let logs = st.logs.store.clone();
        let lines = move |trace, start_ns, end_ns| {
            logs.lines_for_trace(trace, start_ns, end_ns, MAX_LOG_LINES)
                .map_err(|e| e.to_string())
        };
        correlate(&st.db, &st.traces, Some(&lines), id, &opts)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match found {
        Some(c) => Ok(axum::Json(json!({"status": "success", "data": c})).into_response()),
        None => Err(ApiError::NotFound(format!("trace not found: {id}"))),
    }
}
