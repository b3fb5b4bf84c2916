"""The revoke benchmark's harness, at a tiny scale, so it cannot rot unnoticed."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import anchor, events, load, run, scale
from bench.service_calls import webhooks_left
from tests.conftest import Backend

pytestmark = pytest.mark.slow


@pytest.fixture
def bench_data(
    backend: Backend,
    postgres_admin_url: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, str]]:
    """The loader writes to a temporary data folder and a uniquely named database."""
    monkeypatch.setattr(load, "DATA_DIR", tmp_path)
    monkeypatch.setattr(load, "PG_DATABASE_PREFIX", f"coupons_bench_test_{uuid.uuid4().hex[:6]}_")
    admin_url = postgres_admin_url or load.DEFAULT_PG_ADMIN
    yield backend.name, admin_url
    for scale_name in ("tiny", SECOND_SCALE):  # dropped even when a test failed midway
        load.drop(backend.name, load.database_url(backend.name, scale_name, admin_url), admin_url)


SECOND_SCALE = "3000"  # beside "tiny" (2,000 coupons), for the scale comparison


def tiny_codes50(
    backend: str, admin_url: str, *, with_anchor: bool = True, duration_s: float = 1.0
) -> dict[str, Any]:
    """`duration_s` per side of codes50 on the tiny database, two connections, one worker."""
    [result] = run.measure(
        backend,
        "tiny",
        ["codes50"],
        connections=2,
        workers=1,
        duration_s=duration_s,
        rounds=1,
        rng=random.Random(7),
        pg_admin_url=admin_url,
        with_anchor=with_anchor,
    )
    return result


def test_a_tiny_round_revokes_every_code_it_sends_once_on_both_sides(
    bench_data: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a tiny database made by the loader through the real schema and CLI
    backend, admin_url = bench_data
    layout = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)
    codes_before, _ = load.issued_left(layout)
    assert codes_before > 1000
    # and a request cap low enough that one load feeds the run (as at 1M and 10M)
    monkeypatch.setitem(run.RATE_CAP, "codes50", 5)

    # when one short round of codes50 runs over HTTP and raw, between two anchor runs
    result = tiny_codes50(backend, admin_url)

    # then both sides revoked all 50 codes of every request (disjoint, still ISSUED codes)
    assert not result["refilled"] and result["rounds"] == 1
    assert result["api_requests"] > 0 and result["raw_requests"] > 0
    assert result["api_errors"] == 0 and result["raw_errors"] == 0
    assert result["api_codes"] == 50 * result["api_requests"]
    assert result["raw_codes"] == 50 * result["raw_requests"]
    assert result["ratio"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["server_rss_mb"] > 0
    # and the anchor did real work: every request of it revoked 50 ISSUED codes
    assert result["limit_requests"] > 0 and result["limit_errors"] == 0
    assert result["limit_codes"] == 50 * result["limit_requests"]
    assert result["limit_before_codes_per_s"] > 0 and result["limit_after_codes_per_s"] > 0
    assert 0 < result["limit_p50_ms"] <= result["limit_p99_ms"]
    assert result["limit_sql_mirrors_service"] is True
    # and the RESULT line carries the limit and the HTTP / limit ratio
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("RESULT ")]
    printed = json.loads(line.removeprefix("RESULT "))
    assert printed["limit_codes_per_s"] == result["limit_codes_per_s"] > 0
    assert printed["limit_ratio"] == pytest.approx(
        result["api_codes_per_s"] / result["limit_codes_per_s"], rel=0.01
    )
    # and the database lost exactly the HTTP and raw codes, plus the two requests of the SQL
    # comparison: the anchor put back every coupon it revoked
    codes_after, _ = load.issued_left(layout)
    assert codes_before - codes_after == result["api_codes"] + result["raw_codes"] + 100
    # and the loader reuses the database rather than building it again
    assert load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False) == layout


@pytest.mark.parametrize("advisory_lock", [True, False], ids=["history-lock", "no-lock"])
def test_the_anchor_revokes_real_codes_and_puts_them_back(
    bench_data: tuple[str, str], advisory_lock: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a tiny database, a first round of one request a connection, and pools of at most
    # 4 requests, so a second takes several rounds even on a slow machine
    backend, admin_url = bench_data
    if backend == "sqlite" and not advisory_lock:
        pytest.skip("the variant without the history lock is PostgreSQL's")
    layout = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)
    before = load.issued_left(layout)
    pick = anchor.pick_pool
    monkeypatch.setattr(anchor, "pick_pool", lambda lay, jobs, rng: pick(lay, min(jobs, 4), rng))
    monkeypatch.setattr(anchor, "CALIBRATION_PER_CONNECTION", 1)
    # Pools this small can take under 10 ms a round on a quiet machine: no cap before 1 s.
    monkeypatch.setattr(anchor, "MAX_ROUNDS", 100_000)

    # when the anchor runs for a second
    try:
        side = anchor.measure(
            layout,
            connections=2,
            duration_s=1.0,
            rng=random.Random(7),
            advisory_lock=advisory_lock,
        )
    finally:
        if backend == "postgresql":
            anchor.drop_jobs(layout)

    # then it ran for the second, over several pools, each request revoking 50 ISSUED codes
    assert side.requests > 2 and side.errors == 0
    assert side.codes == 50 * side.requests
    assert side.elapsed_s >= 0.9 and len(side.latencies_ms) == side.requests
    # and left every coupon as it found it
    assert load.issued_left(layout) == before


def test_a_database_another_checkout_reloaded_is_loaded_again_not_reused(
    bench_data: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second worktree keeps its own sidecar but loads the same PostgreSQL database: this
    # checkout then reused a sidecar whose client was gone, and every request was a 401
    backend, admin_url = bench_data
    ours = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)
    monkeypatch.setattr(load, "DATA_DIR", tmp_path / "other-checkout")
    theirs = load.load(backend, "tiny", pg_admin_url=admin_url, log=False)
    monkeypatch.setattr(load, "DATA_DIR", tmp_path)

    if backend == "postgresql":  # (a SQLite database lives in its checkout's own folder)
        assert load.existing(backend, "tiny") is None
        again = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)
        assert again.username not in (ours.username, theirs.username)
    else:
        assert load.existing(backend, "tiny") == ours


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_the_anchor_statement_check_notices_a_changed_statement(backend_name: str) -> None:
    # given the anchor's own statements, as the service would send them today
    mirrored = anchor.statements(backend_name)
    assert anchor.differences(mirrored, backend_name) == []
    # when one of them changes (say the coupons are locked in another order)
    changed = [s.replace("ORDER BY coupons.id", "ORDER BY coupons.code") for s in mirrored]
    # then the check reports it, and a missing statement too
    assert len(anchor.differences(changed, backend_name)) == 1
    assert anchor.differences(mirrored[:-1], backend_name) != []
    # and the variant without the history lock is a different history insert
    if backend_name == "postgresql":
        assert (
            len(
                anchor.differences(
                    anchor.statements(backend_name, advisory_lock=False), backend_name
                )
            )
            == 1
        )


def test_a_scale_too_small_for_the_duration_runs_refilled_rounds(
    bench_data: tuple[str, str],
) -> None:
    # given a tiny database, which holds fewer codes than a side would revoke in a second
    backend, admin_url = bench_data
    layout = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)
    codes_before, _ = load.issued_left(layout)

    # when codes50 runs for a fifth of a second per side, which one load cannot feed (a round
    # starts processes, so each costs far more than its share of the time; the anchor is
    # left to the tests above)
    result = tiny_codes50(backend, admin_url, with_anchor=False, duration_s=0.2)

    # then it ran several rounds, each revoking all it asked, more than one load holds
    assert result["refilled"] and result["rounds"] > 1
    assert result["api_errors"] == 0 and result["raw_errors"] == 0
    assert result["api_codes"] == 50 * result["api_requests"]
    assert result["raw_codes"] == 50 * result["raw_requests"]
    assert result["api_codes"] + result["raw_codes"] > codes_before
    # and putting the revoked coupons back restores the load exactly
    vacuums_before = vacuum_counts(layout)
    load.restore(layout)
    assert load.issued_left(layout)[0] == codes_before
    # and, on PostgreSQL, clears the dead row versions the rounds left (autovacuum may be off)
    if backend == "postgresql":
        after = vacuum_counts(layout)
        assert {t: after[t] - vacuums_before[t] for t in after} == {
            "coupons": 1,
            "coupon_history": 1,
            "revocations": 1,
        }


def vacuum_counts(layout: load.Layout) -> dict[str, int]:
    """How often each table a revoke writes was vacuumed by hand (PostgreSQL only)."""
    if layout.backend != "postgresql":
        return {}
    import psycopg

    with psycopg.connect(load._libpq(layout.url)) as conn:
        rows = conn.execute(
            "SELECT relname, vacuum_count FROM pg_stat_user_tables "
            "WHERE relname IN ('coupons', 'coupon_history', 'revocations')"
        ).fetchall()
    return {str(name): int(count) for name, count in rows}


def test_the_scale_comparison_alternates_servers_and_revokes_what_it_asks(
    bench_data: tuple[str, str],
) -> None:
    # given two tiny databases of different sizes
    backend, admin_url = bench_data
    # when codes50 rounds alternate between a server on each
    result = scale.measure(
        backend,
        "tiny",
        SECOND_SCALE,
        connections=2,
        workers=1,
        duration_s=1.0,
        rounds=2,
        rng=random.Random(7),
        pg_admin_url=admin_url,
    )
    # then both were measured (the run itself fails if a request revoked less than asked)
    assert result["requests_small"] > 0 and result["requests_large"] > 0
    assert result["p50_ratio"] == pytest.approx(
        result["p50_large_ms"] / result["p50_small_ms"], rel=0.01
    )


def test_a_tiny_events_round_delivers_every_revoke_and_leaves_no_subscription(
    bench_data: tuple[str, str],
) -> None:
    # given a tiny database made by the loader
    backend, admin_url = bench_data
    layout = load.ensure(backend, "tiny", pg_admin_url=admin_url, log=False)

    # when one short round runs with delivery off and one with it on
    result = events.measure(
        backend,
        "tiny",
        connections=2,
        workers=1,
        duration_s=1.0,
        rounds=1,
        rng=random.Random(7),
        pg_admin_url=admin_url,
    )

    # then both modes revoked codes, and the receiver got a signed event for every one
    assert result["events_off_codes_per_s"] > 0 and result["events_on_codes_per_s"] > 0
    assert result["codes_revoked"] > 0
    assert result["events_delivered"] == result["codes_revoked"]
    assert 0 < result["delivery_p50_ms"] <= result["delivery_p99_ms"]
    # and the subscription it made is gone, so later benchmarks deliver nothing
    assert webhooks_left(layout.url, layout.org_id) == ([], [])
