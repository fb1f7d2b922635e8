//! LogQL: the subset of Loki's query language lastmile evaluates over its log store.
//!
//! Supported: stream selectors (`=`, `!=`, `=~`, `!~`); line filters (`|=`, `!=`, `|~`,
//! `!~`, chained, with `or` alternatives); `| json` (all fields or chosen paths),
//! `| logfmt`; label filters on strings, numbers, durations and byte sizes combined with
//! `and`/`or`/`,`; `| line_format` (a Go-template subset); `| drop`, `| keep`; metric
//! queries `count_over_time`, `rate`, `bytes_over_time`, `bytes_rate` (with `offset`),
//! aggregated by `sum`, `avg`, `min`, `max`, `count` (`by`/`without`), `topk`, `bottomk`.
//! Loki's rules for the subtle cases are written down in [`pipeline`] and [`eval`].

pub mod ast;
pub mod eval;
pub mod parser;
pub mod pipeline;
pub mod template;
pub mod values;

pub use eval::{
    LogqlError, LogqlOptions, LogqlResult, SeriesResult, StreamResult, instant_query, range_query,
    series,
};
pub use parser::{ParseError, parse, parse_selector};
