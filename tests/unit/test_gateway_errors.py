"""gRPC failures -> REST answers by the canonical table, in the documented bodies."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from customer_segments.domain.errors import InvalidArgument, NotFound
from customer_segments.gateway.errors import from_rpc_error, rest_field
from customer_segments.grpc.errors import to_status


def rpc_error(code: grpc.StatusCode, details: str, trailing: Metadata | None = None) -> AioRpcError:
    return AioRpcError(code, Metadata(), trailing or Metadata(), details)


@pytest.mark.parametrize(
    ("code", "http"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_canonical_mapping_and_error_body(code: grpc.StatusCode, http: int) -> None:
    response = from_rpc_error(rpc_error(code, "what went wrong"))
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert response.status == http and body["code"] == http and body["status"]
    if http == 500 or http == 504:
        assert "what went wrong" not in body["message"]  # nothing the server kept to itself
    else:
        assert body["message"] == "what went wrong"


def test_unauthenticated_is_the_gateway_style_401() -> None:
    response = from_rpc_error(rpc_error(grpc.StatusCode.UNAUTHENTICATED, "bad token"))
    assert response.status == 401
    assert json.loads(response.body) == {  # type: ignore[arg-type]
        "fault": {
            "faultstring": "Invalid access token",
            "detail": {"errorcode": "oauth.v2.InvalidAccessToken"},
        }
    }


def test_details_name_the_field_and_the_resource() -> None:
    invalid = to_status(InvalidArgument("metadata_mixins_json", "must be a JSON object"))
    response = from_rpc_error(
        rpc_error(invalid.code, invalid.details, Metadata(*invalid.trailing_metadata))
    )
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert body["details"]["field"] == "metadata.mixins"
    assert body["message"] == "metadata.mixins: must be a JSON object"
    missing = to_status(NotFound("segment", "gold"))
    response = from_rpc_error(
        rpc_error(missing.code, missing.details, Metadata(*missing.trailing_metadata))
    )
    assert json.loads(response.body)["resourceId"] == "gold"  # type: ignore[arg-type]


def test_rest_field_names() -> None:
    assert rest_field("customer_id") == "customerId"
    assert rest_field("page_size") == "pageSize"
    assert rest_field("mixins_json") == "mixins"
