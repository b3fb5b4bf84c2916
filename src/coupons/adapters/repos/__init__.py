"""Every query of the project, one module per aggregate; each class implements its port in
`services/ports.py` over one open connection, inside the caller's transaction."""

from coupons.adapters.repos.clients import SqlClientRepository
from coupons.adapters.repos.coupons import SqlCouponRepository
from coupons.adapters.repos.customers import SqlCustomerRepository
from coupons.adapters.repos.history import PENDING_CHANGES, SqlHistoryRepository
from coupons.adapters.repos.idempotency import SqlIdempotencyRepository
from coupons.adapters.repos.jobs import SqlJobRepository
from coupons.adapters.repos.revocations import SqlRevocationRepository
from coupons.adapters.repos.series import SqlSeriesRepository
from coupons.adapters.repos.users import SqlUsersRepository
from coupons.adapters.repos.webhooks import SqlWebhookRepository

__all__ = [
    "PENDING_CHANGES",
    "SqlClientRepository",
    "SqlCouponRepository",
    "SqlCustomerRepository",
    "SqlHistoryRepository",
    "SqlIdempotencyRepository",
    "SqlJobRepository",
    "SqlRevocationRepository",
    "SqlSeriesRepository",
    "SqlUsersRepository",
    "SqlWebhookRepository",
]
