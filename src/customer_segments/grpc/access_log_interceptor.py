"""Every call's request id and its access line (call_interceptor.py runs them).

Each call has a request id: the caller's `x-request-id`, or one made here. It is echoed in the
response's trailing metadata (initial metadata would cost a send of its own per call: about a
tenth of a GetAssignment's server time, measured with py-spy), passed to the services (the
audit log) and the log lines of the call through the contextvar, and the access log (logger
`customer_segments.access`) writes one line per call with it: method, status code, duration,
tenant, peer. Both run in call_interceptor.py's wrapper, outside the error status and the
auth interceptor, so that the line covers everything they do and refuse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import grpc

from customer_segments.domain.errors import InvalidArgument
from customer_segments.grpc.auth_interceptor import caller
from customer_segments.grpc.errors import to_status
from customer_segments.grpc.interceptors import REQUEST_ID_KEY, Context, with_request_id
from customer_segments.limits import MAX_REQUEST_ID_LENGTH
from customer_segments.logs import log_later, request_id

access_log = logging.getLogger("customer_segments.access")


def _given_request_id(context: Context) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == REQUEST_ID_KEY:
            return value if isinstance(value, str) else None
    return None


def _tenant() -> str | None:
    try:
        return caller().tenant
    except LookupError:  # a public service, or a call refused before its token was read
        return None


def _code(context: Context, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    # An error no inner interceptor turned into a status: gRPC answers UNKNOWN.
    return grpc.StatusCode.OK.name if error is None else grpc.StatusCode.UNKNOWN.name


async def give_request_id(context: Context) -> None:
    """The call's request id, set for its log lines and echoed in its trailing metadata; a
    given one too long is refused (INVALID_ARGUMENT), its line written all the same."""
    given = _given_request_id(context)
    too_long = given is not None and len(given) > MAX_REQUEST_ID_LENGTH
    current = given if given and not too_long else os.urandom(16).hex()
    request_id.set(current)
    context.set_trailing_metadata(((REQUEST_ID_KEY, current),))
    if too_long:
        status = to_status(
            InvalidArgument(REQUEST_ID_KEY, f"must be 1 to {MAX_REQUEST_ID_LENGTH} characters")
        )
        await context.abort(status.code, status.details, with_request_id(status.trailing_metadata))


def access_line(
    method: str, context: Context, error: BaseException | None, started: float, peer: str
) -> None:
    """The call's line, once it has ended (`error`: what ended it, if anything did; `peer`:
    context.peer(), taken when the call started)."""
    if not access_log.isEnabledFor(logging.INFO):  # nothing to compute
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    code, tenant = _code(context, error), _tenant()
    log_later(
        access_log,
        "grpc %s %s %.1fms tenant=%s request_id=%s peer=%s",
        (method, code, duration_ms, tenant, request_id.get(), peer),
        {
            "grpc_method": method,
            "grpc_code": code,
            "duration_ms": duration_ms,
            "tenant": tenant,
            "peer": peer,
        },
    )
