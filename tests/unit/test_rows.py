"""Coupons made from rows are the very objects `Coupon(...)` makes: the row mapper sets a
frozen dataclass's slots directly (for speed under SQLite's write lock), so it must stay
indistinguishable from the constructor."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.adapters.repos.rows import coupons_of
from coupons.domain.model import Coupon, CouponState

STATES = [s.value for s in CouponState]
ROWS = st.tuples(
    st.integers(1, 2**62),
    st.integers(1, 2**62),
    st.text(min_size=1, max_size=12),
    st.sampled_from(STATES),
    st.none() | st.integers(1, 2**62),
    st.none() | st.sampled_from(STATES),
    st.none() | st.text(max_size=6),
)


@given(st.lists(ROWS, max_size=5))
def test_a_row_maps_to_the_coupon_the_constructor_makes(
    rows: list[tuple[int, int, str, str, int | None, str | None, str | None]],
) -> None:
    # when rows are mapped
    mapped = coupons_of(rows)

    # then each equals, hashes as and reads as the constructor's coupon for the same values
    expected = [
        Coupon(i, s, c, CouponState(st_), cu, CouponState(rf) if rf else None, p)
        for i, s, c, st_, cu, rf, p in rows
    ]
    assert mapped == expected
    assert [hash(m) for m in mapped] == [hash(e) for e in expected]
    assert [dataclasses.astuple(m) for m in mapped] == [dataclasses.astuple(e) for e in expected]


def test_a_mapped_coupon_stays_frozen() -> None:
    # given a coupon made from a row
    (coupon,) = coupons_of([(1, 2, "CODE", "ISSUED", None, None, None)])

    # then it cannot be changed, as any coupon
    with pytest.raises(dataclasses.FrozenInstanceError):
        coupon.state = CouponState.REVOKED  # type: ignore[misc]
