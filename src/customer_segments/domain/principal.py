"""Who is calling: what a verified access token says about its bearer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """The Emporix scopes of the customer segment service."""

    READ = "customersegment.segment_read"
    READ_OWN = "customersegment.segment_read_own"
    MANAGE = "customersegment.segment_manage"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    # The customer id of a customer token; for an internal or admin token, whoever it names.
    subject: str | None = None
    # Set on a B2B customer token: the legal entity the customer acts for.
    legal_entity_id: str | None = None

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes

    @property
    def sees_only_own(self) -> bool:
        """A customer token: may read their own assignments and nothing else."""
        return self.has(Scope.READ_OWN) and not self.has(Scope.READ)
