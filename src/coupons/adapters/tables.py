"""SQLAlchemy Core tables; Alembic migrations are written against this one MetaData."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

# A coupon's series while it is AVAILABLE, else NULL (the generated `pool_series_id`).
POOL_SERIES = "CASE WHEN state = 'AVAILABLE' THEN series_id END"
COUPONS_FILLFACTOR = 85

# Normalised codes compare byte-wise on PostgreSQL as SQLite's default BINARY does.
CodeNorm = String(100).with_variant(String(100, collation="C"), "postgresql")

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so autoincrement works) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; timestamptz on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


orgs = Table(
    "orgs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

api_clients = Table(
    "api_clients",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False, index=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("secret_hash", String(255), nullable=False),
    Column("groups", String(200), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
    # When it was last disabled: its tokens issued before then never work again.
    Column("tokens_after", UtcDateTime),
)

# Keys the service generates once and keeps (e.g. the token signing key).
service_keys = Table(
    "service_keys",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(500), nullable=False),
)

# People who sign in to the console (spec §9); `email` is stored lower-cased, unique
# across orgs because a person signs in with the address alone.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False, index=True),
    # The person's own API client (never able to sign in): what records that name an API
    # client (idempotency keys, revoke jobs) name for a person.
    Column("client_id", Id, ForeignKey("api_clients.id"), nullable=False, unique=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Signed-in browsers: only the SHA-256 of the cookie value is kept, so a copy of this table
# signs nobody in.
user_sessions = Table(
    "user_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("mobile", String(40)),
    Column("mobile_norm", String(40)),
    Column("email", String(320)),
    Column("email_norm", String(320)),
    Column("external_id", String(200)),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Index("uq_customers_org_mobile", "org_id", "mobile_norm", unique=True),
    Index("uq_customers_org_email", "org_id", "email_norm", unique=True),
    Index("uq_customers_org_external_id", "org_id", "external_id", unique=True),
)

coupon_series = Table(
    "coupon_series",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False, index=True),
    Column("description", String(500), nullable=False),
    Column("client_handling_type", String(30), nullable=False),
    Column("generic_code", String(100)),
    Column("generic_code_norm", String(100)),
    Column("valid_till", UtcDateTime, nullable=False),
    Column("discount_type", String(10), nullable=False),
    Column("discount_value", Numeric(14, 4), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_coupon_series_org_generic_code", "org_id", "generic_code_norm"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("series_id", Id, ForeignKey("coupon_series.id"), nullable=False),
    Column("code", String(100), nullable=False),
    # Code point order on both stores (PostgreSQL: the "C" collation, whatever the
    # database's), so a code prefix is one range of ix_coupons_org_code (spec §7 search).
    Column("code_norm", CodeNorm, nullable=False),
    Column("pin", String(20)),
    # Generic series share one code across many coupons; the uniqueness index skips them.
    Column("is_generic", Boolean, nullable=False, default=False),
    Column("state", String(12), nullable=False),
    Column("revoked_from", String(12)),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The series while the coupon waits in its pool (AVAILABLE), else NULL: computed by the
    # database, so no write keeps it and a change between other states leaves it alone.
    # Stored on PostgreSQL; virtual on SQLite, whose ALTER TABLE cannot add a stored column.
    Column("pool_series_id", Id, Computed(POOL_SERIES, persisted=True)),
    # State changes so far (0 for a pool code never issued): bumped by every state change
    # under the row lock and copied into that change's event as `couponVersion`.
    Column("version", BigInteger, nullable=False, server_default="0"),
    Index(
        "uq_coupons_series_code",
        "series_id",
        "code_norm",
        unique=True,
        sqlite_where=text("is_generic = false"),
        postgresql_where=text("is_generic = false"),
    ),
    # Code look-ups and prefix search; `id` last so equal codes (a generic code) page in
    # id order without a sort.
    Index("ix_coupons_org_code", "org_id", "code_norm", "id"),
    # No index reads `state`, not even in a predicate, so a revoke or redeem of an issued
    # coupon changes no index entry (on PostgreSQL a heap-only update on the same page). The
    # pool that issuing draws from is indexed through `pool_series_id` instead.
    Index("ix_coupons_customer_id", "customer_id"),
    # A series' coupons page in id order on this range (spec §7).
    Index("ix_coupons_series_id_id", "series_id", "id"),
    Index(
        "ix_coupons_pool",
        "pool_series_id",
        "id",
        sqlite_where=text("pool_series_id IS NOT NULL"),
        postgresql_where=text("pool_series_id IS NOT NULL"),
    ),
    # Room on each page for a changed row's new version next to the old one.
    postgresql_with={"fillfactor": COUPONS_FILLFACTOR},
)

coupon_history = Table(
    "coupon_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    # NULL for an org-level event (a revoke job finished); every coupon change names one.
    Column("coupon_id", Id, ForeignKey("coupons.id")),
    Column("action", String(12), nullable=False),
    Column("from_state", String(12)),
    Column("to_state", String(12), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("reason", String(500)),
    # Event fields (the table is the events outbox): the coupon as it was at the change.
    Column("series_id", Id),
    Column("code", String(100)),
    Column("customer_id", Id),
    # The coupon's version after this change: 1, 2, 3, ... per coupon.
    Column("coupon_version", BigInteger, nullable=False, server_default="0"),
    Index("ix_coupon_history_coupon", "coupon_id", "id"),
    Index("ix_coupon_history_org_request", "org_id", "request_id"),
    # The per-org event log is read in id order from a cursor.
    Index("ix_coupon_history_org_id", "org_id", "id"),
)

# The audit trail (spec §7): one row per revoke call or job that revoked something, written
# in the revoke's transaction; a reinstate adds to the row of the revoke it undoes.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", String(500)),
    Column("revoked_count", Integer, nullable=False),
    Column("reinstated_count", Integer, nullable=False, default=0),
    # The revoke job whose chunks made this row (their request id is the job id too).
    Column("job_id", String(40)),
    Index("uq_revocations_org_request", "org_id", "request_id", unique=True),
    # Newest first, all or one actor's: both read backwards on these.
    Index("ix_revocations_org_at", "org_id", "at", "id"),
    Index("ix_revocations_org_actor_at", "org_id", "actor", "at", "id"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    # Comma-separated event types; empty means every type.
    Column("events", String(500), nullable=False),
    # A shared HMAC key: the worker must read it back to sign, so it cannot be hashed.
    Column("secret", String(200), nullable=False),
    # ACTIVE, DEAD (retries exhausted; retried by hand) or DELETED.
    Column("status", String(10), nullable=False),
    # The last event id delivered (or skipped as not subscribed); advances only after a 2xx.
    Column("cursor", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("failing_since", UtcDateTime),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_until", UtcDateTime),
    Column("last_error", String(500)),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_webhooks_status_next_attempt_at", "status", "next_attempt_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("webhook_id", Id, ForeignKey("webhooks.id"), nullable=False),
    Column("first_event_id", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    # DELIVERED, FAILED (will retry) or DEAD (retries exhausted).
    Column("outcome", String(10), nullable=False),
    Column("http_status", Integer),
    Column("error", String(500)),
    Column("duration_ms", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_webhook_deliveries_webhook_id", "webhook_id", "id"),
)

redemptions = Table(
    "redemptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("coupon_id", Id, ForeignKey("coupons.id"), nullable=False, index=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("transaction_number", String(200)),
    Column("bill_amount", Numeric(14, 4)),
    Column("redeemed_at", UtcDateTime, nullable=False),
    Column("reactivated_at", UtcDateTime),
    Column("request_id", String(200), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_id", Id, ForeignKey("api_clients.id"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False, index=True),
    # The first request's X-Request-Id, sent again with every replay (NULL before 0009).
    Column("request_id", String(128), nullable=True),
    PrimaryKeyConstraint("client_id", "key"),
)

# A revoke job (spec §8). Its id is also the history `request_id` of every change it makes.
revoke_jobs = Table(
    "revoke_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", Id, ForeignKey("orgs.id"), nullable=False),
    Column("kind", String(10), nullable=False),  # REVOKE or REINSTATE
    Column("source", String(10), nullable=False),  # FILE, SERIES or UNDO
    # STAGING while an upload is still being read (invisible, never run), then the states of
    # the job (domain/jobs.py).
    Column("state", String(12), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("series_id", Id, ForeignKey("coupon_series.id")),
    Column("reason", String(500)),
    Column("code_case", String(10), nullable=False),
    Column("client_id", Id, ForeignKey("api_clients.id"), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("total", Integer, nullable=False),
    # The checkpoint: lines up to `cursor` are done, written with their coupons' changes.
    Column("cursor", BigInteger, nullable=False),
    Column("processed", Integer, nullable=False),
    Column("done_count", Integer, nullable=False),
    Column("failed_count", Integer, nullable=False),
    Column("duplicate_count", Integer, nullable=False),
    Column("failed_by_code", String(500), nullable=False),  # JSON object, error code -> n
    # The same lines by the report's outcome (682 is both already_revoked and not_found).
    Column("failed_by_outcome", String(500), nullable=False, server_default="{}"),
    Column("undo_of_job_id", String(40)),
    Column("undone_by_job_id", String(40)),
    # A preview's real job, once started: set once, under the preview's row lock.
    Column("started_job_id", String(40)),
    Column("error", String(500)),
    Column("claimed_by", String(100)),
    Column("lease_until", UtcDateTime),
    Index("ix_revoke_jobs_org_created", "org_id", "created_at"),
    Index("ix_revoke_jobs_state_created", "state", "created_at"),
)

# One row per input line of a job, in input order; `outcome` NULL until its chunk commits.
revoke_job_lines = Table(
    "revoke_job_lines",
    metadata,
    Column("job_id", String(40), ForeignKey("revoke_jobs.id"), nullable=False),
    Column("line_no", BigInteger, nullable=False),
    Column("code", String(100), nullable=False),
    Column("norm", String(100), nullable=False),
    # Given for SERIES and UNDO lines; for FILE lines, the coupon the code was found as.
    Column("coupon_id", Id),
    Column("outcome", String(20)),
    Column("error_code", Integer),
    Column("issued_to", Id),
    # The code's further coupons as JSON `[[id, holder], ...]` (`LineResult.more`); NULL for
    # the usual one coupon.
    Column("more_coupons", Text),
    PrimaryKeyConstraint("job_id", "line_no"),
    # Finds an earlier line of the same code: the later one is a duplicate in the file.
    Index("ix_revoke_job_lines_norm", "job_id", "norm", "line_no"),
)

__all__ = [
    "api_clients",
    "coupon_history",
    "coupon_series",
    "coupons",
    "customers",
    "idempotency_keys",
    "metadata",
    "orgs",
    "redemptions",
    "revocations",
    "revoke_job_lines",
    "revoke_jobs",
    "service_keys",
    "user_sessions",
    "users",
    "webhook_deliveries",
    "webhooks",
]
