"""CPU per call of authenticating and authorizing a GetAssignment, without a server: the auth
interceptor's wrapped handler is called directly with a fake call context, and the handler
does what get_assignment does before its first query (the use case's check).

    .venv/bin/python bench/auth_overhead.py [SRC]

SRC, the `src` directory of another checkout (`git archive <commit> src | tar -x -C /tmp/x`),
measures that one instead, so that two commits can be compared on the same machine; before
the use cases checked their caller, the interceptor did it all and the handler does nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])

import grpc

from customer_segments.auth.tokens import TokenVerifier, issue_token
from customer_segments.grpc import auth_interceptor
from customer_segments.services import authorization

SECRET = b"a-secret-for-the-benchmark-only-0123456789"
METHOD = "/customersegment.v1.CustomerAssignmentService/GetAssignment"
CALLS, RUNS = 50_000, 7


class _Context:
    def __init__(self, token: str) -> None:
        self.metadata = (
            ("user-agent", "grpc-python"),
            ("authorization", f"Bearer {token}"),
            ("x-request-id", "r-1"),
        )

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


async def _check_in_use_case(request: Any, context: Any) -> None:
    checker: Any = authorization
    checker.authorize(auth_interceptor.caller(), checker.UseCase.GET_ASSIGNMENT, request.tenant)


async def _nothing(request: Any, context: Any) -> None:
    auth_interceptor.caller()


async def main() -> None:
    in_use_case = hasattr(authorization, "authorize")
    behavior = _check_in_use_case if in_use_case else _nothing
    interceptor = auth_interceptor.AuthInterceptor(TokenVerifier(secret=SECRET))
    handler = interceptor.wrap(grpc.unary_unary_rpc_method_handler(behavior), METHOD)
    call: Any = handler.unary_unary
    token = issue_token(SECRET, tenant="acme", scopes=["customersegment.segment_read"])
    request, context = SimpleNamespace(tenant="acme"), _Context(token)
    for _ in range(2_000):  # the token is verified once, then remembered
        await call(request, context)
    per_call = []
    for _ in range(RUNS):
        start = time.process_time()
        for _ in range(CALLS):
            await call(request, context)
        per_call.append((time.process_time() - start) / CALLS * 1e6)
    where = "use case" if in_use_case else "interceptor"
    print(
        f"authorization in the {where}: median {statistics.median(per_call):.2f} µs per call, "
        f"min {min(per_call):.2f} ({RUNS} runs of {CALLS:,})"
    )


if __name__ == "__main__":
    asyncio.run(main())
