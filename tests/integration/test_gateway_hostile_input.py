"""Bodies, headers and URLs that used to make the gateway raise (500 with a stack trace, or
aiohttp's plain-text 400): each is answered with the documented body, 400 naming what is
wrong, or 401 for a bad Authorization header, and never reaches the 500 catch-all."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import pytest

from customer_segments.domain.validation import MAX_JSON_DEPTH
from customer_segments.gateway.app import Gateway
from customer_segments.gateway.errors import UNAUTHORIZED_BODY
from tests.helpers import bearer


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, head: bytes, body: bytes = b"") -> Answer:
    """Sends exactly these bytes (a request line and headers, without the blank line), so that
    no client library cleans up what the test means to send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        head = head.rstrip(b"\r\n") + b"\r\n"
        writer.write(head + length + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    header_block, _, payload = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        payload = _unchunked(payload)
    return Answer(int(lines[0].split()[1]), headers, payload)


def _unchunked(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def assert_documented_error(answer: Answer, code: int, field: str | None = None) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.body
    body = answer.json()
    assert answer.status == code and body["code"] == code and body["status"], body
    assert body["message"] and "Traceback" not in body["message"]
    if field is not None:
        assert body["details"]["field"] == field, body


def put_head(tenant: str, segment_id: str, *headers: bytes, customer: bytes = b"c1") -> bytes:
    path = f"/customer-segment/{tenant}/segments/{segment_id}/customers/".encode() + customer
    lines = [b"PUT " + path + b" HTTP/1.1", b"Host: localhost"]
    lines += [b"Authorization: " + bearer(tenant).encode(), b"Content-Type: application/json"]
    return b"\r\n".join([*lines, *headers]) + b"\r\n"


def nested(depth: int) -> bytes:
    return b'{"mixins":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


BODIES: list[tuple[str, bytes, str]] = [
    ("nested 970 deep", nested(970), "body"),
    ("nested 100000 deep", b'{"mixins":{"a":' + b"[" * 100_000 + b"}}", "body"),
    ("raw surrogate bytes", b'{"mixins":{"a":"\xed\xa0\x80"}}', "body"),
    ("invalid UTF-8", b'{"mixins":{"a":"\xff"}}', "body"),
    ("UTF-16", '{"mixins":{}}'.encode("utf-16"), "body"),
    ("5000 digits", b'{"mixins":{"a":' + b"7" * 5000 + b"}}", "body"),
    ("escaped lone surrogate", b'{"mixins":{"a":"\\udc00"}}', "body"),
    # JSON the gateway can carry, but no document the service stores: it names the document
    # (so that in a bulk body only that item is refused).
    ("NaN", b'{"mixins":{"a":NaN}}', "mixins"),
    ("Infinity", b'{"mixins":{"a":-Infinity}}', "mixins"),
    ("huge exponent", b'{"mixins":{"a":1e999999}}', "mixins"),
    ("negative huge exponent", b'{"mixins":{"a":-1e400}}', "mixins"),
    ("mixins too deep", nested(MAX_JSON_DEPTH + 1), "mixins"),
    ("mixins 500 deep", nested(500), "mixins"),
]


@pytest.mark.parametrize(("name", "body", "field"), BODIES, ids=[name for name, *_ in BODIES])
async def test_hostile_bodies_are_400_naming_the_body(
    gateway: Gateway, tenant: str, segment_id: str, name: str, body: bytes, field: str
) -> None:
    answer = await raw_request(gateway.port, put_head(tenant, segment_id), body)
    assert_documented_error(answer, 400, field)


async def test_deep_bodies_are_stored_up_to_the_limit_and_never_a_500(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    """Between 937 and 945 levels a body used to pass the gateway and break the server's
    JSON encoding (a 500), deeper ones the gateway's parser (a 500 too): never a 500 now."""
    answer = await raw_request(gateway.port, put_head(tenant, segment_id), nested(MAX_JSON_DEPTH))
    assert answer.status == 201, answer.body
    url = f"/customer-segment/{tenant}/segments/{segment_id}/customers"
    async with http.get(url + "/c1") as response:
        assert response.status == 200, await response.text()
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
    for depth in range(900, 1000, 2):
        answer = await raw_request(gateway.port, put_head(tenant, segment_id), nested(depth))
        assert answer.status == 400, (depth, answer.body)
        assert answer.json()["details"]["field"] in ("mixins", "body")


ENCODINGS = [b"gzip", b"deflate", b"br", b"zstd", b"compress", b"x-unknown", b"gzip, br"]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=[e.decode() for e in ENCODINGS])
async def test_a_body_not_encoded_as_its_content_encoding_says_is_400(
    gateway: Gateway, tenant: str, segment_id: str, encoding: bytes
) -> None:
    head = put_head(tenant, segment_id, b"Content-Encoding: " + encoding)
    answer = await raw_request(gateway.port, head, b'{"mixins":{}}')
    assert_documented_error(answer, 400, "Content-Encoding")


async def test_a_gzip_body_is_read(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, segment_id: str
) -> None:
    head = put_head(tenant, segment_id, b"Content-Encoding: gzip")
    answer = await raw_request(gateway.port, head, gzip.compress(b'{"mixins":{"z":1}}'))
    assert answer.status == 201, answer.body
    url = f"/customer-segment/{tenant}/segments/{segment_id}/customers/c1"
    async with http.get(url) as response:
        assert (await response.json())["mixins"] == {"z": 1}


async def test_a_gzip_bomb_is_413(gateway: Gateway, tenant: str, segment_id: str) -> None:
    bomb = gzip.compress(b'{"mixins":{"a":"' + b"x" * (11 * 1024 * 1024) + b'"}}')
    head = put_head(tenant, segment_id, b"Content-Encoding: gzip")
    answer = await raw_request(gateway.port, head, bomb)
    assert_documented_error(answer, 413)


async def test_a_non_ascii_authorization_header_is_401(
    gateway: Gateway, tenant: str, segment_id: str
) -> None:
    path = f"/customer-segment/{tenant}/segments/{segment_id}/customers".encode()
    for value in (b"Bearer \xff\xfe", b"Bearer caf\xc3\xa9", b"Bearer " + b"a" * 7200):
        head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n"
        answer = await raw_request(gateway.port, head)
        assert answer.status == 401, answer.body
        assert answer.json() == UNAUTHORIZED_BODY


async def test_a_header_aiohttp_refuses_gets_the_error_body(gateway: Gateway, tenant: str) -> None:
    """A control character in a header value: aiohttp's parser refuses the request before
    any header is known, so the answer names the headers."""
    path = f"/customer-segment/{tenant}/segments".encode()
    for header in (b"Authorization: " + bearer(tenant).encode() + b"\x7f", b"X-Request-Id: a\x7fb"):
        answer = await raw_request(gateway.port, b"GET " + path + b" HTTP/1.1\r\n" + header)
        assert_documented_error(answer, 400, "headers")


@pytest.mark.parametrize(
    "request_id", [b"caf\xc3\xa9", b"\xff", b"x" * 300], ids=["utf8", "ff", "long"]
)
async def test_a_bad_request_id_is_400(
    gateway: Gateway, tenant: str, segment_id: str, request_id: bytes
) -> None:
    path = f"/customer-segment/{tenant}/segments/{segment_id}/customers".encode()
    head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
    head += b"Authorization: " + bearer(tenant).encode() + b"\r\nX-Request-Id: " + request_id
    answer = await raw_request(gateway.port, head + b"\r\n")
    assert_documented_error(answer, 400, "X-Request-Id")
    assert answer.headers["x-request-id"].isascii()  # a new one, not the refused one


URLS: list[tuple[str, str]] = [
    ("/customer-segment/{tenant}/segments/%FF/customers", "segmentId"),
    ("/customer-segment/{tenant}/segments/%ED%A0%80/customers", "segmentId"),
    ("/customer-segment/{tenant}/segments/{segment}/customers/%C3", "customerId"),
    ("/customer-segment/{tenant}/segments/{segment}/customers?q=%FF", "q"),
    ("/customer-segment/{tenant}/segments/{segment}/customers?sort=%ED%A0%80", "sort"),
    ("/customer-segment/{tenant}/segments/{segment}/customers?%FF=1", "query"),
    ("/customer-segment/{tenant}/segments/{segment}/customers?fields=%C3%28", "fields"),
    ("/customer-segment/{tenant}/segments?q=%FF", "q"),
]


@pytest.mark.parametrize(("url", "field"), URLS)
async def test_non_utf8_percent_encoding_is_400_naming_the_parameter(
    gateway: Gateway, tenant: str, segment_id: str, url: str, field: str
) -> None:
    path = url.format(tenant=tenant, segment=segment_id).encode()
    head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
    answer = await raw_request(gateway.port, head + bearer(tenant).encode() + b"\r\n")
    assert_documented_error(answer, 400, field)


@pytest.mark.parametrize("size", [9 * 1024, 20 * 1024, 60 * 1024])
async def test_a_token_over_8_kb_is_401_with_the_documented_body(
    gateway: Gateway, tenant: str, size: int
) -> None:
    head = f"GET /customer-segment/{tenant}/segments HTTP/1.1\r\nHost: x\r\n".encode()
    answer = await raw_request(gateway.port, head + b"Authorization: Bearer " + b"a" * size)
    assert answer.status == 401, answer.body
    assert answer.json() == UNAUTHORIZED_BODY


async def test_what_aiohttp_refuses_itself_gets_the_documented_body(
    gateway: Gateway, tenant: str
) -> None:
    path = f"/customer-segment/{tenant}/segments".encode()
    too_long_header = b"GET " + path + b" HTTP/1.1\r\nX-Big: " + b"b" * (70 * 1024)
    too_many = b"GET " + path + b" HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(200))
    too_long_line = b"GET " + path + b"?q=" + b"a" * (70 * 1024) + b" HTTP/1.1\r\nHost: x"
    for head in (too_long_header, too_many, too_long_line):
        answer = await raw_request(gateway.port, head)
        assert_documented_error(answer, 400, "headers")


async def test_a_long_q_reaches_the_service_and_is_told_its_limit(
    gateway: Gateway, tenant: str, segment_id: str
) -> None:
    """A request line over aiohttp's default 8190 bytes: the service answers it."""
    q = "%20".join(["customerId:a"] * 400)  # 5,600 characters, 6,800 bytes encoded: > 4,000
    path = f"/customer-segment/{tenant}/segments/{segment_id}/customers?q={q}&x={'y' * 3000}"
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer(tenant)}".encode()
    assert len(path) > 8190
    answer = await raw_request(gateway.port, head)
    assert_documented_error(answer, 400, "q")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("pageSize=" + "9" * 5000, 400),
        ("pageNumber=" + "1" * 4301, 400),
        ("pageSize=" + "0" * 30 + "5", 200),
    ],
    ids=["5000 digits", "4301 digits", "leading zeros"],
)
async def test_page_parameters_of_thousands_of_digits(
    http: aiohttp.ClientSession, tenant: str, segment_id: str, query: str, expected: int
) -> None:
    url = f"/customer-segment/{tenant}/segments/{segment_id}/customers?{query}"
    async with http.get(url) as response:
        assert response.status == expected, await response.text()
        if expected == 400:
            body = await response.json()
            assert body["details"]["field"] == query.partition("=")[0]
