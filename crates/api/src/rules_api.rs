//! The rule engine over HTTP: `/api/v1/status/rules`, `POST /-/reload`, canary promotion
//! and rollback, and a flush of the span head (where tail sampling's drops take effect).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lastmile_rules::Reloaded;
use serde_json::json;

use crate::params::Params;
use crate::{ApiError, AppState};

fn success(data: impl serde::Serialize) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Versions (stable, canary and how they compare), the last reload, the cardinality
/// guard, naming violations and tail sampling.
pub async fn status(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let limit = p.usize("limit")?.unwrap_or(10);
    let rules = st.rules.clone();
    let s = tokio::task::spawn_blocking(move || rules.status(limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(success(s))
}

/// Re-reads the rules files (and the config, if it holds rules): parse, validate, run the
/// file's tests, then swap. A bad file is refused with its line and reason, and the rules
/// in force stay.
pub async fn reload(State(st): State<AppState>) -> Response {
    let rules = st.rules.clone();
    let result = tokio::task::spawn_blocking(move || rules.reload()).await;
    match result {
        Ok(Ok(r)) => {
            let text = match r {
                // The file watcher may have taken the change first: say what runs.
                Reloaded::Unchanged {
                    version,
                    canary: None,
                } => format!("rules unchanged: version {version} stays active\n"),
                Reloaded::Unchanged {
                    version,
                    canary: Some((canary, ppm)),
                } => format!(
                    "rules unchanged: version {version} stays active; version {canary} runs as a canary on {}% of streams; promote it with POST /api/v1/rules/promote\n",
                    ppm as f64 / 1e4
                ),
                Reloaded::Activated { version } => {
                    format!("rules reloaded: version {version} is active\n")
                }
                Reloaded::Canary {
                    version,
                    fraction_ppm,
                } => format!(
                    "rules reloaded: version {version} runs as a canary on {}% of streams; promote it with POST /api/v1/rules/promote\n",
                    fraction_ppm as f64 / 1e4
                ),
            };
            (StatusCode::OK, text).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            format!("failed to reload rules, the previous rules stay active: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

pub async fn promote(State(st): State<AppState>) -> Response {
    match st.rules.promote() {
        Ok(v) => success(json!({"version": v})),
        Err(e) => (
            StatusCode::CONFLICT,
            axum::Json(json!({"status": "error", "errorType": "conflict", "error": e})),
        )
            .into_response(),
    }
}

pub async fn rollback(State(st): State<AppState>) -> Response {
    match st.rules.rollback() {
        Ok(v) => success(json!({"rolledBack": v})),
        Err(e) => (
            StatusCode::CONFLICT,
            axum::Json(json!({"status": "error", "errorType": "conflict", "error": e})),
        )
            .into_response(),
    }
}

/// Writes the span head as a block now: pending sampling decisions are taken and dropped
/// traces are left out.
pub async fn flush_traces(State(st): State<AppState>) -> Result<Response, ApiError> {
    let traces = st.traces.clone();
    tokio::task::spawn_blocking(move || traces.flush())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
