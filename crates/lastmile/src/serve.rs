//! `lastmile serve`: opens the stores, starts the HTTP, OTLP/HTTP and OTLP/gRPC servers and
//! the background work.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lastmile_api::{AppState, SelfMetrics};
use lastmile_store::{Db, StoreMetrics};
use lastmile_trace_store::{TraceStore, TraceStoreMetrics};

use crate::cli::ServeArgs;
use crate::config::Config;

/// How often the head is checked for windows to persist, blocks to compact and data past
/// retention.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the span head is checked for a flush (it flushes by size or age) and span
/// blocks for retention.
const TRACE_UPKEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often span metrics are written as samples (a typical scrape interval).
const SPAN_METRICS_INTERVAL: Duration = Duration::from_secs(15);
/// Most (service, span name, kind, status) combinations span metrics keep.
const SPAN_METRICS_MAX_SERIES: usize = 10_000;
/// How often the rules files are checked for changes (by content, so an editor's
/// rename-over or a ConfigMap's symlink swap is seen like an in-place write).
const RULES_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often tail sampling decides the traces whose decision wait has passed.
const SAMPLING_TICK_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let db_opts = config.db_options(args.retention.as_deref())?;
    let rules = Arc::new(
        lastmile_rules::Rules::load(crate::config::rules_loader(args.config.clone()))
            .map_err(|e| anyhow::anyhow!("invalid rules: {e}"))?,
    );
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

    let trace_metrics = Arc::new(TraceStoreMetrics::default());
    let traces_dir = args.data_dir.join("traces");
    let trace_opts = config.trace_store_options()?;
    let metrics_for_open = trace_metrics.clone();
    let (traces, report) = tokio::task::spawn_blocking(move || {
        TraceStore::open(&traces_dir, trace_opts, metrics_for_open)
    })
    .await
    .context("span store startup panicked")?
    .with_context(|| {
        format!(
            "cannot open the span store in {}",
            args.data_dir.join("traces").display()
        )
    })?;
    tracing::info!(
        blocks = report.blocks,
        replayed_spans = report.replayed_spans,
        replay_errors = report.replay_errors,
        "span store opened"
    );
    let traces = Arc::new(traces);
    // Tail sampling decides which stored traces stay.
    traces.set_retention(Arc::new(lastmile_api::spans::SamplerRetention(
        rules.clone(),
    )));

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
    let otlp_http = tokio::net::TcpListener::bind(args.otlp_http_addr)
        .await
        .with_context(|| format!("cannot listen on --otlp-http-addr {}", args.otlp_http_addr))?;
    let otlp_http_addr = otlp_http.local_addr()?;
    let otlp_grpc = tokio::net::TcpListener::bind(args.otlp_grpc_addr)
        .await
        .with_context(|| format!("cannot listen on --otlp-grpc-addr {}", args.otlp_grpc_addr))?;
    let otlp_grpc_addr = otlp_grpc.local_addr()?;
    let mut self_metrics = SelfMetrics::new(&store_metrics);
    self_metrics.register(|r| trace_metrics.register(r));
    self_metrics
        .register(|r| r.register_collector(Box::new(lastmile_api::RulesCollector(rules.clone()))));
    self_metrics.register(|r| {
        r.register_collector(Box::new(lastmile_api::LogStoreCollector(log_store.clone())))
    });
    let state = AppState {
        db: db.clone(),
        traces: traces.clone(),
        span_metrics: Arc::new(lastmile_rules::SpanMetrics::new(
            &lastmile_rules::span_metrics::DEFAULT_BUCKETS,
            SPAN_METRICS_MAX_SERIES,
        )),
        limits: config.limits(),
        metrics: Arc::new(self_metrics),
        rules: rules.clone(),
        query: lastmile_query::promql::QueryOptions::default(),
        logs: lastmile_api::loki::LogsState {
            store: log_store.clone(),
            trace_fields: Arc::new(config.trace_fields()?),
            query: config.logql_options(),
        },
        version: env!("CARGO_PKG_VERSION"),
    };
    // The demo's history goes in first, with span metrics at their own times.
    let demo = match args.demo {
        true => crate::demo::backfill(&state).await,
        false => None,
    };
    let span_metrics_writer = tokio::spawn(span_metrics_loop(state.clone()));
    let app = lastmile_api::router(state.clone());
    let otlp_app = lastmile_api::otlp_http_router(state.clone());

    tracing::info!(
        http_addr = %http_addr,
        otlp_http_addr = %otlp_http_addr,
        otlp_grpc_addr = %otlp_grpc_addr,
        data_dir = %args.data_dir.display(),
        demo = args.demo,
        ui = %format!("http://{http_addr}/"),
        "lastmile started"
    );

    let upkeep = tokio::spawn(upkeep_loop(db.clone()));
    let trace_upkeep = tokio::spawn(every(TRACE_UPKEEP_INTERVAL, "span store", {
        let traces = traces.clone();
        move || traces.maintain().map_err(|e| e.to_string())
    }));
    let log_upkeep = tokio::spawn(every(UPKEEP_INTERVAL, "log store", {
        let logs = log_store.clone();
        move || logs.maintain().map(drop).map_err(|e| e.to_string())
    }));
    let demo = demo.map(|d| tokio::spawn(crate::demo::run(state.clone(), d)));
    let rules_watch = tokio::spawn(every(RULES_WATCH_INTERVAL, "rules watcher", {
        let rules = rules.clone();
        // A refused file is logged and reported by the engine; the loop goes on.
        move || {
            let _ = rules.reload_if_changed();
            Ok(())
        }
    }));
    let sampling_tick = tokio::spawn(every(SAMPLING_TICK_INTERVAL, "tail sampling", {
        let rules = rules.clone();
        move || {
            rules.tick(lastmile_rules::engine::now_ms());
            Ok(())
        }
    }));
    let go_runtime = config
        .go_runtime_watch()?
        .map(|opts| crate::go_runtime::spawn(opts, db.clone(), args.data_dir.clone()));

    // One signal stops all three servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let main_server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let otlp_http_server =
        axum::serve(otlp_http, otlp_app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let otlp_grpc_server =
        lastmile_api::serve_otlp_grpc(otlp_grpc, state.clone(), stopped(stop_rx));
    let (main, http, grpc) = tokio::join!(
        async { main_server.await },
        async { otlp_http_server.await },
        otlp_grpc_server
    );
    main.context("HTTP server failed")?;
    http.context("OTLP/HTTP server failed")?;
    grpc.context("OTLP/gRPC server failed")?;

    if let Some(g) = go_runtime {
        tracing::info!("detaching the Go runtime probes");
        g.shutdown().await;
    }
    tracing::info!("shutting down: syncing the WALs");
    upkeep.abort();
    trace_upkeep.abort();
    log_upkeep.abort();
    span_metrics_writer.abort();
    rules_watch.abort();
    sampling_tick.abort();
    if let Some(d) = demo {
        d.abort();
    }
    let closing = db.clone();
    let closing_traces = traces.clone();
    tokio::task::spawn_blocking(move || {
        closing.close();
        closing_traces.close();
    })
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

async fn upkeep_loop(db: Arc<Db>) {
    every(UPKEEP_INTERVAL, "metrics store", move || {
        db.maintain().map_err(|e| e.to_string())
    })
    .await
}

/// Writes span metrics into the metrics store every scrape interval.
async fn span_metrics_loop(state: AppState) {
    let mut tick = tokio::time::interval(SPAN_METRICS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if let Err(e) = lastmile_api::spans::write_span_metrics(&state, now).await {
            tracing::error!(error = %e, "writing span metrics failed; will retry");
        }
    }
}

/// Runs blocking upkeep work every `interval`, logging failures and carrying on.
async fn every(
    interval: Duration,
    what: &'static str,
    work: impl Fn() -> Result<(), String> + Clone + Send + 'static,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let work = work.clone();
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, store = what, "upkeep failed; will retry"),
            Err(e) => tracing::error!(error = %e, store = what, "upkeep panicked"),
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
