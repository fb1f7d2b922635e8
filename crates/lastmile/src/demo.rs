//! Drives the demo fleet: backfills the last hour, then writes a scrape every interval,
//! through the same store write path remote write uses.

use std::sync::Arc;
use std::time::Duration;

use lastmile_receivers::demo::{DEMO_INTERVAL_MS, DemoFleet};
use lastmile_store::Db;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn run(db: Arc<Db>) {
    let now = now_ms();
    let start = now - now.rem_euclid(DEMO_INTERVAL_MS) - 3600 * 1000;
    let mut fleet = DemoFleet::new(42, start);
    let mut t = start;
    let mut samples = 0u64;
    while t <= now {
        match db.write(&fleet.scrape(t)).await {
            Ok(o) => samples += o.samples,
            Err(e) => {
                tracing::error!(error = %e, "demo generator stopped: the store refused a write");
                return;
            }
        }
        t += DEMO_INTERVAL_MS;
    }
    tracing::info!(samples, "demo fleet backfilled the last hour");
    let mut tick = tokio::time::interval(Duration::from_millis(DEMO_INTERVAL_MS as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = now_ms().max(t);
        if let Err(e) = db.write(&fleet.scrape(t)).await {
            tracing::error!(error = %e, "demo generator stopped: the store refused a write");
            return;
        }
    }
}
