"""Webhook URLs: refused at creation when no delivery could use them; logged without secrets."""

from __future__ import annotations

import pytest

from coupons.services.webhooks import redact_url


def test_a_url_is_logged_without_its_user_info_or_query() -> None:
    assert redact_url("https://user:pw@hooks.example:8443/in?token=x") == (
        "https://hooks.example:8443/in"
    )


@pytest.mark.parametrize("stored", ["http://[::1", "http://h:99999/x", "http://h:abc/"])
def test_a_url_stored_before_creation_refused_it_is_still_logged(stored: str) -> None:
    # The delivery worker records a failed attempt with it; it must not raise there
    assert redact_url(stored) == "(a URL that cannot be parsed)"
