"""When OTEL_* variables turn tracing on, and the values it refuses (tracing.py)."""

from __future__ import annotations

import pytest

from customer_segments.startup import StartupError
from customer_segments.tracing import TracingSettings, tracing_settings

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "segments", "OTEL_TRACES_SAMPLER": "always_on"}, None),
        (ENDPOINT, TracingSettings(("otlp",), "http/protobuf")),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            TracingSettings(("otlp",), "grpc"),
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, TracingSettings(("otlp",), "http/protobuf")),
        (
            {"OTEL_TRACES_EXPORTER": "console, otlp"},
            TracingSettings(("console", "otlp"), "http/protobuf"),
        ),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, None),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, None),
        (
            {
                **ENDPOINT,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            TracingSettings(("otlp",), "http/protobuf"),
        ),
        (
            {
                **ENDPOINT,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
            TracingSettings(("otlp",), "http/protobuf"),
        ),
    ],
)
def test_what_turns_tracing_on(environ: dict[str, str], expected: TracingSettings | None) -> None:
    assert tracing_settings(environ) == expected


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({**ENDPOINT, "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: unknown"),
        (
            {**ENDPOINT, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"},
            "OTEL_TRACES_SAMPLER_ARG: '10%' is not a ratio",
        ),
        (
            {**ENDPOINT, "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_values_that_cannot_be_used_are_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(StartupError, match=named):
        tracing_settings(environ)
