"""Builds src/customer_segments/gateway/openapi.yaml, the description of what the gateway
serves, from the official Emporix file: its Customers Assignments and Segments operations, plus
the answers this service adds to them.

Usage: python scripts/build_openapi.py [EMPORIX_FILE]   (default: the copy in tests/contract/)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EMPORIX = ROOT / "tests" / "contract" / "emporix-customer-segment-api.yml"
# Paths beyond the Emporix file (the webhooks), with their schemas and tag.
OWN_PATHS = ROOT / "scripts" / "openapi_webhooks.yaml"
OUTPUT = ROOT / "src" / "customer_segments" / "gateway" / "openapi.yaml"
SERVED_TAGS = {"Customers Assignments", "Segments"}
METHODS = {"get", "put", "post", "patch", "delete"}
# Tagged Segments, but about products and categories: the Items Assignments side, not served.
NOT_SERVED = {"/customer-segment/{tenant}/segments/match"}

ERROR = {"$ref": "#/components/responses/Common_response_NotFound_404"}
ADDED_RESPONSES = {
    # Any call on a segment (or assignment) that does not exist.
    "404": ERROR,
    "405": {"description": "This method is not allowed on this path (Error body)."},
    "413": {"description": "The request body is larger than 10 MB (Error body)."},
}
REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Echoed in the response (made when absent) and passed on to the service.",
}

# Beyond Emporix: keyset (cursor) paging on the list and search operations.
PAGED = {"$ref": "#/components/parameters/pageNumber"}
CURSOR_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": f"Beyond Emporix: the X-{header}-Cursor of an earlier answer to the same "
        "request (same q and sort); the page that follows it. pageNumber and X-Total-Count are "
        "ignored with it; next and prev together are a 400.",
    }
    for name, header in (("next", "Next"), ("prev", "Prev"))
]
CURSOR_HEADERS = {
    f"X-{header}-Cursor": {
        "description": f"Beyond Emporix: an opaque cursor of the {page} page, for the "
        f"{name} parameter; absent when there is none.",
        "schema": {"type": "string"},
    }
    for header, page, name in (("Next", "following", "next"), ("Prev", "preceding", "prev"))
}
TOTAL_HEADER = {
    "X-Total-Count": {
        "description": "The number of all matches, when the request asked with "
        "X-Total-Count: true (not in cursor mode).",
        "schema": {"type": "integer"},
    }
}


def _add_cursor_paging(operation: dict[str, Any]) -> None:
    if PAGED not in operation.get("parameters", []):
        return
    operation["parameters"] += copy.deepcopy(CURSOR_PARAMETERS)
    headers = operation["responses"]["200"].setdefault("headers", {})
    headers.update(copy.deepcopy({**TOTAL_HEADER, **CURSOR_HEADERS}))


# Beyond Emporix: HTTP conditional requests, Location, 415 (README, "REST gateway").
SINGLE_RESOURCE_ENDINGS = ("/{customerId}", "/{legalEntityId}", "/segments/{segmentId}")
ETAG_HEADER = {
    "ETag": {
        "description": 'Beyond Emporix: the strong entity tag "<metadata.version>".',
        "schema": {"type": "string"},
    }
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Beyond Emporix: entity tags (or *); when one is the current ETag the "
    "answer is 304 without a body.",
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Beyond Emporix: entity tags (strong) or *; the write happens only if the "
    "resource exists at one of these versions (any, with *), else 412. With a body "
    "metadata.version as well, both must allow the stored version.",
}
NOT_MODIFIED = {"description": "Beyond Emporix: If-None-Match matched.", "headers": ETAG_HEADER}
PRECONDITION_FAILED = {
    "description": "Beyond Emporix: If-Match did not match the stored version, or the "
    "resource does not exist (Error body)."
}
UNSUPPORTED_MEDIA_TYPE = {
    "description": "The body's Content-Type is not application/json or a +json type in UTF-8 "
    "(Error body naming Content-Type)."
}
LOCATION_HEADER = {
    "Location": {
        "description": "Beyond Emporix: the path of the created resource.",
        "schema": {"type": "string"},
    }
}


def _add_http_conventions(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    if path.endswith(SINGLE_RESOURCE_ENDINGS):
        if method == "get":
            operation["parameters"].append(copy.deepcopy(IF_NONE_MATCH))
            responses["200"].setdefault("headers", {}).update(copy.deepcopy(ETAG_HEADER))
            responses.setdefault("304", copy.deepcopy(NOT_MODIFIED))
        elif method in ("put", "patch", "delete"):
            operation["parameters"].append(copy.deepcopy(IF_MATCH))
            responses.setdefault("412", copy.deepcopy(PRECONDITION_FAILED))
    if "201" in responses:
        created = responses["201"] = copy.deepcopy(responses["201"])
        created.setdefault("headers", {}).update(copy.deepcopy(LOCATION_HEADER))
    if "requestBody" in operation:
        responses.setdefault("415", copy.deepcopy(UNSUPPORTED_MEDIA_TYPE))


def build(emporix: dict[str, Any]) -> dict[str, Any]:
    served = copy.deepcopy(emporix)
    served["info"]["title"] = "Customer Segment Service (self-hosted)"
    served["info"]["version"] = "1"
    served["tags"] = [tag for tag in served["tags"] if tag["name"] in SERVED_TAGS]
    paths: dict[str, Any] = {}
    for path, item in emporix["paths"].items():
        if path in NOT_SERVED:
            continue
        operations = {
            method: operation
            for method, operation in item.items()
            if method in METHODS and SERVED_TAGS & set(operation.get("tags", []))
        }
        if not operations:
            continue
        kept = {key: value for key, value in item.items() if key not in METHODS}
        for method, operation in operations.items():
            operation = copy.deepcopy(operation)
            responses = operation.setdefault("responses", {})
            for code, response in ADDED_RESPONSES.items():
                responses.setdefault(code, response)
            operation.setdefault("parameters", []).append(REQUEST_ID)
            _add_cursor_paging(operation)
            _add_http_conventions(path, method, operation)
            kept[method] = operation
        paths[path] = kept
    served["paths"] = paths
    _add_own_paths(served, yaml.safe_load(OWN_PATHS.read_text()))
    _self_hosted_access(served)
    return served


def _add_own_paths(served: dict[str, Any], own: dict[str, Any]) -> None:
    """The service's own paths, with what every served operation gets (X-Request-Id, 404, 405,
    413)."""
    served["tags"].append(own["tag"])
    served["components"]["schemas"].update(own["schemas"])
    served["components"]["parameters"].update(own["parameters"])
    for path, item in own["paths"].items():
        for method in METHODS & set(item):
            operation = item[method]
            for code, response in ADDED_RESPONSES.items():
                operation["responses"].setdefault(code, response)
            operation.setdefault("parameters", []).append(REQUEST_ID)
        served["paths"][path] = item


# Emporix's tokens come from its own host; here the caller brings a JWT of the issuer the
# service trusts (README, Authorization), and the gateway is wherever it is served from.
BEARER = "BearerToken"
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "A JWT of the issuer the service is configured to trust (its JWKS); "
    "the scopes an operation needs are in its x-scopes.",
}


def _self_hosted_access(served: dict[str, Any]) -> None:
    """A relative server (the host the document is fetched from) and bearer tokens instead of
    the Emporix OAuth2 token URL; each operation's scopes stay, as x-scopes."""
    served["servers"] = [{"url": "/"}]
    served["components"]["securitySchemes"] = {BEARER: BEARER_SCHEME}
    served["security"] = [{BEARER: []}]
    for item in served["paths"].values():
        for method in METHODS & set(item):
            operation = item[method]
            scopes = sorted(
                {
                    scope
                    for requirement in operation.get("security", [])
                    for scopes in requirement.values()
                    for scope in scopes
                }
            )
            operation["security"] = [{BEARER: []}]
            if scopes:
                operation["x-scopes"] = scopes


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else EMPORIX
    document = build(yaml.safe_load(source.read_text()))
    header = (
        "# Generated by scripts/build_openapi.py from the official Emporix file; do not edit.\n"
    )
    OUTPUT.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(document['paths'])} paths")
