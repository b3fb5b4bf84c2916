"""Coupon series and their code pools."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.model import CouponState, DiscountType, Series, SeriesType
from coupons.domain.records import NewCoupon
from coupons.services.common import Context
from coupons.services.ports import UnitOfWork

MAX_CODES_PER_UPLOAD = 10_000


@dataclass(frozen=True, slots=True)
class NewSeries:
    description: str
    type: SeriesType
    generic_code: str | None
    valid_till: datetime
    discount_type: DiscountType
    discount_value: Decimal


@dataclass(frozen=True, slots=True)
class CodeUpload:
    """Codes to add as given (with optional PINs), or a number of codes to generate."""

    codes: list[tuple[str, str | None]] | None = None
    generate: int | None = None


CONTROL_CHARACTER_IN_CODE = "a code must not contain a control character (a line break or a tab)"


@dataclass(frozen=True, slots=True)
class UploadResult:
    added: int
    duplicates: list[str]


def create_series(uow: UnitOfWork, ctx: Context, new: NewSeries) -> Series:
    """Create a series; generic types need their shared code."""
    generic_code = (code_rules.clean(new.generic_code) if new.generic_code else None) or None
    if new.type.is_generic and not generic_code:
        raise errors.InvalidField("genericCode", f"required for {new.type.value} series")
    if new.type.is_generic and generic_code and code_rules.has_control_character(generic_code):
        raise errors.InvalidField("genericCode", CONTROL_CHARACTER_IN_CODE)
    if not new.type.is_generic and generic_code:
        # Dropped, the caller would believe the series answers to that code.
        raise errors.InvalidField(
            "genericCode",
            f"only GENERIC and GENERIC_REDEEMABLE series have one; a {new.type.value} series "
            "has a pool of codes",
        )
    if new.discount_type is DiscountType.PERC and not (0 < new.discount_value <= 100):
        raise errors.InvalidField("discountValue", "a percentage must be above 0 and at most 100")
    if new.discount_value <= 0:
        raise errors.InvalidField("discountValue", "must be greater than 0")
    description = _description(new.description)
    return uow.series.add_series(
        org_id=ctx.org_id,
        description=description,
        type=new.type,
        generic_code=generic_code,
        valid_till=new.valid_till,
        discount_type=new.discount_type,
        discount_value=new.discount_value,
        now=ctx.now,
    )


def get_series(
    uow: UnitOfWork, ctx: Context, series_id: int
) -> tuple[Series, dict[CouponState, int]]:
    """A series of the caller's org with its coupon counts per state."""
    series = uow.series.series(ctx.org_id, series_id)
    if series is None:
        raise errors.SeriesNotFound()
    return series, uow.series.state_counts(series.id)


@dataclass(frozen=True, slots=True)
class SeriesChange:
    """What may change on a series; None leaves a field as it is."""

    valid_till: datetime | None = None
    description: str | None = None


def _description(text: str) -> str:
    """A series' description as created or changed: trimmed, never blank (a series named
    "   " had been created, though a PATCH refused the same)."""
    description = text.strip()
    if not description:
        raise errors.InvalidField("description", "must not be blank")
    return description


def change_series(
    uow: UnitOfWork, ctx: Context, series_id: int, change: SeriesChange
) -> tuple[Series, dict[CouponState, int]]:
    """End a campaign early (a past `valid_till` expires its coupons at once, spec §5's 712
    then applies), extend it, or rename it. Type, codes and discount never change: coupons
    already issued keep meaning what they meant."""
    if change.valid_till is None and change.description is None:
        raise errors.InvalidField("body", "give validTill or description")
    description = None if change.description is None else _description(change.description)
    updated = uow.series.update_series(
        ctx.org_id, series_id, valid_till=change.valid_till, description=description
    )
    if updated is None:
        raise errors.SeriesNotFound()
    return updated, uow.series.state_counts(updated.id)


def add_codes(uow: UnitOfWork, ctx: Context, series_id: int, upload: CodeUpload) -> UploadResult:
    """Add codes to a series' AVAILABLE pool; codes already there are reported, not added."""
    series = uow.series.series(ctx.org_id, series_id)
    if series is None:
        raise errors.SeriesNotFound()
    if series.type is SeriesType.GENERIC_REDEEMABLE:
        raise errors.NotSupportedForGenericRedeemable()
    if not series.type.has_pool:
        raise errors.NotSupportedForSeriesType(
            f"codes cannot be added to a {series.type.value} series; it has one generic code"
        )
    needs_pin = series.type is SeriesType.DISC_CODE_PIN
    if upload.generate is not None:
        return _generate(uow, ctx, series, upload.generate, needs_pin)
    assert upload.codes is not None
    wanted: dict[str, tuple[str, str | None]] = {}
    duplicates: list[str] = []
    for index, (raw, pin) in enumerate(upload.codes):
        code = code_rules.clean(raw)
        if not code:  # it could be issued, but never redeemed or revoked by its code
            raise errors.InvalidField(f"codes[{index}]", "a code must not be empty")
        if code_rules.has_control_character(code):
            raise errors.InvalidField(f"codes[{index}]", CONTROL_CHARACTER_IN_CODE)
        if pin is not None and not needs_pin:  # kept, shown on issue, never asked for
            raise errors.InvalidField(
                f"codes[{index}].pin",
                f"only a DISC_CODE_PIN series takes pins; this one is {series.type.value}",
            )
        key = code_rules.normalize(code)
        if key in wanted:
            duplicates.append(code)
        else:
            wanted[key] = (code, pin)
    rows = [
        _pool_row(ctx, series, code, pin or (code_rules.generate_pin() if needs_pin else None))
        for code, pin in wanted.values()
    ]
    # The insert skips codes already in the series, committed before or meanwhile.
    added = uow.coupons.add_pool_codes(rows)
    duplicates.extend(row.code for row in rows if code_rules.normalize(row.code) not in added)
    return UploadResult(added=len(added), duplicates=duplicates)


def _generate(
    uow: UnitOfWork, ctx: Context, series: Series, count: int, needs_pin: bool
) -> UploadResult:
    fresh = new_unique_codes(uow, series.id, count)
    uow.coupons.add_coupons(
        [
            _pool_row(ctx, series, code, code_rules.generate_pin() if needs_pin else None)
            for code in fresh
        ]
    )
    return UploadResult(added=len(fresh), duplicates=[])


def new_unique_codes(uow: UnitOfWork, series_id: int, count: int) -> list[str]:
    """`count` random codes not yet in the series (checked in one query per round)."""
    fresh: dict[str, str] = {}
    while len(fresh) < count:
        batch = {}
        for _ in range(count - len(fresh)):
            code = code_rules.generate_code()
            batch[code_rules.normalize(code)] = code
        taken = uow.coupons.existing_code_norms(series_id, list(batch))
        fresh.update({k: v for k, v in batch.items() if k not in taken})
    return list(fresh.values())[:count]


def _pool_row(ctx: Context, series: Series, code: str, pin: str | None) -> NewCoupon:
    return NewCoupon(
        org_id=ctx.org_id,
        series_id=series.id,
        code=code,
        state=CouponState.AVAILABLE,
        is_generic=False,
        at=ctx.now,
        pin=pin,
    )
