"""Givens for service tests: an org's series, customers and coupons in a fake store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from coupons.domain.model import Coupon, CouponState, Customer, DiscountType, Series, SeriesType
from coupons.domain.records import CustomerDetails, NewCoupon
from coupons.services.common import Actor, Context
from tests.unit.fakes import FakeUnitOfWork, Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORG, OTHER_ORG = 1001, 1002


class World:
    """Writes givens straight through the fake repositories and commits them."""

    def __init__(self) -> None:
        self.store = Store()
        self._setup = FakeUnitOfWork(self.store)

    def ctx(self, request_id: str = "req-1", org_id: int = ORG) -> Context:
        actor = Actor(org_id=org_id, client_id=7, username="acme-ops", groups=frozenset())
        return Context(actor=actor, request_id=request_id, now=NOW)

    def uow(self) -> FakeUnitOfWork:
        """A fresh transaction over what has been given so far."""
        return FakeUnitOfWork(self.store)

    def series(
        self,
        type: SeriesType = SeriesType.DISC_CODE,
        *,
        generic_code: str | None = None,
        expired: bool = False,
        org_id: int = ORG,
    ) -> Series:
        made = self._setup.series.add_series(
            org_id=org_id,
            description=f"series {len(self.store.series) + 1}",
            type=type,
            generic_code=generic_code,
            valid_till=NOW + timedelta(days=-1 if expired else 30),
            discount_type=DiscountType.ABS,
            discount_value=Decimal(5),
            now=NOW - timedelta(days=60),
        )
        self._setup.commit()
        return made

    def customer(
        self, mobile: str | None = None, email: str | None = None, org_id: int = ORG
    ) -> Customer:
        details = CustomerDetails(mobile, email, None, None, None)
        customer_id = self._setup.customers.add_customer(org_id, details, NOW)
        self._setup.commit()
        return self.store.customers[customer_id]

    def coupons(
        self,
        series: Series,
        *codes: str,
        state: CouponState = CouponState.ISSUED,
        to: Customer | None = None,
        pin: str | None = None,
    ) -> list[Coupon]:
        new = [
            NewCoupon(
                org_id=series.org_id,
                series_id=series.id,
                code=code,
                state=state,
                is_generic=series.type.is_generic,
                at=NOW,
                customer_id=to.id if to else None,
                pin=pin,
            )
            for code in codes
        ]
        ids = self._setup.coupons.add_coupons(new)
        self._setup.commit()
        return [self.coupon(i) for i in ids]

    def coupon(self, coupon_id: int) -> Coupon:
        """The coupon as stored now."""
        return self.store.coupons[coupon_id].coupon

    def states(self, coupons: list[Coupon]) -> list[CouponState]:
        return [self.coupon(c.id).state for c in coupons]
