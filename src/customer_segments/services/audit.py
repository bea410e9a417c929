"""The audit log of writes: every write use case, and every one refused for a missing scope or
another tenant, is logged with who made it (never the token) and how it ended."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from customer_segments.domain.principal import Principal
from customer_segments.logs import request_id
from customer_segments.services.authorization import UseCase, authorize

audit_log = logging.getLogger("customer_segments.audit")


@contextmanager
def authorized_write(
    principal: Principal, use_case: UseCase, tenant: str | None, segment_id: str | None
) -> Iterator[None]:
    """Authorizes the write (see `authorize`), then runs it; either way one audit line says
    how it ended. Values a caller chose are logged with repr(), so that they cannot forge log
    lines."""
    outcome = "ok"
    try:
        authorize(principal, use_case, tenant)
        yield
    except BaseException as error:  # cancelled and failed writes are logged too
        outcome = type(error).__name__
        raise
    finally:
        # Where a token of one tenant tried to write into another.
        other_tenant = (
            f" requested_tenant={tenant!r}"
            if tenant is not None and tenant != principal.tenant
            else ""
        )
        audit_log.info(
            "write %s tenant=%s%s subject=%r request_id=%r segment=%r outcome=%s",
            use_case.value,
            principal.tenant,
            other_tenant,
            principal.subject,
            request_id.get(),
            segment_id,
            outcome,
        )
