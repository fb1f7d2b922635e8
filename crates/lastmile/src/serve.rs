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

    let upkeep = tokio::spawn(upkeep_loop(db.clone()));
    let go_runtime = config
        .go_runtime_watch()?
        .map(|opts| crate::go_runtime::spawn(opts, db.clone(), args.data_dir.clone()));
    let demo = args
        .demo
        .then(|| tokio::spawn(crate::demo::run(db.clone())));

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;

    if let Some(g) = go_runtime {
        tracing::info!("detaching the Go runtime probes");
        g.shutdown().await;
    }
    tracing::info!("shutting down: syncing the WAL");
    upkeep.abort();
    if let Some(d) = demo {
        d.abort();
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .ok();
    Ok(())
}

async fn upkeep_loop(db: Arc<Db>) {
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
