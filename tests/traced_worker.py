"""`tower worker` with the OpenTelemetry SDK configured: the spans it ends go to the SDK's
`InMemorySpanExporter` and, one JSON object a line, to the file `TOWER_TEST_SPANS` names,
where the test reads them.

Run as `python -m tests.traced_worker worker ...`; the product configures no SDK itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class FileCopyExporter(InMemorySpanExporter):
    """The in-memory exporter, each span also appended to a file the test process reads."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for span in spans:
                f.write(span.to_json(indent=None) + "\n")
        return super().export(spans)


def install(path: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileCopyExporter(path)))
    trace.set_tracer_provider(provider)


if __name__ == "__main__":
    install(os.environ["TOWER_TEST_SPANS"])
    from pipeline.ops.cli import main

    sys.argv[0] = "tower"
    main()
