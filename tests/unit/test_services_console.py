"""The console's use cases on in-memory fakes: picking coupons to revoke, and people."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from coupons.domain import errors
from coupons.domain.model import CouponState, SeriesType
from coupons.domain.revoke import FailureReason
from coupons.services import people, picked
from coupons.services.auth import FailureThrottle
from tests.unit.fakes import FakeTransactions
from tests.unit.world import NOW, OTHER_ORG, World


@pytest.fixture
def world() -> World:
    return World()


def test_a_pick_across_series_and_holders_revokes_exactly_those_coupons_in_one_request(
    world: World,
) -> None:
    # Given two customers holding the same generic code, and coupons in two series
    ann, bob = world.customer("+1 555 0100"), world.customer("+1 555 0101")
    generic = world.series(SeriesType.GENERIC, generic_code="SALE20")
    pool = world.series()
    ann_generic = world.coupons(generic, "SALE20", to=ann)
    bob_generic = world.coupons(generic, "SALE20", to=bob)
    ann_pool = world.coupons(pool, "P-1", "P-2", to=ann)
    unissued = world.coupons(pool, "P-3", state=CouponState.AVAILABLE)
    redeemed = world.coupons(pool, "P-4", state=CouponState.REDEEMED, to=ann)
    chosen = [*ann_generic, *ann_pool, *unissued, *redeemed]

    # When they are revoked by id
    uow = world.uow()
    outcome = picked.revoke_picked(uow, world.ctx(), [c.id for c in chosen], "fraud")
    uow.commit()

    # Then each picked coupon is revoked (Bob's copy of the shared code is not), and the
    # redeemed one is reported as the API reports it
    assert sorted(c.id for c in outcome.done) == sorted(c.id for c in chosen[:-1])
    assert outcome.failed == {FailureReason.REDEEMED: ["P-4"]}
    assert world.states(bob_generic) == [CouponState.ISSUED]
    assert world.states(chosen[:-1]) == [CouponState.REVOKED] * 4
    # under the one request id, so one undo takes them all back
    assert {h.change.request_id for h in world.store.history} == {"req-1"}


def test_a_pick_of_another_orgs_coupons_or_of_nothing_changes_nothing(world: World) -> None:
    theirs = world.coupons(world.series(org_id=OTHER_ORG), "X-1")

    with pytest.raises(errors.InvalidField):
        picked.revoke_picked(world.uow(), world.ctx(), [theirs[0].id], None)
    with pytest.raises(errors.InvalidField):
        picked.revoke_picked(world.uow(), world.ctx(), list(range(1, picked.MAX_PICKED + 2)), None)
    assert world.states(theirs) == [CouponState.ISSUED]


def test_a_pick_in_an_expired_series_fails_whole_and_revokes_nothing(world: World) -> None:
    live = world.coupons(world.series(), "L-1")
    old = world.coupons(world.series(expired=True), "O-1")
    uow = world.uow()

    with pytest.raises(errors.SeriesExpired):
        picked.revoke_picked(uow, world.ctx(), [live[0].id, old[0].id], None)
    uow.rollback()

    assert world.states([*live, *old]) == [CouponState.ISSUED, CouponState.ISSUED]


def test_picking_one_of_two_coupons_a_customer_holds_of_a_shared_code_changes_only_it(
    world: World,
) -> None:
    # Given a customer holding a generic series' shared code twice
    ann = world.customer("+1 555 0102")
    generic = world.series(SeriesType.GENERIC, generic_code="SALE30")
    first, second = world.coupons(generic, "SALE30", "SALE30", to=ann)

    # When one of them is picked and revoked, then reinstated
    uow = world.uow()
    revoked = picked.revoke_picked(uow, world.ctx(), [first.id], "fraud")
    uow.commit()
    after_revoke = world.states([first, second])
    uow = world.uow()
    reinstated = picked.reinstate_picked(uow, world.ctx(), [first.id], "oops")
    uow.commit()

    # Then only the picked coupon changed, each time
    assert [c.id for c in revoked.done] == [first.id]
    assert after_revoke == [CouponState.REVOKED, CouponState.ISSUED]
    assert [c.id for c in reinstated.done] == [first.id]
    assert world.states([first, second]) == [CouponState.ISSUED, CouponState.ISSUED]


def test_reinstating_a_picked_coupon_that_is_not_revoked_reports_9017(world: World) -> None:
    issued = world.coupons(world.series(), "N-1")
    uow = world.uow()

    outcome = picked.reinstate_picked(uow, world.ctx(), [issued[0].id], None)

    assert outcome.done == []
    assert outcome.failed == {FailureReason.NOT_REVOKED: ["N-1"]}


def test_sign_in_makes_a_session_that_ends_on_sign_out_and_never_stores_the_token(
    world: World,
) -> None:
    # Given a person
    uow = world.uow()
    world.store.orgs[1001] = "acme"
    people.create_person(
        uow, org="acme", email="Ann@Example.com", role="support", password="pw-1-long", now=NOW
    )
    uow.commit()

    # When they sign in
    signed = people.sign_in(
        FakeTransactions(world.store), FailureThrottle(3, 60), email="ann@example.COM",
        password="pw-1-long", address="a", now=NOW, lifetime=timedelta(hours=1),
    )  # fmt: skip

    # Then the session names them until it expires, keyed only by the token's hash
    assert signed.token not in world.store.sessions
    assert people.session_person(world.uow(), signed.token, NOW) == signed.person
    assert people.session_person(world.uow(), signed.token, NOW + timedelta(hours=2)) is None
    assert people.actor_of(signed.person).groups == frozenset({"default"})
    people.sign_out(world.uow(), signed.token)
    assert people.session_person(world.uow(), signed.token, NOW) is None


def test_wrong_passwords_are_refused_alike_and_then_throttled(world: World) -> None:
    world.store.orgs[1001] = "acme"
    uow = world.uow()
    people.create_person(
        uow, org="acme", email="a@x.test", role="viewer", password="pw-right-1", now=NOW
    )
    uow.commit()
    throttle = FailureThrottle(2, 60)

    def attempt(email: str, password: str) -> None:
        people.sign_in(
            FakeTransactions(world.store), throttle, email=email, password=password,
            address="b", now=NOW, lifetime=timedelta(hours=1),
        )  # fmt: skip

    for email in ("a@x.test", "nobody@x.test"):
        with pytest.raises(errors.AuthenticationFailed):
            attempt(email, "wrong")
    with pytest.raises(errors.TooManyAuthFailures):
        attempt("a@x.test", "pw-right-1")


@pytest.mark.parametrize(
    "email",
    [
        "ann@example.com",
        "o'brien@example.ie",
        "ann+ops@mail.example.co.uk",
        "jörg@example.de",
        "用户@例子.广告",
        "ann@xn--bcher-kva.example",
    ],
)
def test_any_address_a_person_can_type_becomes_a_person(world: World, email: str) -> None:
    world.store.orgs[1001] = "acme"
    uow = world.uow()

    people.create_person(uow, org="acme", email=email, role="viewer", password=None, now=NOW)

    assert uow.users.by_email(email.casefold()) is not None


@pytest.mark.parametrize(
    ("email", "says"),
    [
        ("ann.example.com", "exactly one '@'"),
        ("@example.com", "exactly one '@'"),
        ("ann@", "exactly one '@'"),
        ("ann@b@example.com", "exactly one '@'"),
        ("ann smith@example.com", "spaces or line breaks"),
        ("ann@exa\nmple.com", "spaces or line breaks"),
        ("ann\x07@example.com", "control or invisible"),
        ("ann\u200b@example.com", "control or invisible"),
        ("ann\u202e@example.com", "control or invisible"),
        ('"><b>x</b>@acme.example', '<, >, " or `'),
        ('"ann"@example.com', '<, >, " or `'),
        ("ann`@example.com", '<, >, " or `'),
        ("a" * 320 + "@example.com", "longer than 192"),
        ("a" * 181 + "@example.com", "longer than 192"),  # the actor column holds 200
    ],
)
def test_an_address_no_one_could_sign_in_with_is_refused_saying_why(
    world: World, email: str, says: str
) -> None:
    world.store.orgs[1001] = "acme"

    with pytest.raises(errors.InvalidField) as refused:
        people.create_person(
            world.uow(), org="acme", email=email, role="viewer", password=None, now=NOW
        )

    assert refused.value.message.startswith("email: not an email address: ")
    assert says in refused.value.message


def given_person(world: World, email: str) -> None:
    """A viewer of acme with the password "pw-ok-123"."""
    world.store.orgs[1001] = "acme"
    uow = world.uow()
    people.create_person(uow, org="acme", email=email, role="viewer", password="pw-ok-123", now=NOW)
    uow.commit()


class _Watched(FakeTransactions):
    """Transactions that know whether one is open, and which were writes."""

    def __init__(self, world: World) -> None:
        super().__init__(world.store)
        self.open = False
        self.writes: list[bool] = []

    def run(self, work: Any, *, write: bool = True, retry_integrity: bool = False) -> Any:
        self.open = True
        self.writes.append(write)
        try:
            return super().run(work, write=write, retry_integrity=retry_integrity)
        finally:
            self.open = False


def test_a_sign_in_checks_the_password_with_no_transaction_open(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a person, and a record of whether a transaction is open while argon2 runs
    given_person(world, "w@x.test")
    db = _Watched(world)
    during: list[bool] = []
    verify = people._verifies

    def watched(stored: str, password: str) -> bool:
        during.append(db.open)
        return verify(stored, password)

    monkeypatch.setattr(people, "_verifies", watched)

    # When they sign in, and someone else fails to
    people.sign_in(
        db, FailureThrottle(3, 60), email="w@x.test", password="pw-ok-123", address="c",
        now=NOW, lifetime=timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(errors.AuthenticationFailed):
        people.sign_in(
            db, FailureThrottle(3, 60), email="w@x.test", password="wrong", address="c",
            now=NOW, lifetime=timedelta(hours=1),
        )  # fmt: skip

    # Then argon2 ran outside every transaction (a write one held SQLite's one write lock
    # for all of it), the lookups were reads, and only the session was written
    assert during == [False, False]
    assert db.writes == [False, True, False]


def _sixteen_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch, password: str, throttle: FailureThrottle
) -> list[str]:
    """Sixteen sign-ins of one person sent at once, each password check slow enough that
    they are all in flight together; each one's outcome ("ok" or the refusal's class)."""
    given_person(world, "t@x.test")
    gate = threading.Barrier(16)
    verify = people._verifies

    def slow(stored: str, password: str) -> bool:
        time.sleep(0.02)
        return verify(stored, password)

    monkeypatch.setattr(people, "_verifies", slow)
    answers: list[str] = []

    def attempt() -> None:
        gate.wait()
        try:
            people.sign_in(
                FakeTransactions(world.store), throttle, email="t@x.test", password=password,
                address="d", now=NOW, lifetime=timedelta(hours=1),
            )  # fmt: skip
            answers.append("ok")
        except errors.CouponError as refused:
            answers.append(type(refused).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return sorted(answers)


def test_wrong_passwords_sent_at_once_are_throttled_as_if_sent_one_by_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When sixteen wrong passwords arrive at once, against a throttle of three failures
    answers = _sixteen_at_once(world, monkeypatch, "guess", FailureThrottle(3, 60))

    # Then three were tried and the rest refused unchecked, as one after another would be
    assert answers == ["AuthenticationFailed"] * 3 + ["TooManyAuthFailures"] * 13


def test_right_passwords_sent_at_once_are_never_throttled(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When sixteen sign-ins with the right password arrive at once (a throttle of three)
    answers = _sixteen_at_once(world, monkeypatch, "pw-ok-123", FailureThrottle(3, 60))

    # Then each is signed in: only failures count
    assert answers == ["ok"] * 16


def test_an_attempt_that_the_database_cut_short_counts_as_no_failure(world: World) -> None:
    # Given a throttle of one failure, and a sign-in that meets a database outage
    throttle = FailureThrottle(1, 60)

    class Away(FakeTransactions):
        def run(self, work: Any, *, write: bool = True, retry_integrity: bool = False) -> Any:
            raise errors.DatabaseUnavailable(2)

    with pytest.raises(errors.DatabaseUnavailable):
        people.sign_in(
            Away(world.store), throttle, email="u@x.test", password="pw", address="e",
            now=NOW, lifetime=timedelta(hours=1),
        )  # fmt: skip

    # Then the person may try again at once: an outage is nobody's wrong password
    throttle.check("person:u@x.test", "addr:e")
