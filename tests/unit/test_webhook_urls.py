"""Webhook URLs: refused at creation when no delivery could use them; logged without secrets."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.services import webhooks
from coupons.services.webhooks import redact_url


def test_a_url_is_logged_without_its_user_info_or_query() -> None:
    assert redact_url("https://user:pw@hooks.example:8443/in?token=x") == (
        "https://hooks.example:8443/in"
    )


@pytest.mark.parametrize("stored", ["http://[::1", "http://h:99999/x", "http://h:abc/"])
def test_a_url_stored_before_creation_refused_it_is_still_logged(stored: str) -> None:
    # The delivery worker records a failed attempt with it; it must not raise there
    assert redact_url(stored) == "(a URL that cannot be parsed)"


_hosts = st.one_of(
    st.lists(st.integers(0, 999).map(lambda n: f"{n:0{n % 4 + 1}d}"), min_size=4, max_size=4).map(
        ".".join
    ),
    st.sampled_from(
        [
            "example.test",
            "[::1]",
            "[zz]",
            "[fe80::1%25eth0]",
            "localhost",
            "0x7f.1",
            "[::1]x",
            "[::1]]",
            "\u2603.com",
            "xn--",
            "ab\u200d.com",
            "\uff11.\uff12.\uff13.\uff14",
        ]
    ),
    st.from_regex(r"[a-z0-9.\-]{1,20}", fullmatch=True),
)


@given(host=_hosts, port=st.one_of(st.none(), st.integers(0, 70000)))
def test_every_url_a_subscription_takes_is_one_the_http_client_can_send_to(
    host: str, port: int | None
) -> None:
    # the client refused some hosts the subscription took (0177.0.0.1): every delivery failed
    url = f"http://{host}{'' if port is None else f':{port}'}/hook"
    if webhooks._sendable(url):
        assert httpx.URL(url).host  # raises for what the worker could never send to
