"""What `coupons serve --demo` prints: a curl line that works on every run, not only the first."""

from __future__ import annotations

from dataclasses import replace

from coupons.entrypoints import cli
from coupons.services.demo import DemoData

DEMO = DemoData(
    username="demo",
    secret="s3cret",
    series_id=1,
    issued_code="WELCOME-A1",
    customer_mobile="+1 555 0100",
    created=True,
)


def _printed(data: DemoData) -> list[str]:
    with cli.console.capture() as captured:
        cli._print_demo(data, "127.0.0.1", 8300)
    return captured.get().splitlines()


def test_the_first_run_prints_a_revoke_of_a_coupon_the_demo_customer_holds() -> None:
    [curl] = [line for line in _printed(DEMO) if line.startswith("curl ")]

    assert "-u demo:s3cret" in curl and "http://127.0.0.1:8300/v2/coupon/revoke" in curl
    assert "WELCOME-A1" in curl
    assert "export U=demo P=s3cret API=http://127.0.0.1:8300" in _printed(DEMO)


def test_once_every_held_coupon_is_revoked_a_curl_line_is_still_printed() -> None:
    # Earlier runs' printed lines revoked them all: the line now shows what was revoked
    [curl] = [
        line
        for line in _printed(replace(DEMO, issued_code=None, created=False))
        if line.startswith("curl ")
    ]

    assert curl == "curl -s -u demo:s3cret 'http://127.0.0.1:8300/v2/coupon/revocations?limit=5'"


def test_an_ipv6_host_is_printed_in_brackets_so_the_lines_work() -> None:
    with cli.console.capture() as captured:
        cli._print_demo(DEMO, "::1", 8300)
        cli._print_console(("demo@example.com", "pw"), "::1", 8300)
    printed = captured.get()

    assert "http://[::1]:8300/v2/coupon/revoke" in printed
    assert "API=http://[::1]:8300" in printed and "http://[::1]:8300/console" in printed
    assert "http://::1" not in printed
