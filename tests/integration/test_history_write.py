"""One history write of changes that do not all share their action, time, actor, request id
and reason: each row keeps its own (PostgreSQL sends each run of shared values once)."""

from __future__ import annotations

from datetime import timedelta

from coupons.domain.model import Action, CouponState, StateChange
from coupons.services.common import utcnow
from tests.conftest import Backend
from tests.e2e.conftest import Api


def test_a_write_of_mixed_changes_keeps_each_changes_own_values(api: Api, backend: Backend) -> None:
    # given three coupons
    series_id = api.series(codes=["MIX-1", "MIX-2", "MIX-3"])
    ids = [
        int(api.ok(api.get("/v2/coupon/search", params={"code": code}))["coupons"][0]["couponId"])
        for code in ("MIX-1", "MIX-2", "MIX-3")
    ]
    org_id = backend.db.run(
        lambda uow: uow.conn.exec_driver_sql(
            f"SELECT org_id FROM coupon_series WHERE id = {int(series_id)}"
        ).scalar_one()
    )
    now = utcnow()
    available, revoked = CouponState.AVAILABLE, CouponState.REVOKED
    changes = [
        StateChange(Action.REVOKE, available, revoked, now, "ann", "req-1", "leak"),
        StateChange(Action.REVOKE, available, revoked, now, "ann", "req-1", "other reason"),
        StateChange(
            Action.REVOKE, available, revoked, now + timedelta(seconds=1), "bob", "req-2", None
        ),
    ]

    # when they are written in one call (three runs of shared values)
    def write(uow):  # type: ignore[no-untyped-def]
        uow.history.write(org_id, list(zip(ids, changes, strict=True)))
        uow.commit()

    backend.db.run(write)

    # then each coupon's entry is its own change, in order
    for coupon_id, change in zip(ids, changes, strict=True):
        with backend.db.unit_of_work(write=False) as uow:
            [entry] = uow.history.history(coupon_id)
        assert (entry.actor, entry.request_id, entry.reason) == (
            change.actor,
            change.request_id,
            change.reason,
        )
        assert entry.at == change.at


def test_a_batch_gets_its_event_ids_in_its_own_order_not_the_coupons(
    api: Api, backend: Backend
) -> None:
    # given three coupons, and a change of each given in reverse id order
    series_id = api.series(codes=["ORD-1", "ORD-2", "ORD-3"])
    ids = [
        int(api.ok(api.get("/v2/coupon/search", params={"code": code}))["coupons"][0]["couponId"])
        for code in ("ORD-3", "ORD-2", "ORD-1")
    ]
    assert ids == sorted(ids, reverse=True)
    org_id = backend.db.run(
        lambda uow: uow.conn.exec_driver_sql(
            f"SELECT org_id FROM coupon_series WHERE id = {int(series_id)}"
        ).scalar_one()
    )
    change = StateChange(
        Action.REVOKE, CouponState.AVAILABLE, CouponState.REVOKED, utcnow(), "ann", "req", None
    )

    # when they are written as one run
    def write(uow):  # type: ignore[no-untyped-def]
        uow.history.write(org_id, [(coupon_id, change) for coupon_id in ids])
        uow.commit()

    backend.db.run(write)

    # then the event ids follow the order the changes were given in
    written = backend.db.run(
        lambda uow: [
            row[0]
            for row in uow.conn.exec_driver_sql(
                "SELECT coupon_id FROM coupon_history WHERE request_id = 'req' ORDER BY id"
            )
        ],
        write=False,
    )
    assert written == ids
