"""One SDK for the whole test process (the OpenTelemetry API takes its providers once), recording
only while a test of this plugin runs: the rest of the suite runs with spans not sampled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_kit import Telemetry

_telemetry: Telemetry | None = None


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    global _telemetry
    if _telemetry is None:
        _telemetry = Telemetry()
    _telemetry.spans.clear()
    _telemetry.switch.on = True
    try:
        yield _telemetry
    finally:
        _telemetry.switch.on = False
