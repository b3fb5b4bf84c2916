"""Demo data for `coupons serve --demo`: made once, then only read, with stable credentials.

The first run creates an org `demo`, an API client `demo` (default + coupon_admin), a pool
series with known codes, a GENERIC series, three customers with mobile, email and externalId,
and a few issued coupons: everything the README's examples use. Later runs add nothing and
print the same credentials: the client's secret is derived (HMAC) from the database's own
token-signing key, so it survives restarts without being stored anywhere in plain text. It is
a demo convenience: whoever can read that key can sign tokens anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from coupons.domain import errors
from coupons.domain.model import CouponState, DiscountType, Series, SeriesType, normalize_mobile
from coupons.services import customers, issue, series
from coupons.services.admin import create_client
from coupons.services.auth import SIGNING_KEY_NAME, hash_secret, verify_secret
from coupons.services.common import Actor, Context, CustomerRef, utcnow
from coupons.services.people import DEMO_EMAIL
from coupons.services.ports import UnitOfWork

DEMO_ORG = "demo"
DEMO_USER = "demo"
DEMO_GROUPS = ("default", "coupon_admin")
WELCOME = "Welcome 10% off"
SUMMER = "Summer sale, 20 off"
GENERIC_CODE = "SALE20"
# Pool codes in the order they are issued: the oldest AVAILABLE code goes first.
ISSUED_CODES = {
    "ada": ("WELCOME-A1", "WELCOME-A2", "WELCOME-A3"),
    "grace": ("WELCOME-G1", "WELCOME-G2"),
    "linus": ("WELCOME-L1",),
}
# Left in the pool (AVAILABLE): the README revokes the first three (a vendor-style example).
POOL_CODES = ("3138309782", "3636820421", "3842093412", *(f"WELCOME-{n:02d}" for n in range(1, 12)))
CUSTOMERS = {
    "ada": ("+1 555 0100", "ada@example.com", "CRM-0001", "Ada"),
    "grace": ("+1 122 356 9865", "grace@example.com", "000003873472", "Grace"),
    "linus": ("+1 555 0102", "linus@example.com", "CRM-0003", "Linus"),
}
# Who also holds the generic series' code (one coupon each).
GENERIC_HOLDERS = ("grace", "linus")


@dataclass(frozen=True, slots=True)
class DemoData:
    """What `serve --demo` prints: credentials and one coupon a ready curl line can revoke."""

    username: str
    secret: str
    series_id: int | None  # the welcome series, if the demo org still has one
    issued_code: str | None  # an ISSUED coupon of the demo customer, if one is left
    customer_mobile: str
    created: bool  # False: the data existed already and nothing was added


def seed(uow: UnitOfWork) -> DemoData:
    """Create the demo data on the first run; on later runs only read it."""
    secret = demo_secret(uow)
    org_id = uow.clients.org_id_by_name(DEMO_ORG)
    created = org_id is None
    if org_id is None:
        org_id = uow.clients.add_org(DEMO_ORG, utcnow())
    client = uow.clients.client_by_username(DEMO_USER)
    if client is not None and client.org_id != org_id:
        # Reset to the printed secret, another org's client would sign in with credentials
        # anyone can read in this command's output.
        raise DemoTaken(f"the API client {DEMO_USER!r}")
    person = uow.users.by_email(DEMO_EMAIL)
    if person is not None and person.org_id != org_id:
        # Checked here too, before anything is made: the demo person is ensured after this
        # transaction, which would otherwise leave the demo data behind its refusal.
        raise DemoTaken(f"the person {DEMO_EMAIL!r}")
    if client is None:
        create_client(
            uow, org=DEMO_ORG, username=DEMO_USER, password=secret, groups=list(DEMO_GROUPS)
        )
        client = uow.clients.client_by_username(DEMO_USER)
    elif not client.is_active or not verify_secret(client.secret_hash, secret):
        # Reset or disabled since: make the printed credentials work again.
        uow.clients.update_client(DEMO_USER, secret_hash=hash_secret(secret), is_active=True)
    assert client is not None
    ctx = Context(
        actor=Actor(org_id, client.id, DEMO_USER, client.groups),
        request_id="demo-seed",
        now=utcnow(),
    )
    welcome = _create(uow, ctx) if created else _welcome(uow, org_id)
    held = []
    if welcome is not None:
        # Looked for, not assumed: the data is the org's to change after the first run.
        ada = uow.customers.find_customers(
            org_id, id=None, mobile_norm=normalize_mobile(CUSTOMERS["ada"][0]), email_norm=None,
            external_id=None,
        )  # fmt: skip
        if ada:
            held = uow.coupons.coupons_of_customer(
                org_id, ada[0][0].id, states=(CouponState.ISSUED,), series_id=welcome.id
            )
    uow.commit()
    return DemoData(
        username=DEMO_USER,
        secret=secret,
        series_id=welcome.id if welcome is not None else None,
        issued_code=held[0].code if held else None,
        customer_mobile=CUSTOMERS["ada"][0],
        created=created,
    )


class DemoTaken(errors.CouponError):
    """A name the demo would use belongs to another org: taking it over would hand that org's
    access to whoever reads the printed credentials."""

    code, http_status = 9016, 409

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} belongs to another org than {DEMO_ORG!r}: --demo would take it over and "
            "print its credentials; serve this database without --demo, or use another one"
        )


def _welcome(uow: UnitOfWork, org_id: int) -> Series | None:
    """The welcome series of an earlier run: by its name, or, renamed since, the demo org's
    oldest pool series."""
    found = uow.series.series_by_description(org_id, WELCOME)
    if found is not None:
        return found
    pools = [
        s for s in uow.series.series_page(org_id, before_id=None, limit=1000) if s.type.has_pool
    ]
    return min(pools, key=lambda s: s.id) if pools else None


def demo_secret(uow: UnitOfWork) -> str:
    """The demo client's secret: the same for as long as the database keeps its signing key."""
    key = uow.clients.service_key(SIGNING_KEY_NAME)
    if key is None:
        key = secrets.token_urlsafe(48)
        uow.clients.add_service_key(SIGNING_KEY_NAME, key)
    digest = hmac.new(key.encode(), b"coupons demo client secret", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def _create(uow: UnitOfWork, ctx: Context) -> Series:
    """The series, customers and issued coupons, on the first run only."""
    welcome = series.create_series(
        uow,
        ctx,
        series.NewSeries(
            description=WELCOME,
            type=SeriesType.DISC_CODE,
            generic_code=None,
            valid_till=ctx.now + timedelta(days=365),
            discount_type=DiscountType.PERC,
            discount_value=Decimal(10),
        ),
    )
    pool = [code for codes in ISSUED_CODES.values() for code in codes] + list(POOL_CODES)
    series.add_codes(uow, ctx, welcome.id, series.CodeUpload(codes=[(c, None) for c in pool]))
    summer = series.create_series(
        uow,
        ctx,
        series.NewSeries(
            description=SUMMER,
            type=SeriesType.GENERIC,
            generic_code=GENERIC_CODE,
            valid_till=ctx.now + timedelta(days=90),
            discount_type=DiscountType.ABS,
            discount_value=Decimal(20),
        ),
    )
    for name, (mobile, email, external_id, first) in CUSTOMERS.items():
        customers.create_customer(
            uow,
            ctx,
            customers.NewCustomer(
                mobile=mobile, email=email, external_id=external_id, first_name=first
            ),
        )
        ref = CustomerRef(mobile=mobile)
        issue.issue(uow, ctx, welcome.id, ref, len(ISSUED_CODES[name]))
        if name in GENERIC_HOLDERS:
            issue.issue(uow, ctx, summer.id, ref, 1)
    return welcome
