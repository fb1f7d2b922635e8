//! The one way spans enter lastmile, whatever the transport (OTLP over HTTP or gRPC, the
//! demo): rules first (label inheritance), then stored durably, then counted into span
//! metrics (every span, before any sampling), then seen by the tail sampler.

use std::borrow::Cow;
use std::sync::Arc;

use lastmile_model::{SpanBatch, TraceId};
use lastmile_rules::Rules;
use lastmile_trace_store::{TraceRetention, TraceStoreError};

use crate::AppState;

/// Stores the batch and counts it into span metrics; returns the number of spans stored.
/// Returns once the spans are durable. Tail sampling decides later, per trace (see
/// `lastmile_rules::sampling`); an acknowledged span is never lost before that decision.
pub async fn ingest_spans(st: &AppState, batch: &SpanBatch) -> Result<usize, TraceStoreError> {
    let rules = st.rules.current();
    let mut batch = Cow::Borrowed(batch);
    let inherits = |v: &lastmile_rules::ruleset::RuleSet| v.counts.inherit_static > 0;
    if inherits(&rules.active.stable)
        || rules
            .active
            .canary
            .as_ref()
            .is_some_and(|c| inherits(&c.rules))
    {
        let mut owned = batch.into_owned();
        rules.prepare_spans(&mut owned);
        batch = Cow::Owned(owned);
    }
    let n = st.traces.append(&batch).await?;
    st.span_metrics.observe(&batch);
    rules.observe_spans(&batch);
    Ok(n)
}

/// Tail sampling as the span store's retention policy: what the sampler decided to drop
/// is hidden from reads and left out of blocks.
pub struct SamplerRetention(pub Arc<Rules>);

impl TraceRetention for SamplerRetention {
    fn hidden(&self, id: &TraceId) -> bool {
        self.0.trace_hidden(id)
    }

    fn retain_on_flush(&self, ids: &[TraceId]) -> Vec<bool> {
        self.0.retain_on_flush(ids)
    }
}

/// Writes the span metrics' current values into the metrics store (called periodically).
pub async fn write_span_metrics(st: &AppState, t_ms: i64) -> Result<(), String> {
    let series = st.span_metrics.collect(t_ms);
    if series.is_empty() {
        return Ok(());
    }
    let batch = lastmile_model::WriteBatch::from_owned(&series).map_err(|e| e.to_string())?;
    st.db.write(&batch).await.map_err(|e| e.to_string())?;
    Ok(())
}
