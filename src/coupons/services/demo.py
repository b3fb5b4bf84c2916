"""Demo data for `coupons serve --demo`: an org, a client, series, customers, coupons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from coupons.domain.model import CouponState, DiscountType, SeriesType
from coupons.services import customers, issue, series
from coupons.services.admin import create_client
from coupons.services.auth import hash_secret, new_secret
from coupons.services.common import Actor, Context, CustomerRef, utcnow
from coupons.services.ports import UnitOfWork

DEMO_ORG = "demo"
DEMO_USER = "demo"


@dataclass(frozen=True, slots=True)
class DemoData:
    username: str
    secret: str
    series_id: int
    issued_code: str
    customer_mobile: str


def seed(uow: UnitOfWork) -> DemoData:
    """Create the demo data once; on later runs reuse it and give the client a new secret."""
    org_id = uow.clients.org_id_by_name(DEMO_ORG)
    if org_id is None:
        org_id = uow.clients.add_org(DEMO_ORG, utcnow())
    client = uow.clients.client_by_username(DEMO_USER)
    secret = new_secret()
    if client is None:
        create_client(
            uow,
            org=DEMO_ORG,
            username=DEMO_USER,
            password=secret,
            groups=["default", "coupon_admin"],
        )
        client = uow.clients.client_by_username(DEMO_USER)
    else:
        uow.clients.update_client(DEMO_USER, secret_hash=hash_secret(secret), is_active=True)
    assert client is not None
    ctx = Context(
        actor=Actor(org_id, client.id, DEMO_USER, client.groups),
        request_id="demo-seed",
        now=utcnow(),
    )
    welcome = uow.series.series_by_description(org_id, "Welcome 10% off")
    if welcome is None:
        welcome = series.create_series(
            uow,
            ctx,
            series.NewSeries(
                description="Welcome 10% off",
                type=SeriesType.DISC_CODE,
                generic_code=None,
                valid_till=ctx.now + timedelta(days=365),
                discount_type=DiscountType.PERC,
                discount_value=Decimal(10),
            ),
        )
        series.add_codes(uow, ctx, welcome.id, series.CodeUpload(generate=20))
        series.create_series(
            uow,
            ctx,
            series.NewSeries(
                description="Summer sale, 20 off",
                type=SeriesType.GENERIC,
                generic_code="SALE20",
                valid_till=ctx.now + timedelta(days=90),
                discount_type=DiscountType.ABS,
                discount_value=Decimal(20),
            ),
        )
        for mobile, email, first in (
            ("+1 555 0100", "ada@example.com", "Ada"),
            ("+1 555 0101", "grace@example.com", "Grace"),
            ("+1 555 0102", "linus@example.com", "Linus"),
        ):
            customers.create_customer(
                uow, ctx, customers.NewCustomer(mobile=mobile, email=email, first_name=first)
            )
    mobile = "15550100"
    ref = CustomerRef(mobile=mobile)
    held = uow.coupons.coupons_of_customer(
        org_id,
        customers.lookup_customer(uow, ctx, ref).id,
        states=(CouponState.ISSUED,),
        series_id=welcome.id,
    )
    if len(held) < 3:
        issue.issue(uow, ctx, welcome.id, ref, 3 - len(held))
        held = uow.coupons.coupons_of_customer(
            org_id,
            customers.lookup_customer(uow, ctx, ref).id,
            states=(CouponState.ISSUED,),
            series_id=welcome.id,
        )
    uow.commit()
    return DemoData(
        username=DEMO_USER,
        secret=secret,
        series_id=welcome.id,
        issued_code=held[0].code,
        customer_mobile=mobile,
    )
