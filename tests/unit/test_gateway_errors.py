"""gRPC failures -> REST answers by the canonical table, in the documented bodies."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc.aio import AioRpcError, Metadata
from grpc_status import rpc_status

from customer_segments.domain.errors import ERROR_DOMAIN, InvalidArgument, NotFound
from customer_segments.gateway.errors import from_rpc_error, rest_field
from customer_segments.grpc.errors import to_status


def rpc_error(code: grpc.StatusCode, details: str, trailing: Metadata | None = None) -> AioRpcError:
    return AioRpcError(code, Metadata(), trailing or Metadata(), details, None)


@pytest.mark.parametrize(
    ("code", "http"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
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
    if http in (500, 503, 504):
        # Nothing the server kept to itself, nor gRPC's own words (which name addresses).
        assert "what went wrong" not in body["message"]
    else:
        assert body["message"] == "what went wrong"


def _service_status(
    code: grpc.StatusCode, message: str, *extra: error_details_pb2.RetryInfo
) -> AioRpcError:
    """An error as the service itself reports it: with its ErrorInfo."""
    details = []
    for detail in (error_details_pb2.ErrorInfo(reason="SLOW_DOWN", domain=ERROR_DOMAIN), *extra):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=details)
    )
    return rpc_error(status.code, status.details, Metadata(*status.trailing_metadata))


def test_resource_exhausted_from_the_service_is_429() -> None:
    response = from_rpc_error(_service_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"))
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(("seconds", "nanos", "header"), [(2, 500_000_000, "3"), (0, 1, "1")])
def test_retry_after_is_the_retry_info_delay_in_whole_seconds(
    seconds: int, nanos: int, header: str
) -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=seconds, nanos=nanos))
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        response = from_rpc_error(_service_status(code, "later", retry))
        assert response.headers["Retry-After"] == header


def test_grpc_unavailable_hides_the_addresses_the_service_keeps_its_words() -> None:
    channel_words = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:50051: "
        "Failed to connect to remote host: Connection refused"
    )
    response = from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, channel_words))
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "10.1.2.3" not in body["message"] and "50051" not in body["message"], body
    own = "The database is unavailable; retry later."
    response = from_rpc_error(_service_status(grpc.StatusCode.UNAVAILABLE, own))
    assert json.loads(response.body)["message"] == own  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "details",
    [
        "Stream removed (CLIENT: Received message larger than max (6004790 vs. 4194304))",
        "Sent message larger than max (70000000 vs. 67108864)",
        "received initial metadata size exceeds limit",
    ],
)
def test_a_grpc_size_limit_is_never_429_nor_503(details: str) -> None:
    """gRPC's own RESOURCE_EXHAUSTED (a message over a limit) is no reason to slow down: an
    answer too large is 500, without gRPC's words; a request too large is 413."""
    error = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, details)
    response = from_rpc_error(error, request_bytes=1234)
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert (response.status, body["code"], body["message"]) == (500, 500, "Internal error")
    too_large = from_rpc_error(
        rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max (99 vs. 98)"),
        request_bytes=99,
    )
    body = json.loads(too_large.body)  # type: ignore[arg-type]
    assert too_large.status == 413 and body["code"] == 413 and "max" not in body["message"]


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


@pytest.mark.parametrize(
    ("proto_path", "rest_path"),
    [
        ("customer_id", "customerId"),
        ("page_size", "pageSize"),
        ("mixins_json", "mixins"),
        ("metadata_mixins_json", "metadata.mixins"),
        ("segment.site_code", "siteCode"),
        ("segment.validity.from", "validity.from"),
        ("segment.metadata.mixins_json", "metadata.mixins"),
        ("operations[2].path", "[2].path"),
        ("operations[12].value_json", "[12].value"),
        ("items[3].legal_entity_id", "items[3].legalEntityId"),
        ("segment", "body"),
    ],
)
def test_rest_field_names(proto_path: str, rest_path: str) -> None:
    assert rest_field(proto_path) == rest_path
