"""The span exporter a process asks for, if any: OpenTelemetry is imported only then.

The orchestrator and a service process (the worker kit) open theirs the same way: with no
OTLP endpoint, nothing of OpenTelemetry is loaded and spans cost nothing; with one but
without the ``otel`` extra installed, one warning and no spans.
"""

from __future__ import annotations

import logging

from orchestrator.spans import Spans

log = logging.getLogger(__name__)


def open_spans(service: str, endpoint: str | None) -> Spans | None:
    """The OTLP span exporter of ``service`` when ``endpoint`` is set, else None."""
    if endpoint is None:
        return None
    try:
        from orchestrator.otel import OtlpSpans
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed"
            " (pip install 'order-orchestrator[otel]'): no spans are exported"
        )
        return None
    return OtlpSpans(service, endpoint)
