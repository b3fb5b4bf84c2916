"""Customers: each identifier unique within the org, compared the way people write them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coupons.domain import errors
from coupons.domain.model import Coupon, CouponState, Customer, normalize_email, normalize_mobile
from coupons.domain.records import CustomerDetails
from coupons.services.common import Context, CustomerRef, find_customer
from coupons.services.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class NewCustomer:
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None


STATUS_FILTERS: dict[str, tuple[CouponState, ...]] = {
    "ACTIVE": (CouponState.ISSUED,),
    "REDEEMED": (CouponState.REDEEMED,),
    "REVOKED": (CouponState.REVOKED,),
    "ALL": (CouponState.ISSUED, CouponState.REDEEMED, CouponState.REVOKED),
}


def create_customer(uow: UnitOfWork, ctx: Context, new: NewCustomer) -> Customer:
    """Add a customer; 9016 when an identifier already belongs to another customer."""
    # Blank text is no identifier: stored, "" would be one customer's, and taken for others.
    mobile = (new.mobile or "").strip() or None
    email = (new.email or "").strip() or None
    external_id = (new.external_id or "").strip() or None
    if not (mobile or email or external_id):
        raise errors.InvalidField("customer", "give at least one of mobile, email, externalId")
    mobile_norm = normalize_mobile(mobile) if mobile else None
    if mobile is not None and not (5 <= len(mobile_norm or "") <= 20):
        raise errors.InvalidField("mobile", "must contain 5 to 20 digits")
    email_norm = normalize_email(email) if email else None
    if email is not None and ("@" not in email or email.startswith("@") or email.endswith("@")):
        raise errors.InvalidField("email", "not an email address")
    taken = uow.customers.find_customers(
        ctx.org_id, mobile_norm=mobile_norm, email_norm=email_norm, external_id=external_id
    )
    if taken:
        _, matched = taken[0]
        raise errors.CustomerIdentifierTaken(sorted(matched)[0])
    customer_id = uow.customers.add_customer(
        ctx.org_id,
        CustomerDetails(
            mobile=mobile,
            email=email,
            external_id=external_id,
            first_name=new.first_name,
            last_name=new.last_name,
        ),
        ctx.now,
    )
    return Customer(
        id=customer_id,
        org_id=ctx.org_id,
        mobile=mobile,
        email=email,
        external_id=external_id,
        first_name=new.first_name,
        last_name=new.last_name,
    )


def lookup_customer(uow: UnitOfWork, ctx: Context, ref: CustomerRef) -> Customer:
    """The customer named by the identifiers (HTTP 404 when none)."""
    try:
        return find_customer(uow, ctx.org_id, ref)
    except errors.CustomerNotFound as error:
        raise errors.CustomerLookupNotFound(error.message) from None


def customer_coupons(uow: UnitOfWork, ctx: Context, customer_id: int, status: str) -> list[Coupon]:
    """A customer's coupons filtered by status; another org's customer is not found."""
    states = STATUS_FILTERS.get(status.upper())
    if states is None:
        raise errors.InvalidField("status", "use ACTIVE, REDEEMED, REVOKED or ALL")
    if not uow.customers.find_customers(ctx.org_id, id=customer_id):
        raise errors.CustomerLookupNotFound()
    return uow.coupons.coupons_of_customer(
        ctx.org_id, customer_id, states=states, unexpired_at=active_at(status, ctx)
    )


def active_at(status: str, ctx: Context) -> datetime | None:
    """ACTIVE means redeemable: issued, in a series that has not expired (a campaign ended
    early, `PATCH validTill`, takes its coupons out at once). Other filters are states only."""
    return ctx.now if status.upper() == "ACTIVE" else None
