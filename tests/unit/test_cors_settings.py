"""The CORS setting: flag or environment variable, checked once."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from customer_segments.cli import _settings
from customer_segments.config import Settings


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
