"""Webhook endpoints (Emporix's "HTTP strategy"): what a valid endpoint is, which destinations
the service may call (SSRF rules), the retry schedule, and the Standard Webhooks secret."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from customer_segments.domain.errors import InvalidArgument, over_limit
from customer_segments.domain.events import EventType

# The change events of the outbox, in the order the docs list them.
EVENT_TYPES = tuple(EventType)
MAX_ENDPOINTS_PER_TENANT = 100
MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_VALUE_LENGTH = 1024
SECRET_PREFIX = "whsec_"
# Svix accepts 24 to 64 bytes; 32 is what it generates.
MIN_SECRET_BYTES, MAX_SECRET_BYTES, GENERATED_SECRET_BYTES = 24, 64, 32

# Headers the receiver's HTTP stack or the signature owns: a caller's value would break the
# connection (hop-by-hop, RFC 9110 section 7.6.1), the framing, or the signed message.
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
    }
)
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")

# Cloud metadata services reached by name (their addresses are link-local, refused anyway).
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
# Metadata addresses outside the link-local ranges: Alibaba Cloud, AWS over IPv6.
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"


@dataclass(frozen=True, slots=True)
class WebhookInput:
    """An endpoint as a create or update gives it. `secret_key` "" : generate (create) or keep
    (update); `active` None: true on create, kept on update."""

    destination_url: str
    secret_key: str
    headers: dict[str, str]
    event_types: tuple[str, ...]
    active: bool | None


@dataclass(frozen=True, slots=True)
class Webhook:
    tenant: str
    id: str
    destination_url: str
    headers: dict[str, str]
    event_types: tuple[str, ...]
    active: bool
    version: int
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    sequence: int
    event_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    modified_at: datetime


def generated_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode()


def secret_key(value: str, field: str) -> str:
    """A given secret: whsec_ and the base64 of 24 to 64 bytes (what Svix and the
    standardwebhooks libraries take)."""
    problem = (
        f"must be {SECRET_PREFIX} followed by the base64 of {MIN_SECRET_BYTES} to "
        f"{MAX_SECRET_BYTES} bytes"
    )
    if not value.startswith(SECRET_PREFIX):
        raise InvalidArgument(field, problem)
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(field, problem) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidArgument(field, problem)
    return value


def headers(values: dict[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_HEADERS:
        raise over_limit(field, f"must have at most {MAX_HEADERS} entries")
    seen: set[str] = set()
    for name, value in values.items():
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidArgument(field, f"{name!r} is not a header name")
        if lowered in _RESERVED_HEADERS or lowered.startswith("webhook-"):
            raise InvalidArgument(field, f"{name!r} may not be set: the service sends it")
        if lowered in seen:
            raise InvalidArgument(field, f"{name!r} is given twice")
        seen.add(lowered)
        if len(value) > MAX_HEADER_VALUE_LENGTH or not _HEADER_VALUE.fullmatch(value):
            raise InvalidArgument(
                f"{field}.{name}",
                f"must be at most {MAX_HEADER_VALUE_LENGTH} printable ASCII characters",
            )
    return values


def event_types(values: tuple[str, ...], field: str) -> tuple[str, ...]:
    for value in values:
        if value not in EVENT_TYPES:
            raise InvalidArgument(field, f"{value!r} is not one of {', '.join(EVENT_TYPES)}")
    return tuple(dict.fromkeys(values))  # in the given order, once each


def forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the service must never call this address (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "is unspecified"
    if address.is_link_local:
        return "is link-local (cloud metadata services live there)"
    if address in _METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if address.is_multicast:
        return "is multicast"
    if isinstance(address, ipaddress.IPv4Address) and (
        address == ipaddress.IPv4Address("255.255.255.255") or address.is_reserved
    ):
        return "is reserved"
    return None


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def destination_url(value: str, field: str) -> str:
    """https://, or http:// on loopback; no credentials; a literal address must not be one
    forbidden_address refuses. (The addresses a name resolves to are checked at each delivery.)"""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_URL_LENGTH:
        raise over_limit(field, f"must have at most {MAX_URL_LENGTH} characters")
    if not _HEADER_VALUE.fullmatch(value) or " " in value:
        raise InvalidArgument(field, "must be printable ASCII without spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError as error:
        raise InvalidArgument(field, f"is not a URL ({error})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument(field, "must be an https:// URL (or http:// on loopback)")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(field, "must not carry a user name or password")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise InvalidArgument(
            field, "must be https://; http:// only on loopback (127.0.0.0/8, ::1, localhost)"
        )
    if host.lower().rstrip(".") in _METADATA_HOSTS:
        raise InvalidArgument(field, f"host {host} is a cloud metadata service")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return value
    reason = forbidden_address(address)
    if reason is not None:
        raise InvalidArgument(field, f"address {host} {reason}")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
# Svix's schedule: the first attempt at once, then these delays after each failure.
DEFAULT_RETRY_SCHEDULE = "0s,5s,5m,30m,2h,5h,10h,10h"


def retry_schedule(text: str) -> tuple[float, ...]:
    """`0s,5s,5m,...`: the delay before each attempt, in seconds (ValueError naming the bad
    entry)."""
    delays = []
    for entry in text.split(","):
        found = _DELAY.fullmatch(entry.strip())
        if found is None:
            raise ValueError(f"{entry.strip()!r} is not a delay such as 500ms, 5s, 5m, 2h or 1d")
        delays.append(float(found[1]) * _UNITS[found[2]])
    if not delays:
        raise ValueError("needs at least one attempt")
    return tuple(delays)
