"""People who sign in to the console, and their sessions: the SQL behind `uow.users`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from coupons.adapters.tables import user_sessions, users
from coupons.domain.people import ConsoleSession, Person, Role


def _person(row: Row[Any]) -> Person:
    return Person(
        id=int(row.id),
        org_id=int(row.org_id),
        client_id=int(row.client_id),
        email=row.email,
        role=Role(row.role),
        password_hash=row.password_hash,
        is_active=bool(row.is_active),
    )


class SqlUsersRepository:
    """Queries over one open connection inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(
        self,
        org_id: int,
        client_id: int,
        email: str,
        password_hash: str,
        role: Role,
        now: datetime,
    ) -> int:
        result = self.conn.execute(
            insert(users).values(
                org_id=org_id,
                client_id=client_id,
                email=email,
                password_hash=password_hash,
                role=role.value,
                is_active=True,
                created_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def by_email(self, email: str) -> Person | None:
        row = self.conn.execute(select(users).where(users.c.email == email)).first()
        return None if row is None else _person(row)

    def update(
        self,
        email: str,
        *,
        is_active: bool | None = None,
        password_hash: str | None = None,
        role: Role | None = None,
    ) -> bool:
        values: dict[str, Any] = {}
        if is_active is not None:
            values["is_active"] = is_active
        if password_hash is not None:
            values["password_hash"] = password_hash
        if role is not None:
            values["role"] = role.value
        result = self.conn.execute(update(users).where(users.c.email == email).values(**values))
        return result.rowcount == 1

    def add_session(self, session: ConsoleSession) -> None:
        self.conn.execute(
            insert(user_sessions).values(
                token_hash=session.token_hash,
                user_id=session.user_id,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )

    def session(self, token_hash: str, now: datetime) -> tuple[ConsoleSession, Person] | None:
        """The unexpired session with this hash and its person (active or not)."""
        row = self.conn.execute(
            select(user_sessions, users)
            .join(users, users.c.id == user_sessions.c.user_id)
            .where(user_sessions.c.token_hash == token_hash, user_sessions.c.expires_at > now)
        ).first()
        if row is None:
            return None
        session = ConsoleSession(
            token_hash=row.token_hash,
            user_id=int(row.user_id),
            created_at=row.created_at,
            expires_at=row.expires_at,
        )
        return session, _person(row)

    def delete_session(self, token_hash: str) -> None:
        self.conn.execute(delete(user_sessions).where(user_sessions.c.token_hash == token_hash))

    def delete_sessions_of(self, user_id: int) -> None:
        self.conn.execute(delete(user_sessions).where(user_sessions.c.user_id == user_id))

    def delete_expired_sessions(self, now: datetime) -> None:
        self.conn.execute(delete(user_sessions).where(user_sessions.c.expires_at <= now))
