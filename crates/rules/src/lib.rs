//! Rules applied to data between the receivers and the store.
//!
//! Today: `metric_relabel_configs` with Prometheus's relabeling semantics, applied to every
//! ingested series, and span metrics (RED per service and operation) derived from every
//! ingested span. The cardinality guard, naming contracts, sampling and hot reload join
//! it here.

mod pipeline;
pub mod relabel;
pub mod span_metrics;

pub use pipeline::{MetricRules, RulesOutcome, StringArena};
pub use relabel::{RelabelAction, RelabelConfig, RelabelError, RelabelRule};
pub use span_metrics::SpanMetrics;
