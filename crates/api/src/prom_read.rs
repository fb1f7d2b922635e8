//! Prometheus-compatible read endpoints, plus a raw export and a flush for admins.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lastmile_model::format_value;
use lastmile_model::time::ms_to_seconds;
use lastmile_query::{TimeRange, metadata_queries as mq, parse_match_params, selectors_in_expr};
use serde::Serialize;
use serde_json::{Value, json};

use crate::params::Params;
use crate::{ApiError, AppState};

fn success(data: impl Serialize) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn range(p: &Params) -> Result<TimeRange, ApiError> {
    Ok(TimeRange::new(p.time("start")?, p.time("end")?)?)
}

pub async fn series(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let sets = parse_match_params(&p.all("match[]"))?;
    let out = mq::series(&st.db, &sets, range(&p)?, p.usize("limit")?)?;
    Ok(success(out))
}

pub async fn labels(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let sets = parse_match_params(&p.all("match[]"))?;
    Ok(success(mq::label_names(
        &st.db,
        &sets,
        range(&p)?,
        p.usize("limit")?,
    )?))
}

pub async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    if !is_label_name(&name) {
        return Err(ApiError::BadData(format!("invalid label name: {name:?}")));
    }
    let sets = parse_match_params(&p.all("match[]"))?;
    Ok(success(mq::label_values(
        &st.db,
        &name,
        &sets,
        range(&p)?,
        p.usize("limit")?,
    )?))
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub async fn exemplars(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let query = p
        .get("query")
        .ok_or_else(|| ApiError::BadData("missing parameter \"query\"".into()))?;
    let sets = selectors_in_expr(query)?;
    let r = range(&p)?;
    let data: Vec<Value> = st
        .db
        .exemplars(&sets, r.start, r.end)
        .into_iter()
        .map(|(labels, ex)| {
            let ex: Vec<Value> = ex
                .into_iter()
                .map(|e| json!({"labels": e.labels, "value": format_value(e.value), "timestamp": ms_to_seconds(e.timestamp)}))
                .collect();
            json!({"seriesLabels": labels, "exemplars": ex})
        })
        .collect();
    Ok(success(data))
}

pub async fn metadata(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let limit = p.usize("limit")?;
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let mut out: BTreeMap<String, Vec<lastmile_model::MetricMetadata>> = BTreeMap::new();
    for (name, md) in st.db.metadata() {
        if metric.is_some_and(|m| m != name) {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        out.insert(name, vec![md]);
    }
    Ok(success(out))
}

/// Prometheus's TSDB status, plus the cardinality explorer: series per value of a
/// `focusLabel` (VictoriaMetrics's parameter name), and from the cardinality guard the
/// series per metric and their growth over the last hour, and which rule is limiting
/// what.
pub async fn tsdb_status(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let limit = p.usize("limit")?.unwrap_or(10);
    let focus = p
        .get("focusLabel")
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    if let Some(f) = &focus
        && !is_label_name(f)
    {
        return Err(ApiError::BadData(format!("invalid focusLabel: {f:?}")));
    }
    let db = st.db.clone();
    let rules = st.rules.clone();
    let (s, focus_counts, explorer) = tokio::task::spawn_blocking(move || {
        let focus_counts = focus
            .as_deref()
            .map(|f| db.series_count_by_label_value(f, limit));
        (db.status(limit), focus_counts, rules.explorer(limit))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let pairs = |v: &[(String, u64)]| -> Vec<Value> {
        v.iter()
            .map(|(n, c)| json!({"name": n, "value": c}))
            .collect()
    };
    let c = &s.cardinality;
    Ok(success(json!({
        "headStats": {
            "numSeries": s.head.num_series,
            "numLabelPairs": c.num_label_pairs,
            "numSamples": s.head.num_samples,
            "chunkBytes": s.head.chunk_bytes,
            "minTime": s.head.min_time,
            "maxTime": s.head.max_time,
        },
        "seriesCountByMetricName": pairs(&c.series_count_by_metric_name),
        "labelValueCountByLabelName": pairs(&c.label_value_count_by_label_name),
        "memoryInBytesByLabelName": pairs(&c.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": pairs(&c.series_count_by_label_value_pair),
        "seriesCountByFocusLabelValue": focus_counts.as_deref().map(pairs),
        "cardinalityGuard": explorer,
        "blocks": s.blocks,
    })))
}

pub async fn buildinfo(State(st): State<AppState>) -> Response {
    success(
        json!({"version": st.version, "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": ""}),
    )
}

/// Raw samples as JSON lines, one series per line, in VictoriaMetrics's export format:
/// `{"metric":{…},"values":[…],"timestamps":[…]}` (timestamps in milliseconds).
pub async fn export(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let sets = parse_match_params(&p.all("match[]"))?;
    let r = range(&p)?;
    let db = st.db.clone();
    let series = tokio::task::spawn_blocking(move || mq::export(&db, &sets, r))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut out = Vec::new();
    for s in series {
        let values: Vec<Value> = s
            .samples
            .iter()
            .map(|x| {
                if x.v.is_finite() {
                    json!(x.v)
                } else {
                    json!(format_value(x.v))
                }
            })
            .collect();
        let timestamps: Vec<i64> = s.samples.iter().map(|x| x.t).collect();
        serde_json::to_writer(
            &mut out,
            &json!({"metric": s.labels, "values": values, "timestamps": timestamps}),
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/stream+json")], out).into_response())
}

/// Persists the whole head into blocks now.
pub async fn flush(State(st): State<AppState>) -> Result<Response, ApiError> {
    let db = st.db.clone();
    tokio::task::spawn_blocking(move || db.flush_head())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}
