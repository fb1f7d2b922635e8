//! The HTTP API: every route lastmile serves, wired to receivers, store and query.

mod correlate;
mod error;
pub mod go_runtime_profiles;
pub mod loki;
mod otlp;
mod otlp_json;
mod params;
mod process;
mod prom_query;
mod prom_read;
mod remote_write;
mod rules_api;
mod self_metrics;
pub mod spans;
mod tempo;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use lastmile_store::Db;

pub use error::{ApiError, PlainError};
pub use otlp::{OtlpMetrics, router as otlp_http_router, serve_grpc as serve_otlp_grpc};
pub use process::{ProcessStats, process_stats};
pub use self_metrics::{LogStoreCollector, RulesCollector, SelfMetrics};

/// Request limits; a client over them gets 413 before anything is decompressed.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted, as sent (compressed).
    pub max_request_bytes: usize,
    /// Largest body after decompression.
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 32 << 20,
            max_decompressed_bytes: 32 << 20,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Db>,
    /// Spans, by trace id and for search.
    pub traces: Arc<lastmile_trace_store::TraceStore>,
    /// RED metrics derived from ingested spans (see [`spans::ingest_spans`]).
    pub span_metrics: Arc<lastmile_rules::SpanMetrics>,
    pub limits: Limits,
    pub metrics: Arc<SelfMetrics>,
    /// Defaults and limits of PromQL queries.
    pub query: lastmile_query::promql::QueryOptions,
    /// The rule engine: every ingest path takes `rules.current()` once per batch.
    pub rules: Arc<lastmile_rules::Rules>,
    /// The log store and the settings of the Loki routes.
    pub logs: loki::LogsState,
    /// Shown on the status page and `/api/v1/status/buildinfo`.
    pub version: &'static str,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write::handle))
        .route("/v1/traces", post(otlp::http_traces))
        .route("/v1/metrics", post(otlp::http_metrics))
        .route("/v1/logs", post(otlp::http_logs))
        .route(
            "/api/v1/query",
            get(prom_query::query).post(prom_query::query),
        )
        .route(
            "/api/v1/query_range",
            get(prom_query::query_range).post(prom_query::query_range),
        )
        .route(
            "/api/v1/format_query",
            get(prom_query::format_query).post(prom_query::format_query),
        )
        .route(
            "/api/v1/series",
            get(prom_read::series).post(prom_read::series),
        )
        .route(
            "/api/v1/labels",
            get(prom_read::labels).post(prom_read::labels),
        )
        .route("/api/v1/label/{name}/values", get(prom_read::label_values))
        .route(
            "/api/v1/query_exemplars",
            get(prom_read::exemplars).post(prom_read::exemplars),
        )
        .route("/api/v1/metadata", get(prom_read::metadata))
        .route("/api/v1/status/tsdb", get(prom_read::tsdb_status))
        .route("/api/v1/status/buildinfo", get(prom_read::buildinfo))
        .route(
            "/api/v1/export",
            get(prom_read::export).post(prom_read::export),
        )
        .route("/api/v1/admin/tsdb/flush", post(prom_read::flush))
        .route("/api/v1/admin/traces/flush", post(rules_api::flush_traces))
        .route("/api/v1/status/rules", get(rules_api::status))
        .route("/api/v1/rules/promote", post(rules_api::promote))
        .route("/api/v1/rules/rollback", post(rules_api::rollback))
        .route("/-/reload", post(rules_api::reload).put(rules_api::reload))
        .route("/api/traces/{trace_id}", get(tempo::trace_v1))
        .route("/api/v2/traces/{trace_id}", get(tempo::trace_v2))
        .route("/api/search", get(tempo::search))
        .route("/api/search/tags", get(tempo::tags))
        .route("/api/search/tag/{tag}/values", get(tempo::tag_values))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/v1/correlate", get(correlate::handle))
        .route(
            "/api/v1/go-runtime/profiles",
            get(go_runtime_profiles::list).post(go_runtime_profiles::post),
        )
        .route(
            "/api/v1/go-runtime/profiles/{id}",
            get(go_runtime_profiles::get_one),
        )
        .route("/api/v1/admin/logs/flush", post(loki::flush))
        .route("/loki/api/v1/push", post(loki::push))
        .route(
            "/loki/api/v1/query_range",
            get(loki::query_range).post(loki::query_range),
        )
        .route("/loki/api/v1/query", get(loki::query).post(loki::query))
        .route("/loki/api/v1/labels", get(loki::labels).post(loki::labels))
        .route("/loki/api/v1/label", get(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route("/metrics", get(self_metrics::render))
        .route("/-/healthy", get(|| async { "lastmile is Healthy.\n" }))
        .route("/-/ready", get(|| async { "lastmile is Ready.\n" }))
        // The web UI: its pages (`/`, `/traces/{id}`, …) and embedded assets.
        .merge(lastmile_ui::router())
        .fallback(error::not_found)
        // Remote write and OTLP enforce their own limits; others get axum's default.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            self_metrics::track,
        ))
        .with_state(state)
}
