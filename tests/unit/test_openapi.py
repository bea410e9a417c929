"""GET /openapi.yaml describes exactly what the gateway routes."""

from __future__ import annotations

import grpc
import yaml

from customer_segments.gateway.app import OPENAPI, create_app

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
    document = yaml.safe_load(OPENAPI.read_text())
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }
    assert routed == described
    assert {tag["name"] for tag in document["tags"]} == {"Customers Assignments", "Segments"}
