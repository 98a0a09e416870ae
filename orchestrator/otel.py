"""Export spans over OTLP/HTTP with the OpenTelemetry SDK (the ``otel`` extra).

Imported only when an endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``), so a
process without it never loads OpenTelemetry. Spans are not made through the SDK's tracer:
their ids come from ``tracing`` (see ``orchestrator.spans``), so each finished span is
handed to the SDK's batch processor as a ``ReadableSpan`` with those ids. The processor
exports from a thread of its own, in batches; a full queue drops spans rather than slow a
turn. The SDK's own ``OTEL_*`` variables (headers, timeouts, resource attributes) apply.

A span whose trace is not sampled (the ``traceparent`` flags say so) is not exported, so
a caller that samples keeps control of the volume.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from orchestrator import tracing
from orchestrator.metrics import build_version
from orchestrator.spans import Kind, Span

KINDS: dict[Kind, SpanKind] = {
    "server": SpanKind.SERVER,
    "consumer": SpanKind.CONSUMER,
    "producer": SpanKind.PRODUCER,
    "internal": SpanKind.INTERNAL,
}
TRACES_PATH = "/v1/traces"  # appended to the base endpoint, as the OTLP spec says


class OtlpSpans:
    """Spans of the process named ``service`` (``service.name``), sent to ``endpoint``."""

    def __init__(self, service: str, endpoint: str) -> None:
        self._scope = InstrumentationScope("orchestrator", build_version())
        self._resource = Resource.create(
            {"service.name": service, "service.version": build_version()}
        )
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + TRACES_PATH)
        self._processor = BatchSpanProcessor(exporter)

    def record(self, span: Span) -> None:
        ids = tracing.ids(span.traceparent)
        if ids is None:
            return
        trace_id, span_id, flags = ids
        if not flags & tracing.SAMPLED:
            return
        context = SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(flags))
        parent = None
        parent_ids = tracing.ids(span.parent)
        if parent_ids is not None and parent_ids[0] == trace_id:
            parent = SpanContext(
                int(trace_id, 16), int(parent_ids[1], 16), True, TraceFlags(parent_ids[2])
            )
        status = Status(StatusCode.UNSET)
        if span.error is not None:
            status = Status(StatusCode.ERROR, span.error)
        self._processor.on_end(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=parent,
                resource=self._resource,
                attributes=span.attributes,
                kind=KINDS[span.kind],
                status=status,
                start_time=span.start_ns,
                end_time=span.end_ns,
                instrumentation_scope=self._scope,
            )
        )

    def close(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]
