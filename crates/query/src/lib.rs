//! Reads over the store, in the shapes the Prometheus HTTP API answers with.
//!
//! Today: series selectors (`match[]`), series, label names and values, exemplars and a
//! raw export. The PromQL engine will live here too.

pub mod correlate;
mod error;
pub mod logql;
pub mod metadata_queries;
pub mod promql;
pub mod selector;

pub use error::QueryError;
pub use metadata_queries::{ExportedSeries, TimeRange};
pub use selector::{parse_match_params, parse_selector, selectors_in_expr};
