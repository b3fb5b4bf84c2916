"""Customers, found by any of their identifiers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    insert,
    or_,
    select,
)

from coupons.adapters.repos.rows import (
    customer_of,
    new_id,
)
from coupons.adapters.tables import (
    customers,
)
from coupons.domain.model import (
    Customer,
    normalize_email,
    normalize_mobile,
)
from coupons.domain.records import (
    CustomerDetails,
)


class SqlCustomerRepository:
    """Customers over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_customer(self, org_id: int, details: CustomerDetails, now: datetime) -> int:
        """Store a customer with the normal forms of its identifiers, which lookups compare."""
        result = self.conn.execute(
            insert(customers).values(
                org_id=org_id,
                created_at=now,
                mobile=details.mobile,
                mobile_norm=normalize_mobile(details.mobile) if details.mobile else None,
                email=details.email,
                email_norm=normalize_email(details.email) if details.email else None,
                external_id=details.external_id,
                first_name=details.first_name,
                last_name=details.last_name,
            )
        )
        return new_id(result)

    def find_customers(
        self,
        org_id: int,
        *,
        id: int | None = None,
        mobile_norm: str | None = None,
        email_norm: str | None = None,
        external_id: str | None = None,
    ) -> list[tuple[Customer, set[str]]]:
        """Customers matching any identifier, each with the identifiers it matched."""
        conditions = []
        if id is not None:
            conditions.append(customers.c.id == id)
        if mobile_norm is not None:
            conditions.append(customers.c.mobile_norm == mobile_norm)
        if email_norm is not None:
            conditions.append(customers.c.email_norm == email_norm)
        if external_id is not None:
            conditions.append(customers.c.external_id == external_id)
        if not conditions:
            return []
        rows = self.conn.execute(
            select(customers).where(customers.c.org_id == org_id, or_(*conditions))
        )
        found = []
        for row in rows:
            matched = set()
            if id is not None and row.id == id:
                matched.add("id")
            if mobile_norm is not None and row.mobile_norm == mobile_norm:
                matched.add("mobile")
            if email_norm is not None and row.email_norm == email_norm:
                matched.add("email")
            if external_id is not None and row.external_id == external_id:
                matched.add("externalId")
            found.append((customer_of(row), matched))
        return found

    def lock_customer(self, org_id: int, customer_id: int) -> None:
        """Hold the customer's row until commit, to serialize decisions about its coupons.

        `FOR NO KEY UPDATE` still lets other transactions insert rows that reference the
        customer. SQLite has no row locks; its writers are serialized by `BEGIN IMMEDIATE`.
        """
        self.conn.execute(
            select(customers.c.id)
            .where(customers.c.org_id == org_id, customers.c.id == customer_id)
            .with_for_update(key_share=True)
        )
