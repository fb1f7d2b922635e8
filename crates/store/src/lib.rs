//! lastmile's embedded metrics store.
//!
//! Writes go to a write-ahead log (group-committed) and into the in-memory [`head`], where
//! each series keeps Gorilla-compressed chunks. Old windows of the head become immutable,
//! memory-mapped [`block`]s, which compaction merges and retention deletes. Reads merge
//! the head and the blocks a query's time range touches, using inverted label indexes.

pub mod block;
pub mod chunk;
pub mod codec;
pub mod db;
mod error;
pub mod head;
pub mod metrics;
pub mod postings;
pub mod series;
mod symbols;
pub mod wal;

pub use db::{Db, DbOptions, OpenReport, TsdbStatus};
pub use error::StoreError;
pub use head::{AppendOutcome, Cardinality, Exemplar};
pub use metrics::{StoreMetrics, WalMetrics};
pub use series::{ChunkRef, SelectedSeries};
pub use wal::WalSync;
