//! OTLP self-metrics: items stored and refused, requests refused whole, by signal,
//! protocol (`grpc`, `http/protobuf`, `http/json`) and reason.

use lastmile_receivers::otlp::RefuseReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Signal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Received {
    signal: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refused {
    signal: &'static str,
    protocol: &'static str,
    reason: &'static str,
}

#[derive(Debug, Default)]
pub struct OtlpMetrics {
    received: Family<Received, Counter>,
    refused: Family<Refused, Counter>,
    rejected_requests: Family<Refused, Counter>,
    received_bytes: Family<Received, Counter>,
}

impl OtlpMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "lastmile_otlp_received_items",
            "OTLP spans, log records and metric data points stored, by signal and protocol",
            self.received.clone(),
        );
        r.register(
            "lastmile_otlp_refused_items",
            "OTLP items of accepted requests that were not stored (reported in partial_success), by signal, protocol and reason",
            self.refused.clone(),
        );
        r.register(
            "lastmile_otlp_rejected_requests",
            "OTLP requests refused whole (nothing stored), by signal, protocol and reason",
            self.rejected_requests.clone(),
        );
        r.register(
            "lastmile_otlp_received_bytes",
            "OTLP/HTTP request bytes as sent (compressed), by signal and protocol",
            self.received_bytes.clone(),
        );
    }

    pub fn received(&self, signal: Signal, protocol: &'static str, n: u64) {
        self.received
            .get_or_create(&Received {
                signal: signal.item(),
                protocol,
            })
            .inc_by(n);
    }

    pub fn received_bytes(&self, signal: Signal, protocol: &'static str, n: u64) {
        self.received_bytes
            .get_or_create(&Received {
                signal: signal.item(),
                protocol,
            })
            .inc_by(n);
    }

    pub fn refused(&self, signal: Signal, protocol: &'static str, reason: RefuseReason, n: u64) {
        self.refused
            .get_or_create(&Refused {
                signal: signal.item(),
                protocol,
                reason: reason.as_str(),
            })
            .inc_by(n);
    }

    pub fn rejected_request(&self, signal: Signal, protocol: &'static str, reason: &'static str) {
        self.rejected_requests
            .get_or_create(&Refused {
                signal: signal.item(),
                protocol,
                reason,
            })
            .inc();
    }
}
