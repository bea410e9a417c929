"""The CORS setting: flag or environment variable, checked once, passed to the gateway
process."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from customer_segments.cli import _settings
from customer_segments.config import Settings
from customer_segments.gateway.connection_limits import HttpLimits
from customer_segments.gateway.process import GatewayOptions, _options, gateway_arguments


def test_origins_are_a_comma_separated_list_or_a_star() -> None:
    assert Settings().cors_origin_list == ()
    settings = Settings(cors_origins=" https://shop.example, http://Localhost:3000/ ,")
    assert settings.cors_origin_list == ("https://shop.example", "http://localhost:3000")
    assert Settings(cors_origins="*").cors_origin_list == ("*",)


@pytest.mark.parametrize("bad", ["shop.example", "https://shop.example/path", "https://*.example"])
def test_a_value_that_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=bad)


def test_the_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SEGMENTS_CORS_ORIGINS", "https://shop.example")
    settings = _settings(argparse.Namespace(cors_origins=None))
    assert settings.cors_origin_list == ("https://shop.example",)


@pytest.mark.parametrize("origins", [(), ("*",), ("https://a.example", "https://b.example")])
def test_the_gateway_process_gets_the_origins(origins: tuple[str, ...]) -> None:
    options = GatewayOptions("unix:x", "127.0.0.1", 0, 1.0, False, "INFO", HttpLimits(), origins)
    parsed, control_fd = _options(["--control-fd", "3", *gateway_arguments(options)])
    assert (parsed, control_fd) == (options, 3)
