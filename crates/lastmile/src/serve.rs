//! `lastmile serve`: opens the store, starts the HTTP server and the background work.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lastmile_api::{AppState, SelfMetrics};
use lastmile_store::{Db, StoreMetrics};

use crate::cli::ServeArgs;
use crate::config::Config;

/// How often the head is checked for windows to persist, blocks to compact and data past
/// retention.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let db_opts = config.db_options(args.retention.as_deref())?;
    let rules = Arc::new(config.metric_rules()?);
    let store_metrics = Arc::new(StoreMetrics::default());
    let data_dir = args.data_dir.clone();
    let metrics_for_open = store_metrics.clone();
    let (db, report) =
        tokio::task::spawn_blocking(move || Db::open(&data_dir, db_opts, metrics_for_open))
            .await
            .context("store startup panicked")?
            .with_context(|| {
                format!("cannot open the data directory {}", args.data_dir.display())
            })?;
    tracing::info!(
        blocks = report.blocks,
        wal_frames = report.wal_frames,
        wal_bytes = report.wal_bytes,
        truncated_bytes = report.wal_truncated_bytes,
        head_series = report.head_series,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "store opened"
    );
    let db = Arc::new(db);

    let log_opts = config.log_store_options()?;
    let logs_dir = args.data_dir.join("logs");
    let logs_dir_open = logs_dir.clone();
    let (log_store, log_report) = tokio::task::spawn_blocking(move || {
        lastmile_log_store::LogStore::open_with_report(
            &logs_dir_open,
            log_opts,
            Arc::new(StoreMetrics::default()),
        )
    })
    .await
    .context("log store startup panicked")?
    .with_context(|| format!("cannot open the log store in {}", logs_dir.display()))?;
    tracing::info!(
        streams = log_report.streams,
        indexed_lines = log_report.indexed_lines,
        wal_lines = log_report.wal_lines,
        truncated_bytes = log_report.wal_truncated_bytes,
        elapsed_ms = log_report.elapsed.as_millis() as u64,
        "log store opened"
    );
    let log_store = Arc::new(log_store);

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", args.http_addr))?;
    let http_addr = listener.local_addr()?;
    let state = AppState {
        db: db.clone(),
        limits: config.limits(),
        metrics: Arc::new(SelfMetrics::new(&store_metrics)),
        rules,
        query: lastmile_query::promql::QueryOptions::default(),
        logs: lastmile_api::loki::LogsState {
            store: log_store.clone(),
            trace_fields: Arc::new(config.trace_fields()?),
            query: config.logql_options(),
        },
        version: env!("CARGO_PKG_VERSION"),
    };
    let app = lastmile_api::router(state);

    tracing::info!(
        http_addr = %http_addr,
        data_dir = %args.data_dir.display(),
        demo = args.demo,
        ui = %format!("http://{http_addr}/"),
        "lastmile started"
    );
    tracing::info!(
        otlp_grpc_addr = %args.otlp_grpc_addr,
        otlp_http_addr = %args.otlp_http_addr,
        "OTLP receivers are not part of this build yet; the OTLP addresses are not bound"
    );

    let upkeep = tokio::spawn(upkeep_loop(db.clone(), log_store.clone()));
    let demo = args
        .demo
        .then(|| tokio::spawn(crate::demo::run(db.clone())));

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;

    tracing::info!("shutting down: syncing the WAL");
    upkeep.abort();
    if let Some(d) = demo {
        d.abort();
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .ok();
    let closing = log_store.clone();
    match tokio::task::spawn_blocking(move || closing.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "closing the log store failed (the WAL holds every acknowledged line)")
        }
        Err(e) => tracing::error!(error = %e, "closing the log store panicked"),
    }
    Ok(())
}

async fn upkeep_loop(db: Arc<Db>, logs: Arc<lastmile_log_store::LogStore>) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.maintain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "store upkeep failed; will retry"),
            Err(e) => tracing::error!(error = %e, "store upkeep panicked"),
        }
        let logs = logs.clone();
        match tokio::task::spawn_blocking(move || logs.maintain()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "log retention failed; will retry"),
            Err(e) => tracing::error!(error = %e, "log retention panicked"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
