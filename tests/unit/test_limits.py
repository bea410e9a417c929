"""The message limits of the two ends of each channel fit together (limits.py)."""

from __future__ import annotations

from customer_segments.gateway.app import CHANNEL_OPTIONS
from customer_segments.gateway.requests import mixins_json
from customer_segments.grpc import server
from customer_segments.limits import (
    DEFAULT_CLIENT_RECEIVE_BYTES,
    GATEWAY_MAX_REQUEST_BYTES,
    MAX_ANSWER_BYTES,
    MAX_BODY_BYTES,
    PAGE_BUDGET_BYTES,
)


def test_a_valid_rest_write_reaches_the_server() -> None:
    """The server receives at least what the gateway sends for a body of 10 MB."""
    assert MAX_BODY_BYTES < GATEWAY_MAX_REQUEST_BYTES <= server.DEFAULT_LIMITS.max_receive_bytes


def test_what_the_server_sends_the_gateway_receives() -> None:
    options = dict(CHANNEL_OPTIONS)
    assert options["grpc.max_receive_message_length"] == MAX_ANSWER_BYTES
    assert options["grpc.max_send_message_length"] == GATEWAY_MAX_REQUEST_BYTES
    # An object written with the largest request comes back by Get.
    assert MAX_ANSWER_BYTES >= GATEWAY_MAX_REQUEST_BYTES


def test_a_page_fits_a_default_grpc_client() -> None:
    assert PAGE_BUDGET_BYTES < DEFAULT_CLIENT_RECEIVE_BYTES == 4 * 1024 * 1024


def test_mixins_are_passed_on_compactly() -> None:
    """With json's default ", " and ": ", a 10 MB body of short values became a 15 MB request,
    over what the gateway sends."""
    assert mixins_json({"v": [1, 2], "k": {"a": None}}) == '{"v":[1,2],"k":{"a":null}}'
