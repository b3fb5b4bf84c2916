"""Redeem (all or nothing) and reactivate."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.model import Action, Coupon, CouponState, Series, SeriesType
from coupons.domain.records import NewCoupon, NewRedemption
from coupons.services.common import Context, CustomerRef, find_customer, record_history
from coupons.services.ports import UnitOfWork

MAX_REDEEM_LINES = 50


@dataclass(frozen=True, slots=True)
class RedeemLine:
    code: str
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class Redemption:
    redemption_id: int
    coupon_id: int
    code: str


@dataclass(frozen=True, slots=True)
class Reactivation:
    redemption_id: int
    coupon_id: int
    code: str


def redeem(
    uow: UnitOfWork,
    ctx: Context,
    customer: CustomerRef,
    lines: list[RedeemLine],
    transaction_number: str | None,
    bill_amount: Decimal | None,
) -> list[Redemption]:
    """Redeem every line for the customer, or none: the first line that cannot be redeemed
    fails the whole request (702, 703, 711, 682, 712, 9019)."""
    if not lines:
        raise errors.InvalidField("redemptionRequestList", "give at least one code")
    if len(lines) > MAX_REDEEM_LINES:
        raise errors.InvalidField("redemptionRequestList", f"at most {MAX_REDEEM_LINES} codes")
    seen: set[str] = set()
    for line in lines:
        key = code_rules.normalize(line.code)
        if not key:
            raise errors.InvalidField("redemptionRequestList.code", "must not be blank")
        if key in seen:
            raise errors.InvalidField("redemptionRequestList", f"code {line.code!r} given twice")
        seen.add(key)
    person = find_customer(uow, ctx.org_id, customer)
    norms = [code_rules.normalize(line.code) for line in lines]
    generic_series = uow.series.generic_series_by_codes(ctx.org_id, norms)
    if any(s.type is SeriesType.GENERIC_REDEEMABLE for s in generic_series):
        # "Has this customer redeemed the open code yet?" asks about a row that may not exist,
        # which no coupon lock covers: lock the customer first, so two such redeems take turns.
        # Lock order stays customer, then coupons in id order (revoke takes no customer lock).
        uow.customers.lock_customer(ctx.org_id, person.id)
    # Only the customer's own copies of the codes decide and change: locking every copy of an
    # open code (one per customer who ever redeemed it) made each redeem read, and wait for,
    # all of them (1.35 s at 200,000 redemptions, queued one after another).
    matches = uow.coupons.held_by_codes(ctx.org_id, person.id, norms)
    series = uow.series.series_many(ctx.org_id, {c.series_id for c in matches})
    open_series: dict[str, Series] = {}
    for found_series in sorted(generic_series, key=lambda s: s.id):
        series[found_series.id] = found_series
        if found_series.type is SeriesType.GENERIC_REDEEMABLE:
            assert found_series.generic_code is not None
            # Of several open series with one code, a live one (the oldest) answers for it.
            key = code_rules.normalize(found_series.generic_code)
            known = open_series.get(key)
            if known is None or (
                known.is_expired(ctx.now) and not found_series.is_expired(ctx.now)
            ):
                open_series[key] = found_series
    by_code: dict[str, list[Coupon]] = {}
    for coupon in matches:
        by_code.setdefault(code_rules.normalize(coupon.code), []).append(coupon)

    chosen: list[Coupon] = []
    open_generic: list[tuple[int, str]] = []  # (series id, code) redeemable without issue
    for line, key in zip(lines, norms, strict=True):
        found = by_code.get(key, [])  # her own copies of the code
        generic = open_series.get(key)
        if generic is not None and _holds_live_issued(found, series, person.id, ctx):
            generic = None  # her own issued coupon of the code comes first
        if generic is not None and generic.is_expired(ctx.now):
            # The open code was everyone's: unless she holds a copy of her own, its expiry
            # is the answer.
            if not found:
                raise errors.SeriesExpired()
        elif generic is not None:
            # Anyone may redeem a GENERIC_REDEEMABLE code without issue, once per customer.
            held = [c for c in found if c.series_id == generic.id]
            if not held:
                assert generic.generic_code is not None
                open_generic.append((generic.id, generic.generic_code))
                continue
            found = held
        if not found:
            raise _not_hers(uow, ctx, line, key)
        chosen.append(_redeemable(found, series, person.id, line, ctx))

    if chosen:
        changed = uow.coupons.set_state(
            [c.id for c in chosen],
            from_state=CouponState.ISSUED,
            to_state=CouponState.REDEEMED,
            now=ctx.now,
        )
        if changed != len(chosen):
            raise RuntimeError("coupons changed under lock during redeem")
    if open_generic:
        # A GENERIC_REDEEMABLE code needs no issue: each redemption creates its own coupon.
        new_ids = uow.coupons.add_coupons(
            [
                NewCoupon(
                    org_id=ctx.org_id,
                    series_id=series_id,
                    code=code,
                    state=CouponState.REDEEMED,
                    is_generic=True,
                    at=ctx.now,
                    customer_id=person.id,
                )
                for series_id, code in open_generic
            ]
        )
        chosen.extend(
            Coupon(id=i, series_id=s, code=c, state=CouponState.ISSUED, customer_id=person.id)
            for i, (s, c) in zip(new_ids, open_generic, strict=True)
        )
    redemption_ids = uow.coupons.add_redemptions(
        [
            NewRedemption(
                org_id=ctx.org_id,
                coupon_id=c.id,
                customer_id=person.id,
                transaction_number=transaction_number,
                bill_amount=bill_amount,
                redeemed_at=ctx.now,
                request_id=ctx.request_id,
            )
            for c in chosen
        ]
    )
    # A coupon an open code's redemption made had no state before it: its history starts
    # at REDEEMED, from nothing, not from an ISSUED it never was.
    made = len(chosen) - len(open_generic)
    record_history(
        uow,
        ctx,
        Action.REDEEM,
        [
            (c.id, CouponState.ISSUED if i < made else None, CouponState.REDEEMED)
            for i, c in enumerate(chosen)
        ],
    )
    return [
        Redemption(redemption_id=r, coupon_id=c.id, code=c.code)
        for r, c in zip(redemption_ids, chosen, strict=True)
    ]


def _live_copies(
    found: list[Coupon], series: dict[int, Series], customer_id: int, ctx: Context
) -> list[Coupon]:
    """The customer's coupons of a code in series still running."""
    return [
        c
        for c in found
        if c.customer_id == customer_id and not series[c.series_id].is_expired(ctx.now)
    ]


def _holds_live_issued(
    found: list[Coupon], series: dict[int, Series], customer_id: int, ctx: Context
) -> bool:
    """Whether the customer holds an ISSUED coupon of the code in a series still running."""
    live = _live_copies(found, series, customer_id, ctx)
    return any(c.state is CouponState.ISSUED for c in live)


def _not_hers(uow: UnitOfWork, ctx: Context, line: RedeemLine, key: str) -> errors.CouponError:
    """Why a code the customer holds no copy of cannot be redeemed: 702 when no coupon of the
    org carries it, 712 when every series carrying it has expired, 703 otherwise (naming the
    code as its first coupon spells it). Read without locks: nothing of it will change."""
    firsts = uow.coupons.first_carriers(ctx.org_id, [key]).get(key)
    if not firsts:
        return errors.CouponCodeInvalid(f"coupon code {line.code.strip()!r} is invalid")
    carrying = uow.series.series_many(ctx.org_id, set(firsts))
    if all(s.is_expired(ctx.now) for s in carrying.values()):
        return errors.SeriesExpired()
    first = uow.coupons.coupon(ctx.org_id, min(firsts.values()))
    spelled = first.code if first is not None else line.code.strip()
    return errors.CouponNotIssuedToCustomer(f"coupon {spelled!r} is not issued to this customer")


def _redeemable(
    found: list[Coupon], series: dict[int, Series], customer_id: int, line: RedeemLine, ctx: Context
) -> Coupon:
    """The customer's coupon a line redeems (of `found`, her own copies of its code), or the
    error that says why there is none.

    A code is unique only in its series, so other series may hold it too, for other customers
    or expired: only this customer's copies decide, the live ones first."""
    live = _live_copies(found, series, customer_id, ctx)
    if not live:
        raise errors.SeriesExpired()
    issued = [c for c in live if c.state is CouponState.ISSUED]
    if not issued:
        if any(c.state is CouponState.REVOKED for c in live):
            raise errors.CouponRevoked(f"coupon {live[0].code!r} is revoked")
        raise errors.CouponAlreadyRedeemed(f"coupon {live[0].code!r} is already redeemed")
    for coupon in issued:
        if series[coupon.series_id].type is not SeriesType.DISC_CODE_PIN or (
            line.pin is not None and line.pin.strip() == (coupon.pin or "")
        ):
            return coupon
    raise errors.InvalidPin()


def reactivate(uow: UnitOfWork, ctx: Context, redemption_ids: list[int]) -> list[Reactivation]:
    """Undo redemptions: REDEEMED -> ISSUED. All or nothing."""
    ids = sorted(set(redemption_ids))
    if not ids:
        raise errors.InvalidField("redemptionIds", "give at least one redemption id")
    if len(ids) > MAX_REDEEM_LINES:
        raise errors.InvalidField("redemptionIds", f"at most {MAX_REDEEM_LINES} ids")
    found = uow.coupons.redemptions_by_ids(ctx.org_id, ids, lock=True)
    missing = sorted(set(ids) - {r.id for r in found})
    if missing:
        raise errors.RedemptionNotFound(f"redemption {missing[0]} not found")
    coupons = {
        c.id: c
        for c in uow.coupons.coupons_by_ids(ctx.org_id, [r.coupon_id for r in found], lock=True)
    }
    for red in found:
        coupon = coupons[red.coupon_id]
        if red.reactivated or coupon.state is not CouponState.REDEEMED:
            raise errors.RedemptionNotFound(
                f"redemption {red.id} is no longer active (coupon is {coupon.state.value})"
            )
    changed = uow.coupons.set_state(
        [r.coupon_id for r in found],
        from_state=CouponState.REDEEMED,
        to_state=CouponState.ISSUED,
        now=ctx.now,
    )
    if changed != len(found) or uow.coupons.mark_reactivated(ids, ctx.now) != len(found):
        raise RuntimeError("redemptions changed under lock during reactivate")
    record_history(
        uow,
        ctx,
        Action.REACTIVATE,
        [(r.coupon_id, CouponState.REDEEMED, CouponState.ISSUED) for r in found],
    )
    return [Reactivation(r.id, r.coupon_id, coupons[r.coupon_id].code) for r in found]
