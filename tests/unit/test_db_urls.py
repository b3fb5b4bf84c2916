"""Database URLs as the service reads them: libpq's comma-separated hosts become SQLAlchemy's
repeated `host=` options; every other URL is read as SQLAlchemy reads it."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from coupons.adapters.db import normalize_url, parse_url


@pytest.mark.parametrize(
    ("given", "hosts", "database", "query"),
    [
        (
            "postgresql://app@db1:5432,db2:5433/coupons?target_session_attrs=read-write",
            ("db1:5432", "db2:5433"),
            "coupons",
            {"target_session_attrs": "read-write"},
        ),
        (
            "postgres://db1:1,db2:2,db3:3/x?sslmode=require",
            ("db1:1", "db2:2", "db3:3"),
            "x",
            {"sslmode": "require"},
        ),
    ],
)
def test_several_hosts_in_libpqs_form_become_host_options(
    given: str, hosts: tuple[str, ...], database: str, query: dict[str, str]
) -> None:
    url = normalize_url(given)

    assert url.drivername == "postgresql+psycopg"
    assert url.host is None and url.query["host"] == hosts
    assert url.database == database
    assert {k: v for k, v in url.query.items() if k != "host"} == query


def test_the_password_of_a_url_with_several_hosts_is_kept_and_hidden_when_shown() -> None:
    url = parse_url("postgresql://app:s3cret@db1,db2/coupons")

    assert url.password == "s3cret"
    assert "s3cret" not in url.render_as_string(hide_password=True)


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://app@db1:5432/coupons",
        "postgresql+psycopg://app@/coupons?host=db1:1&host=db2:2",
        "sqlite:////tmp/a,b.db",
        "sqlite:///relative,name.db",
        "postgresql://app@[::1]:5432/coupons",
        # hosts without their own ports: SQLAlchemy reads them whole and libpq splits them,
        # with the one port for all (rewritten, `?port=` clashed with the host options)
        "postgresql://app:pw@db1,db2/coupons",
        "postgresql://app@db1,db2/coupons?port=5433",
        "postgresql://app@db1,db2:6432/coupons",
    ],
)
def test_any_other_url_is_read_as_sqlalchemy_reads_it(given: str) -> None:
    assert parse_url(given) == make_url(given)
