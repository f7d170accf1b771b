"""One OpenTelemetry span per decided batch, linked to the spans its inputs came from.

The API is a no-op until an SDK is configured (the `otel` extra): then each batch costs
one span that is not recorded, and the links are built only for a recording span.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pipeline.contracts.trace_context import TraceHeaders

#: a proxy: it follows a tracer provider configured after this module is imported
TRACER = trace.get_tracer("journey-tower")
_propagator = TraceContextTextMapPropagator()

BATCH_SPAN = "tower.decide"


def start_batch(tracer: Tracer, topic: str, records: int) -> Span:
    return tracer.start_span(
        BATCH_SPAN,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.batch.message_count": records,
        },
    )


def link(span: Span, headers: TraceHeaders) -> None:
    """Link `span` to the span context an input's trace headers name."""
    carrier = {name: value.decode("ascii") for name, value in headers}
    context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    if context.is_valid:
        span.add_link(context)
