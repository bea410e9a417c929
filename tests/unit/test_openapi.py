"""GET /openapi.yaml describes exactly what the gateway routes."""

from __future__ import annotations

import grpc
import schemathesis
import yaml
from schemathesis.core.result import Err

from customer_segments.gateway.app import OPENAPI, create_app
from customer_segments.gateway.http_server import PROBE_PATHS

METHODS = {"GET", "PUT", "POST", "PATCH", "DELETE"}


async def test_described_operations_are_the_routed_ones() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # never called
    try:
        app = create_app(channel)
    finally:
        await channel.close(None)
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method in METHODS and route.resource is not None
    }
    routed.discard(("GET", "/openapi.yaml"))
    routed -= {("GET", path) for path in PROBE_PATHS}  # operations', not Emporix's
    document = yaml.safe_load(OPENAPI.read_text())
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }
    assert routed == described
    assert {tag["name"] for tag in document["tags"]} == {
        "Customers Assignments",
        "Segments",
        "Webhooks",
    }


def test_list_operations_describe_cursor_paging() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    listed = [
        ("/customer-segment/{tenant}/segments/{segmentId}/customers", "get"),
        ("/customer-segment/{tenant}/segments/{segmentId}/customers/search", "post"),
        ("/customer-segment/{tenant}/segments", "get"),
        ("/customer-segment/{tenant}/segments/search", "post"),
    ]
    for path, method in listed:
        operation = document["paths"][path][method]
        names = {parameter.get("name") for parameter in operation["parameters"]}
        assert {"next", "prev"} <= names, path
        headers = operation["responses"]["200"]["headers"]
        assert {"X-Next-Cursor", "X-Prev-Cursor", "X-Total-Count"} <= set(headers), path


def test_served_description_names_no_fixed_host_and_no_emporix_token_url() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    assert document["servers"] == [{"url": "/"}]  # wherever it is fetched from
    schemes = document["components"]["securitySchemes"]
    assert "emporix.io" not in OPENAPI.read_text().split("securitySchemes:")[1]
    assert all(scheme["type"] == "http" for scheme in schemes.values())
    requirements = [*document["security"]] + [
        requirement
        for item in document["paths"].values()
        for method, operation in item.items()
        if method.upper() in METHODS
        for requirement in operation["security"]
    ]
    assert requirements and all(set(r) <= set(schemes) for r in requirements)
    patch = document["paths"]["/customer-segment/{tenant}/segments/{segmentId}"]["patch"]
    assert patch["x-scopes"] == ["customersegment.segment_manage"]


def test_served_description_loads_in_schemathesis() -> None:
    schema = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text()))
    results = list(schema.get_all_operations())
    assert not [result.err() for result in results if isinstance(result, Err)]
    assert len(results) == sum(
        method.upper() in METHODS for item in schema.raw_schema["paths"].values() for method in item
    )


def test_single_resources_describe_conditional_requests_and_location() -> None:
    """The HTTP conventions beyond Emporix (README, "REST") are in the description."""
    paths = yaml.safe_load(OPENAPI.read_text())["paths"]
    for path in (
        "/customer-segment/{tenant}/segments/{segmentId}/customers/{customerId}",
        "/customer-segment/{tenant}/segments/{segmentId}",
    ):
        get = paths[path]["get"]
        assert "If-None-Match" in {parameter.get("name") for parameter in get["parameters"]}
        assert "ETag" in get["responses"]["200"]["headers"] and "304" in get["responses"]
        for method in ("put", "delete"):
            names = {parameter.get("name") for parameter in paths[path][method]["parameters"]}
            assert "If-Match" in names and "412" in paths[path][method]["responses"], path
        assert "Location" in paths[path]["put"]["responses"]["201"]["headers"]
        assert "415" in paths[path]["put"]["responses"]
    created = paths["/customer-segment/{tenant}/segments"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
