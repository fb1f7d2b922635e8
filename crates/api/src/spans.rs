//! The one way spans enter lastmile, whatever the transport (OTLP over HTTP or gRPC, the
//! demo): stored durably first, then counted into span metrics.

use lastmile_model::SpanBatch;
use lastmile_trace_store::TraceStoreError;

use crate::AppState;

/// Stores the batch and counts it into span metrics; returns the number of spans stored.
/// Returns once the spans are durable.
pub async fn ingest_spans(st: &AppState, batch: &SpanBatch) -> Result<usize, TraceStoreError> {
    let n = st.traces.append(batch).await?;
    st.span_metrics.observe(batch);
    Ok(n)
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
