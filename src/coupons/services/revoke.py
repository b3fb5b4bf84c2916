"""Revoke and reinstate (spec §5): whole-request checks, then per-code outcomes, atomically.

Statements per request are constant, whatever the number of codes: look up the series and
customer, lock the coupons in scope in id order (`SELECT ... FOR UPDATE`; SQLite holds the
database write lock from `BEGIN IMMEDIATE` instead), one guarded `UPDATE`, one batched history
insert. The lock-then-decide order is what makes a concurrent redeem and revoke end in exactly
one state: whichever transaction locks the row second sees the first one's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.jobs import JOB_ID_PREFIX
from coupons.domain.model import (
    Action,
    Coupon,
    CouponState,
    Customer,
    Series,
    SeriesType,
    target_state,
)
from coupons.domain.records import RevokeBatch
from coupons.domain.revoke import FailureReason, Outcome, decide, decide_each
from coupons.services.common import (
    Context,
    CustomerRef,
    find_customer,
    record_history,
    series_for_operation,
)
from coupons.services.ports import UnitOfWork

MAX_CODES = code_rules.MAX_CODES_PER_REQUEST
MAX_CUSTOMER_COUPONS = 100
# A job undone by its id in one reinstate request revoked at most this many coupons.
MAX_REINSTATE_BY_REQUEST = 1000


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    series_id: int | None = None
    codes: tuple[str, ...] = ()
    customer: CustomerRef | None = None
    reason: str | None = None
    # The distinct codes and their matching keys, worked out when the request is made rather
    # than inside its transaction: on SQLite that holds the database's one write lock.
    distinct: tuple[str, ...] = field(init=False)
    keys: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        distinct = code_rules.distinct_codes(self.codes)
        object.__setattr__(self, "distinct", tuple(distinct))
        object.__setattr__(self, "keys", tuple(code_rules.normalize(c) for c in distinct))


@dataclass(frozen=True, slots=True)
class _Scope:
    codes: Sequence[str]
    series: Series | None
    customer: Customer | None
    keys: Sequence[str]  # `codes`' matching keys, in the same order


def revoke(uow: UnitOfWork, ctx: Context, request: RevokeRequest) -> Outcome:
    """Revoke the coupons a request names; per-code failures are reported, not raised."""
    return _change(uow, ctx, request, Action.REVOKE)


def reinstate(uow: UnitOfWork, ctx: Context, request: RevokeRequest) -> Outcome:
    """Return REVOKED coupons to the state they had before revoke."""
    return _change(uow, ctx, request, Action.REINSTATE)


def _change(uow: UnitOfWork, ctx: Context, request: RevokeRequest, action: Action) -> Outcome:
    """Revoke and reinstate alike: check the request, lock what is in scope, decide, apply."""
    scope = _check(uow, ctx, request)
    if scope.codes:
        matches = _coupons_for_codes(uow, ctx, scope)
        outcome = decide(
            action,
            scope.codes,
            matches,
            customer_id=scope.customer.id if scope.customer else None,
            series_given=scope.series is not None,
            keys=scope.keys,
        )
    else:
        # Customer mode: revoke takes the customer's ISSUED coupons, reinstate its REVOKED ones.
        state = CouponState.ISSUED if action is Action.REVOKE else CouponState.REVOKED
        outcome = Outcome(done=_customer_coupons(uow, ctx, scope, state))
    _apply(uow, ctx, outcome, action, request.reason)
    return outcome


def reinstate_request(
    uow: UnitOfWork, ctx: Context, revoke_request_id: str, reason: str | None
) -> Outcome:
    """Undo one earlier revoke call or job (spec §7: a trail row's `requestId`), skipping (and
    reporting) coupons no longer revoked (9017: reinstated already, perhaps by this very call
    made twice) or revoked again since (9018).

    A job is undone here once it has finished, and only while it revoked at most
    `MAX_REINSTATE_BY_REQUEST` coupons: one request is one transaction, and a job may have
    revoked a million. A larger one is undone by its undo, a job of its own."""
    if revoke_request_id.startswith(JOB_ID_PREFIX):
        job = uow.jobs.get(ctx.org_id, revoke_request_id)
        if job is not None and not job.state.is_finished:
            raise errors.JobStateConflict(
                f"job is {job.state.value}; its coupons can be reinstated once it has finished"
            )
    revoked = uow.history.revoked_by_request(
        ctx.org_id, revoke_request_id, limit=MAX_REINSTATE_BY_REQUEST + 1
    )
    if not revoked:
        raise errors.InvalidField("revokeRequestId", "no revoke with this request id")
    if len(revoked) > MAX_REINSTATE_BY_REQUEST:
        raise errors.InvalidField(
            "revokeRequestId",
            f"names a job that revoked more than {MAX_REINSTATE_BY_REQUEST:,} coupons, more "
            "than one request reinstates: undo it with POST /v2/coupon/revoke/jobs/{jobId}/undo",
        )
    return reinstate_revoked(uow, ctx, revoke_request_id, revoked, reason, apply=True)


# --- the per-code part, shared with revoke jobs ----------------------------------------------
# A job chunk is a revoke request without the request's limits: the same lookups, locks,
# decisions, guarded UPDATE and history write, so a job and a call can never disagree.


def revoke_codes(
    uow: UnitOfWork,
    ctx: Context,
    codes: list[str],
    series: Series | None,
    reason: str | None,
    *,
    apply: bool,
) -> tuple[Outcome, dict[str, errors.CouponError]]:
    """Revoke distinct codes; without a series each is looked up as a single-code revoke is.

    Returns the outcome and, by matching key, the codes that such a single-code call would
    refuse as a whole (108, 712, 811). `apply=False` decides under the locks, changing nothing.
    """
    keys = [code_rules.normalize(c) for c in codes]
    scope = _Scope(codes=codes, series=series, customer=None, keys=keys)
    matches, refusals = _lookup(uow, ctx, scope)
    kept = [(c, k) for c, k in zip(codes, keys, strict=True) if k not in refusals]
    outcome = decide(
        Action.REVOKE,
        [c for c, _ in kept],
        matches,
        customer_id=None,
        series_given=bool(series),
        keys=[k for _, k in kept],
    )
    if apply:
        _apply(uow, ctx, outcome, Action.REVOKE, reason)
    return outcome, refusals


def revoke_coupons(
    uow: UnitOfWork, ctx: Context, ids: Sequence[int], reason: str | None, *, apply: bool
) -> Outcome:
    """Revoke coupons named by id (every unredeemed coupon of a series), in id order."""
    locked = uow.coupons.coupons_by_ids(ctx.org_id, ids, lock=True)
    outcome = decide_each(Action.REVOKE, locked)
    if apply:
        _apply(uow, ctx, outcome, Action.REVOKE, reason)
    return outcome


def change_coupons(
    uow: UnitOfWork, ctx: Context, action: Action, ids: Sequence[int], reason: str | None
) -> Outcome:
    """Revoke or reinstate exactly the org's coupons among `ids` (the console's pick), with
    the request checks a call naming them would get: each of their series must be live and
    revocable (712, 811, in series order), then each coupon is decided on its own."""
    locked = uow.coupons.coupons_by_ids(ctx.org_id, ids, lock=True)
    if not locked:
        raise errors.InvalidField("coupons", "pick at least one coupon")
    for series_id in sorted({c.series_id for c in locked}):
        revocable_series(uow, ctx, series_id)
    outcome = decide_each(action, locked)
    _apply(uow, ctx, outcome, action, reason)
    return outcome


def reinstate_revoked(
    uow: UnitOfWork,
    ctx: Context,
    revoke_request_id: str,
    ids: Sequence[int],
    reason: str | None,
    *,
    apply: bool,
) -> Outcome:
    """Reinstate those of `ids` whose latest change is still that revoke; report the others."""
    locked = uow.coupons.coupons_by_ids(ctx.org_id, ids, lock=True)
    # Read under the lock: a change that committed meanwhile must count.
    still = uow.history.still_revoked_by(revoke_request_id, [c.id for c in locked])
    outcome = Outcome()
    for coupon in locked:
        if coupon.state is not CouponState.REVOKED:
            outcome.decide(coupon.code, [coupon], FailureReason.NOT_REVOKED)
        elif coupon.id in still:
            outcome.decide(coupon.code, [coupon], None)
        else:
            outcome.decide(coupon.code, [coupon], FailureReason.CHANGED_SINCE)
    if apply:
        _apply(uow, ctx, outcome, Action.REINSTATE, reason)
    return outcome


def _apply(
    uow: UnitOfWork, ctx: Context, outcome: Outcome, action: Action, reason: str | None
) -> None:
    """One guarded UPDATE for every decided coupon, their history and the trail, as the last
    step (a revoke's three writes go to the store together: `UnitOfWork.apply_revoke`)."""
    if not outcome.done:
        return
    ids = [c.id for c in outcome.done]
    if action is Action.REVOKE:
        batch = RevokeBatch(
            org_id=ctx.org_id,
            coupon_ids=tuple(ids),
            from_states=tuple(c.state for c in outcome.done),
            at=ctx.now,
            actor=ctx.actor.username,
            request_id=ctx.request_id,
            reason=reason,
            job_id=ctx.job_id,
        )
        _check_changed(uow.apply_revoke(batch), ids, action)
        return
    _check_changed(uow.coupons.mark_reinstated(ids, ctx.now), ids, action)
    # The audit trail (spec §7), one statement, before the history write that ends the use case.
    uow.revocations.record_reinstated(ctx.org_id, ids)
    record_history(
        uow,
        ctx,
        action,
        [(c.id, c.state, target_state(c, action)) for c in outcome.done],
        reason,
    )


def _check_changed(changed: int, ids: list[int], action: Action) -> None:
    if changed != len(ids):
        raise RuntimeError(f"coupons changed under lock during {action.value.lower()}")


def _check(uow: UnitOfWork, ctx: Context, request: RevokeRequest) -> _Scope:
    """The whole-request checks of spec §5, in its order; the first failure answers alone."""
    codes = request.distinct
    customer_ref = (
        request.customer if request.customer and not request.customer.is_empty() else None
    )
    if not codes and customer_ref is None:
        raise errors.CodesOrCustomerRequired()
    if not codes and request.codes:
        # Codes were sent, all blank: taken as "no codes", the call would become a customer
        # mode revoke of everything the customer holds, far more than a form with an empty
        # field meant. Customer mode is asked for by sending no codes at all.
        raise errors.InvalidField(
            "couponCodes",
            "holds only blank codes; send codes, or leave couponCodes out to take every "
            "coupon the customer holds",
        )
    if len(codes) > MAX_CODES:
        raise errors.TooManyCodes()
    if len(codes) > 1 and request.series_id is None:
        raise errors.SeriesRequiredForManyCodes()
    series = None
    if request.series_id is not None:
        series = revocable_series(uow, ctx, request.series_id)
    customer = find_customer(uow, ctx.org_id, customer_ref) if customer_ref else None
    if series is not None and series.type is SeriesType.GENERIC and codes and customer is None:
        raise errors.GenericCodeNeedsCustomer()
    return _Scope(codes=codes, series=series, customer=customer, keys=request.keys)


def revocable_series(uow: UnitOfWork, ctx: Context, series_id: int) -> Series:
    """The org's series a revoke (call or job) names, checked in spec §5's order: 707, then
    712 and 811."""
    series = series_for_operation(uow, ctx.org_id, series_id)
    check_series(series, ctx.now)
    return series


def revocable_now(series: Series, now: datetime) -> bool:
    """Whether a revoke naming this series would get past its checks (712, 811)."""
    try:
        check_series(series, now)
    except errors.CouponError:
        return False
    return True


def check_series(series: Series, now: datetime) -> None:
    """A given series must be live and revocable (712, 811); the console asks too, to offer
    a revoke only where this would allow it."""
    if series.is_expired(now):
        raise errors.SeriesExpired()
    if series.type is SeriesType.GENERIC_REDEEMABLE:
        raise errors.NotSupportedForGenericRedeemable()


def _coupons_for_codes(uow: UnitOfWork, ctx: Context, scope: _Scope) -> list[Coupon]:
    """Lock the coupons carrying the codes, in the series or (one code) across the org."""
    matches, refusals = _lookup(uow, ctx, scope)
    for refusal in refusals.values():
        raise refusal
    return matches


def _lookup(
    uow: UnitOfWork, ctx: Context, scope: _Scope
) -> tuple[list[Coupon], dict[str, errors.CouponError]]:
    """Lock the coupons carrying the codes; without a series, also say which codes a
    single-code revoke would refuse as a whole (by matching key)."""
    norms = scope.keys
    series_id = scope.series.id if scope.series else None
    matches = uow.coupons.coupons_by_codes(ctx.org_id, norms, series_id=series_id, lock=True)
    if scope.series is not None:
        return matches, {}
    # A code without a series is looked for in the org's live series, as customer mode is;
    # only when every series carrying it has expired is it refused (712). The live series then
    # get the checks a given series would get (GENERIC_REDEEMABLE 811, GENERIC without
    # customer 108). A generic series is found by its shared code even before it has coupons.
    found = uow.series.series_many(ctx.org_id, {c.series_id for c in matches})
    generic = uow.series.generic_series_by_codes(ctx.org_id, norms)
    found.update((s.id, s) for s in generic)
    carriers: dict[str, set[int]] = {}
    for coupon in matches:
        carriers.setdefault(code_rules.normalize(coupon.code), set()).add(coupon.series_id)
    for s in generic:
        carriers.setdefault(code_rules.normalize(s.generic_code or ""), set()).add(s.id)
    refusals: dict[str, errors.CouponError] = {}
    for norm in norms:
        carrying = [found[i] for i in sorted(carriers.get(norm, ()))]
        live = [s for s in carrying if not s.is_expired(ctx.now)]
        try:
            if carrying and not live:
                raise errors.SeriesExpired()
            # In spec §5's order over every series carrying the code (811 before 108), not
            # series by series: the answer depended on which series had the lower id.
            for series in live:
                check_series(series, ctx.now)
            for series in live:
                if series.type is SeriesType.GENERIC and scope.customer is None:
                    raise errors.GenericCodeNeedsCustomer()
        except errors.CouponError as refusal:
            refusals[norm] = refusal
    live_ids = {i for i, s in found.items() if not s.is_expired(ctx.now)}
    kept = [
        c
        for c in matches
        if c.series_id in live_ids and code_rules.normalize(c.code) not in refusals
    ]
    return kept, refusals


def _customer_coupons(
    uow: UnitOfWork, ctx: Context, scope: _Scope, state: CouponState
) -> list[Coupon]:
    """Customer mode: the customer's coupons in the series, or in every unexpired series.

    Revoke leaves GENERIC_REDEEMABLE coupons alone, as it does when one is named (811): they
    are redemptions of an open code, and a revoked one would shut the customer out of the
    code. Reinstate still finds them, so one revoked before this rule can be put back."""
    assert scope.customer is not None
    found = uow.coupons.coupons_of_customer(
        ctx.org_id,
        scope.customer.id,
        states=(state,),
        series_id=scope.series.id if scope.series else None,
        unexpired_at=None if scope.series else ctx.now,
        revocable_only=state is CouponState.ISSUED,
        limit=MAX_CUSTOMER_COUPONS + 1,
        lock=True,
    )
    if len(found) > MAX_CUSTOMER_COUPONS:
        raise errors.TooManyCustomerCoupons()
    return found
