"""Sends traces, metrics and logs to lastmile with the OpenTelemetry Python SDK.

Used by crates/lastmile/tests/otlp_sdk.rs, which starts lastmile and reads back what this
sends. Usage:

    send.py PROTOCOL ENDPOINT RUN_ID

PROTOCOL is grpc, http/protobuf or http/json; ENDPOINT the base URL (http://127.0.0.1:PORT).
RUN_ID makes names and attributes unique to one run. Prints one JSON object on stdout: the
ids of the spans it sent and the trace id exemplars and logs should carry.
"""

import json
import logging
import sys

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": endpoint, "insecure": True}
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    elif protocol == "http/json":
        from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
    else:
        raise SystemExit(f"unknown protocol {protocol!r}")
    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
    )


def main():
    protocol, endpoint, run = sys.argv[1], sys.argv[2], sys.argv[3]
    resource = Resource.create(
        {
            "service.name": f"checkout-{run}",
            "service.namespace": "shop",
            "service.instance.id": f"pod-{run}",
            "deployment.environment": "test",
            "host.name": "sdk-host",
        }
    )
    span_exporter, metric_exporter, log_exporter = exporters(protocol, endpoint)

    # Remember what the exporter reports, so a refused export fails the test.
    results = []
    real_export = span_exporter.export

    def export(spans):
        r = real_export(spans)
        results.append(r)
        return r

    span_exporter.export = export

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="http.server.duration",
                aggregation=ExplicitBucketHistogramAggregation([5, 10, 25, 50, 100]),
            )
        ],
    )
    metrics.set_meter_provider(meter_provider)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    set_logger_provider(logger_provider)
    log = logging.getLogger(f"shop.checkout.{run}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

    tracer = trace.get_tracer("shop.checkout", "1.4.2")
    meter = metrics.get_meter("shop.checkout", "1.4.2")
    requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served")
    duration = meter.create_histogram("http.server.duration", unit="ms", description="Request latency")
    in_flight = meter.create_up_down_counter("http.server.active_requests", unit="{request}")
    memory = meter.create_gauge("process.memory.usage", unit="By")

    sent = {"spans": []}
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/cart")
        root.set_attribute("http.response.status_code", 200)
        root.add_event("cache miss", {"key": "cart:42"})
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "postgresql")
            child.set_status(Status(StatusCode.ERROR, "deadlock detected"))
            sent["spans"].append(
                {"name": "SELECT carts", "span_id": format(child.get_span_context().span_id, "016x")}
            )
            log.error("query failed: deadlock detected", extra={"cart.id": "42"})
        # Recorded inside a sampled span: the SDK attaches an exemplar with its ids.
        requests.add(3, {"http.route": "/cart", "http.response.status_code": 200})
        duration.record(7.5, {"http.route": "/cart"})
        duration.record(42.0, {"http.route": "/cart"})
        in_flight.add(2)
        memory.set(123456789)
        ctx = root.get_span_context()
        sent["trace_id"] = format(ctx.trace_id, "032x")
        sent["spans"].append({"name": "GET /cart", "span_id": format(ctx.span_id, "016x")})
        log.info("served cart 42")

    # Shutting down exports what is pending, once (metrics: one collection, so every
    # instrument is exactly one data point).
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    sent["span_export_results"] = [r.name for r in results]
    if any(r != SpanExportResult.SUCCESS for r in results) or not results:
        print(json.dumps(sent))
        raise SystemExit("span export failed")
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
