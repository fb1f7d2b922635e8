//! Receivers turn what clients send into lastmile's model: [`lastmile_model::WriteBatch`]es
//! (metrics), [`lastmile_model::SpanBatch`]es (traces) and [`lastmile_model::LogBatch`]es
//! (logs).
//!
//! Each receiver is a pure decoder: bytes in, a batch (borrowing those bytes) or a precise
//! error out. Receivers never touch storage; the API layer hands their batches on.

pub mod demo;
pub mod demo_traces;
pub mod logs;
pub mod loki;
pub mod otlp;
pub mod remote_write;
