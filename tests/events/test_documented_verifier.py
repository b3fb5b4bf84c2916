"""The signature check printed in the README and docs/events.md verifies real signatures."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from coupons.services.webhooks import sign
from coupons.services.webhooks import verify as service_verify

ROOT = Path(__file__).resolve().parents[2]


def documented_verify(path: Path) -> Any:
    """The `def verify` Python block of a document, executed."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    [source] = [b for b in blocks if "def verify(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace["verify"]


@pytest.mark.parametrize("document", ["README.md", "docs/events.md"])
def test_the_documented_verifier_accepts_a_delivery_and_rejects_tampering(document: str) -> None:
    verify = documented_verify(ROOT / document)
    secret, body, now = "whsec-test-0123456789", b'{"webhookId": 1, "events": []}', int(time.time())
    header = sign(secret, body, now)

    assert verify(secret, header, body) is True
    assert verify(secret, header, body.replace(b"1", b"2")) is False
    assert verify("another-secret", header, body) is False
    assert verify(secret, sign(secret, body, now - 600), body) is False
    assert verify(secret, "v1=deadbeef", body) is False
    # a header is whatever the sender wrote: text past ASCII is a wrong signature, not an error
    assert verify(secret, f"t={now},v1=\u00e9", body) is False


def test_the_service_verifier_calls_a_signature_past_ascii_wrong_rather_than_failing() -> None:
    secret, body, now = "whsec-test-0123456789", b"{}", int(time.time())

    assert service_verify(secret, sign(secret, body, now), body) is True
    assert service_verify(secret, f"t={now},v1=\u00e9\u00e9", body) is False
    assert service_verify(secret, f"t={now},v1=\ud800", body) is False
