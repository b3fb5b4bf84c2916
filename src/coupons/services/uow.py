"""The port the use cases depend on: a transaction with repositories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from coupons.adapters.repos import SqlRepository


class UnitOfWork(Protocol):
    """One transaction; leaving it without `commit()` rolls back."""

    repo: SqlRepository

    def commit(self) -> None: ...

    def rollback(self) -> None: ...
