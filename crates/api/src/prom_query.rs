//! `/api/v1/query`, `/api/v1/query_range` and `/api/v1/format_query`, in Prometheus's
//! shapes: values as strings, timestamps as float seconds.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lastmile_model::duration::parse_duration;
use lastmile_model::format_value;
use lastmile_model::time::ms_to_seconds;
use lastmile_query::promql::{self, QueryOptions, QueryResult, Value};
use serde_json::{Value as Json, json};

use crate::params::Params;
use crate::{ApiError, AppState};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration parameter: float seconds (`15`, `0.5`) or a Prometheus duration (`1m30s`).
fn duration_param(p: &Params, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(v) = p.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(secs) = v.parse::<f64>() {
        if (0.0..1e15).contains(&secs) {
            return Ok(Some(Duration::from_secs_f64(secs)));
        }
        return Err(ApiError::BadData(format!(
            "invalid parameter {key:?}: cannot parse {v:?} to a valid duration"
        )));
    }
    parse_duration(v).map(Some).map_err(|_| {
        ApiError::BadData(format!(
            "invalid parameter {key:?}: cannot parse {v:?} to a valid duration"
        ))
    })
}

fn options(st: &AppState, p: &Params) -> Result<QueryOptions, ApiError> {
    let mut o = st.query.clone();
    if let Some(t) = duration_param(p, "timeout")? {
        o.timeout = o.timeout.min(t);
    }
    Ok(o)
}

fn query_param(p: &Params) -> Result<String, ApiError> {
    p.get("query").map(str::to_owned).ok_or_else(|| {
        ApiError::BadData("invalid parameter \"query\": query must not be empty".into())
    })
}

fn point(t: i64, v: f64) -> Json {
    json!([ms_to_seconds(t), format_value(v)])
}

fn encode(r: QueryResult) -> Json {
    match r {
        QueryResult::Instant { t, value } => match value {
            Value::Scalar(v) => json!({"resultType": "scalar", "result": point(t, v)}),
            Value::String(s) => json!({"resultType": "string", "result": [ms_to_seconds(t), s]}),
            Value::Vector(v) => json!({
                "resultType": "vector",
                "result": v.iter().map(|s| json!({"metric": &*s.metric, "value": point(t, s.v)})).collect::<Vec<_>>(),
            }),
            Value::Matrix(m) => matrix(&m),
        },
        QueryResult::Range(m) => matrix(&m),
    }
}

fn matrix(m: &[promql::Series]) -> Json {
    json!({
        "resultType": "matrix",
        "result": m.iter().map(|s| json!({
            "metric": &*s.metric,
            "values": s.points.iter().map(|&(t, v)| point(t, v)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn run(
    f: impl FnOnce() -> Result<QueryResult, promql::PromqlError> + Send + 'static,
) -> Result<Response, ApiError> {
    let result = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(axum::Json(json!({"status": "success", "data": encode(result)})).into_response())
}

pub async fn query(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let t = p.time("time")?.unwrap_or_else(now_ms);
    let opts = options(&st, &p)?;
    let db = st.db.clone();
    run(move || promql::instant_query(&db, &q, t, &opts)).await
}

pub async fn query_range(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let start = p
        .time("start")?
        .ok_or_else(|| ApiError::BadData("invalid parameter \"start\": missing".into()))?;
    let end = p
        .time("end")?
        .ok_or_else(|| ApiError::BadData("invalid parameter \"end\": missing".into()))?;
    let step = duration_param(&p, "step")?
        .ok_or_else(|| ApiError::BadData("invalid parameter \"step\": missing".into()))?;
    let step = step.as_millis() as i64;
    let opts = options(&st, &p)?;
    let db = st.db.clone();
    run(move || promql::range_query(&db, &q, start, end, step, &opts)).await
}

pub async fn format_query(p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let expr = promql::parse(&q)?;
    Ok(axum::Json(json!({"status": "success", "data": expr.prettify()})).into_response())
}
