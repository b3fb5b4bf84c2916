"""Orgs, API clients and service-wide keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    func,
    insert,
    select,
    update,
)

from coupons.adapters.repos.rows import (
    new_id,
)
from coupons.adapters.tables import (
    api_clients,
    orgs,
    service_keys,
)
from coupons.domain.records import (
    ClientRecord,
    ClientSummary,
    OrgSummary,
)


class SqlClientRepository:
    """Orgs, clients and keys over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_org(self, name: str, now: datetime) -> int:
        result = self.conn.execute(insert(orgs).values(name=name, created_at=now))
        return new_id(result)

    def org_id_by_name(self, name: str) -> int | None:
        value = self.conn.scalar(select(orgs.c.id).where(orgs.c.name == name))
        return None if value is None else int(value)

    def add_client(
        self, org_id: int, username: str, secret_hash: str, groups: Iterable[str], now: datetime
    ) -> int:
        result = self.conn.execute(
            insert(api_clients).values(
                org_id=org_id,
                username=username,
                secret_hash=secret_hash,
                groups=",".join(sorted(groups)),
                is_active=True,
                created_at=now,
            )
        )
        return new_id(result)

    def _client(self, row: Row[Any] | None) -> ClientRecord | None:
        if row is None:
            return None
        return ClientRecord(
            id=row.id,
            org_id=row.org_id,
            username=row.username,
            secret_hash=row.secret_hash,
            groups=frozenset(g for g in row.groups.split(",") if g),
            is_active=bool(row.is_active),
            tokens_after=row.tokens_after,
        )

    def client_by_username(self, username: str) -> ClientRecord | None:
        row = self.conn.execute(
            select(api_clients).where(api_clients.c.username == username)
        ).first()
        return self._client(row)

    def client_by_id(self, client_id: int) -> ClientRecord | None:
        row = self.conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
        return self._client(row)

    def update_client(
        self,
        username: str,
        *,
        is_active: bool | None = None,
        secret_hash: str | None = None,
        groups: Iterable[str] | None = None,
        tokens_after: datetime | None = None,
    ) -> bool:
        values: dict[str, Any] = {}
        if is_active is not None:
            values["is_active"] = is_active
        if tokens_after is not None:
            values["tokens_after"] = tokens_after
        if secret_hash is not None:
            values["secret_hash"] = secret_hash
        if groups is not None:
            values["groups"] = ",".join(sorted(groups))
        result = self.conn.execute(
            update(api_clients).where(api_clients.c.username == username).values(**values)
        )
        return result.rowcount == 1

    def orgs(self, *, hidden_prefix: str) -> list[OrgSummary]:
        clients = (
            select(api_clients.c.org_id, func.count().label("n"))
            .where(_not_hidden(hidden_prefix))
            .group_by(api_clients.c.org_id)
            .subquery()
        )
        rows = self.conn.execute(
            select(orgs.c.id, orgs.c.name, func.coalesce(clients.c.n, 0))
            .outerjoin(clients, clients.c.org_id == orgs.c.id)
            .order_by(orgs.c.id)
        )
        return [OrgSummary(int(i), name, int(n)) for i, name, n in rows]

    def clients(self, *, hidden_prefix: str) -> list[ClientSummary]:
        rows = self.conn.execute(
            select(
                api_clients.c.username,
                orgs.c.name,
                api_clients.c.groups,
                api_clients.c.is_active,
            )
            .join(orgs, orgs.c.id == api_clients.c.org_id)
            .where(_not_hidden(hidden_prefix))
            .order_by(orgs.c.name, api_clients.c.username)
        )
        return [
            ClientSummary(username, org, frozenset(g for g in groups.split(",") if g), bool(on))
            for username, org, groups, on in rows
        ]

    def service_key(self, name: str) -> str | None:
        return self.conn.scalar(select(service_keys.c.value).where(service_keys.c.name == name))

    def add_service_key(self, name: str, value: str) -> None:
        self.conn.execute(insert(service_keys).values(name=name, value=value))


def _not_hidden(prefix: str) -> ColumnElement[bool]:
    """Clients whose name does not start with `prefix` (compared as text, not a pattern)."""
    return func.substr(api_clients.c.username, 1, len(prefix)) != prefix
