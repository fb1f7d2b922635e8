//! OTLP/gRPC: the collector's `TraceService`, `MetricsService` and `LogsService`
//! (`Export`), gzip accepted, messages up to the decompressed-size limit (tonic answers
//! RESOURCE_EXHAUSTED above it, INTERNAL for a message it cannot decode).

use std::future::Future;
use std::sync::Arc;

use lastmile_receivers::otlp::proto::logs_service::ExportLogsPartialSuccess;
use lastmile_receivers::otlp::proto::logs_service::logs_service_server::{
    LogsService, LogsServiceServer,
};
use lastmile_receivers::otlp::proto::metrics_service::ExportMetricsPartialSuccess;
use lastmile_receivers::otlp::proto::metrics_service::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use lastmile_receivers::otlp::proto::trace_service::ExportTracePartialSuccess;
use lastmile_receivers::otlp::proto::trace_service::trace_service_server::{
    TraceService, TraceServiceServer,
};
use lastmile_receivers::otlp::proto::{
    ExportLogsServiceRequest, ExportLogsServiceResponse, ExportMetricsServiceRequest,
    ExportMetricsServiceResponse, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{Accepted, IngestError, Signal, ingest_logs, ingest_metrics, ingest_traces};
use crate::AppState;

const PROTOCOL: &str = "grpc";

struct Otlp {
    state: AppState,
}

impl Otlp {
    fn refuse(&self, signal: Signal, e: IngestError) -> Status {
        self.state
            .metrics
            .otlp
            .rejected_request(signal, PROTOCOL, e.reason());
        tracing::debug!(signal = signal.item(), error = %e, "OTLP/gRPC request refused");
        Status::new(e.grpc_code(), e.to_string())
    }
}

fn partial(a: &Accepted) -> Option<(i64, String)> {
    (a.rejected > 0).then(|| (a.rejected, a.message.clone()))
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let a = ingest_traces(&self.state, request.into_inner(), PROTOCOL)
            .await
            .map_err(|e| self.refuse(Signal::Traces, e))?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: partial(&a).map(|(n, m)| ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: m,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let a = ingest_metrics(&self.state, request.into_inner(), PROTOCOL)
            .await
            .map_err(|e| self.refuse(Signal::Metrics, e))?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: partial(&a).map(|(n, m)| ExportMetricsPartialSuccess {
                rejected_data_points: n,
                error_message: m,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let a = ingest_logs(&self.state, request.into_inner(), PROTOCOL)
            .await
            .map_err(|e| self.refuse(Signal::Logs, e))?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: partial(&a).map(|(n, m)| ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: m,
            }),
        }))
    }
}

/// Serves the three OTLP collector services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let limit = state.limits.max_decompressed_bytes;
    let otlp = Arc::new(Otlp { state });
    tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::from_arc(otlp.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::from_arc(otlp.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::from_arc(otlp)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}
