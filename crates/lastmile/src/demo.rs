//! Drives the demo fleet: backfills the last hour of metrics, traces (with their log
//! lines) and span metrics, then writes a scrape and the interval's traces every
//! interval, through the same write paths remote write, OTLP and Loki push use.

use std::time::Duration;

use lastmile_api::AppState;
use lastmile_receivers::demo::{DEMO_INTERVAL_MS, DemoFleet};
use lastmile_receivers::demo_traces::DemoTraces;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Demo {
    fleet: DemoFleet,
    traces: DemoTraces,
    /// End of the last interval written.
    t: i64,
}

/// One interval ending at `t`: the scrape and the traces that started in it, with their
/// log lines; when
/// backfilling, also span metrics as of `t` (live, the server writes them itself).
async fn step(state: &AppState, demo: &mut Demo, t: i64, backfill: bool) -> Result<u64, String> {
    let outcome = state
        .db
        .write(&demo.fleet.scrape(t))
        .await
        .map_err(|e| e.to_string())?;
    let (spans, logs) = demo.traces.generate(demo.t, t);
    lastmile_api::spans::ingest_spans(state, &spans)
        .await
        .map_err(|e| e.to_string())?;
    if !logs.streams.is_empty() {
        lastmile_api::loki::store_logs(state, logs)
            .await
            .map_err(|e| e.1)?;
    }
    if backfill {
        lastmile_api::spans::write_span_metrics(state, t).await?;
    }
    demo.t = t;
    Ok(outcome.samples)
}

/// Writes the last hour. Runs before the server's own span-metrics writer starts, so
/// the backfilled history is not overtaken by a sample at "now".
pub async fn backfill(state: &AppState) -> Option<Demo> {
    let now = now_ms();
    let start = now - now.rem_euclid(DEMO_INTERVAL_MS) - 3600 * 1000;
    let mut demo = Demo {
        fleet: DemoFleet::new(42, start),
        traces: DemoTraces::new(42),
        t: start - DEMO_INTERVAL_MS,
    };
    let mut samples = 0u64;
    let mut t = start;
    while t <= now {
        match step(state, &mut demo, t, true).await {
            Ok(n) => samples += n,
            Err(e) => {
                tracing::error!(error = %e, "demo generator stopped: a store refused a write");
                return None;
            }
        }
        t += DEMO_INTERVAL_MS;
    }
    tracing::info!(
        samples,
        spans = state.traces.stats().head_spans,
        "demo fleet backfilled the last hour"
    );
    Some(demo)
}

/// Keeps the fleet running in real time.
pub async fn run(state: AppState, mut demo: Demo) {
    let mut tick = tokio::time::interval(Duration::from_millis(DEMO_INTERVAL_MS as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = now_ms().max(demo.t + 1);
        if let Err(e) = step(&state, &mut demo, t, false).await {
            tracing::error!(error = %e, "demo generator stopped: a store refused a write");
            return;
        }
    }
}
