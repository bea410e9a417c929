"""The `google.api.http` annotations of the protos and the REST gateway's route table agree,
path by path and method by method, in both directions: a transcoder (Envoy, grpc-gateway) put
in front of the gRPC server from the annotations serves the paths the gateway serves."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
from customersegment.v1 import assignment_pb2, directory_pb2, segment_pb2, webhooks_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from customer_segments.gateway.app import create_app
from customer_segments.gateway.http_server import PROBE_PATHS

# Routes of the gateway that are its own, not an RPC's.
OPERATIONAL_PATHS = {*PROBE_PATHS, "/openapi.yaml"}
# HEAD is aiohttp's companion of every GET, not a route of its own.
IMPLICIT_METHODS = {"HEAD"}
_VARIABLE = re.compile(r"\{([^}=:]+)(?:[=:][^}]*)?\}")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")

Route = tuple[str, str]  # (method, path with {camelCase} variables)


def _methods() -> Iterator[MethodDescriptor]:
    for module in (assignment_pb2, directory_pb2, segment_pb2, webhooks_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def _rules(method: MethodDescriptor) -> list[http_pb2.HttpRule]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _json_path(template: str, request: Descriptor, where: str) -> str:
    """The template with each variable, a request field path, as the JSON name the gateway
    uses for it (`{segment_id}` -> `{segmentId}`)."""

    def json_name(match: re.Match[str]) -> str:
        field = request.fields_by_name.get(match.group(1))
        assert field is not None, f"{where}: {{{match.group(1)}}} is no field of {request.name}"
        return "{" + field.json_name + "}"

    return _VARIABLE.sub(json_name, template)


def _annotated() -> dict[Route, str]:
    """(method, path) -> the RPC annotated with it."""
    routes: dict[Route, str] = {}
    for method in _methods():
        for rule in _rules(method):
            verb = rule.WhichOneof("pattern")
            assert verb in _HTTP_METHODS, f"{method.full_name}: pattern {verb}"
            request = method.input_type
            path = _json_path(getattr(rule, verb), request, method.full_name)
            if rule.body not in ("", "*"):
                assert rule.body in request.fields_by_name, (
                    f"{method.full_name}: body {rule.body} is no field of {request.name}"
                )
            route = (verb.upper(), path)
            assert route not in routes, f"{route} is annotated on {routes[route]} too"
            routes[route] = method.full_name
    return routes


async def _served() -> set[Route]:
    """The routes of the real gateway application (its channel never connects)."""
    channel = grpc.aio.insecure_channel("localhost:1")
    try:
        app = create_app(channel)
    finally:
        await channel.close(None)
    served = set()
    for route in app.router.routes():
        path = _VARIABLE.sub(r"{\1}", route.resource.canonical) if route.resource else ""
        if route.method not in IMPLICIT_METHODS and path not in OPERATIONAL_PATHS:
            served.add((route.method, path))
    return served


async def test_every_route_of_the_gateway_has_an_annotated_rpc() -> None:
    served = await _served()
    assert ("PATCH", "/customer-segment/{tenant}/segments/{segmentId}") in served  # the walk works
    missing = sorted(served - _annotated().keys())
    assert missing == [], "REST routes with no RPC annotated with them"


async def test_every_annotation_names_a_route_of_the_gateway() -> None:
    served = await _served()
    unserved = {route: rpc for route, rpc in _annotated().items() if route not in served}
    assert unserved == {}, "annotated routes that the gateway does not serve"


def test_only_client_streams_and_the_directory_have_no_rest_route() -> None:
    """REST has no client streaming, and Emporix no directory paths; every other RPC is what
    some REST path does."""
    bare = sorted(method.full_name for method in _methods() if not _rules(method))
    assert bare == [
        "customersegment.v1.CustomerAssignmentService.StreamRemoveAssignments",
        "customersegment.v1.CustomerAssignmentService.StreamUpsertAssignments",
        "customersegment.v1.DirectoryService.UpsertCustomer",
        "customersegment.v1.DirectoryService.UpsertLegalEntity",
    ]
