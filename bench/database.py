"""Readying a benchmark database: which backends answer, and enough ISSUED coupons for a run."""

from __future__ import annotations

from bench import load
from bench.load import Layout
from bench.workloads import WORKLOADS

# Requests per second each side is allowed per second of duration (a count bound on top of
# the time bound, so a fast run cannot drain a small database).
RATE_CAP = {"codes50": 300, "code1": 1000, "customer": 600}


def job_counts(layout: Layout, duration_s: float) -> dict[str, int]:
    """Jobs per side per workload: the rate cap times the duration, within what is left."""
    codes_left, customer_left = load.issued_left(layout)
    usable = 0.9 * codes_left / 2  # per side
    wanted = {w: int(RATE_CAP[w] * duration_s) for w in WORKLOADS}
    codes50 = min(wanted["codes50"], int(0.8 * usable / 50))
    code1 = min(wanted["code1"], int(usable - codes50 * 50))
    customer = min(wanted["customer"], int(0.9 * customer_left / 2 / 9))
    return {"codes50": codes50, "code1": code1, "customer": customer}


def ready_database(backend: str, scale: str, duration_s: float, pg_admin_url: str) -> Layout:
    """The loaded database of a scale, with the ISSUED coupons a run of `duration_s` would
    like left (capped for small scales, which start from a nearly fresh load instead)."""
    n = load.scale_count(scale)
    codes = 2 * (RATE_CAP["codes50"] * duration_s * 50 + RATE_CAP["code1"] * duration_s)
    customers = 2 * RATE_CAP["customer"] * duration_s * 9
    return load.ensure(
        backend,
        scale,
        need_codes=int(min(codes, 0.8 * 0.81 * n)),
        need_customer_coupons=int(min(customers, 0.8 * 0.09 * n)),
        pg_admin_url=pg_admin_url,
    )


def postgres_answers(admin_url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(load._libpq(admin_url), connect_timeout=3).close()
        return True
    except Exception as error:
        print(f"[run] PostgreSQL at {admin_url} does not answer ({error}); skipping it")
        return False


def chosen_backends(spec: str, pg_admin_url: str) -> list[str]:
    """The comma-separated backends of `--backends`, PostgreSQL left out when it is away."""
    backends = [b for b in spec.split(",") if b]
    if "postgresql" in backends and not postgres_answers(pg_admin_url):
        backends.remove("postgresql")
    return backends
