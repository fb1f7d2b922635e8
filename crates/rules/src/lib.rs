//! Rules applied to data between the receivers and the stores: the "transform" stage.
//!
//! One rules file (Prometheus-style YAML, see [`file`]) holds relabeling, label
//! inheritance, the cardinality guard, naming contracts, trace tail sampling and log
//! rules, with tests of its own. [`Rules`] is the engine every ingest path holds: it
//! hands out the active version per batch ([`Rules::current`]), reloads with an atomic
//! swap, and runs a new version as a canary on a fraction of streams when asked to.
//!
//! Span metrics (RED per service and operation, derived from every span before any
//! sampling) live here too.
//!
//! This crate depends only on the model: stores and transports call it, never the other
//! way round.

pub mod cardinality;
pub mod engine;
pub mod file;
pub mod inherit;
pub mod logs;
pub mod naming;
mod pipeline;
pub mod relabel;
pub mod ruleset;
pub mod sampling;
pub mod selector;
pub mod span_metrics;
pub mod stats;
pub mod testing;

pub use engine::{Loader, Reloaded, Rules, RulesSnapshot, RulesStatus};
pub use file::{LoadError, RulesSource, SourceKind};
pub use logs::LogOutcome;
pub use pipeline::{RulesOutcome, StringArena};
pub use relabel::{RelabelAction, RelabelConfig, RelabelError, RelabelRule};
pub use span_metrics::SpanMetrics;
pub use testing::{TestReport, TestResult};

impl Rules {
    /// Applies the active metric rules to a batch: shorthand for
    /// `self.current().apply_metrics(batch, arena)` for paths that need nothing else of
    /// the snapshot.
    pub fn apply<'a>(
        &self,
        batch: lastmile_model::WriteBatch<'a>,
        arena: &'a StringArena,
    ) -> (lastmile_model::WriteBatch<'a>, RulesOutcome) {
        self.current().apply_metrics(batch, arena)
    }
}
