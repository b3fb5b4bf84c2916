"""The service hashes secrets and passwords at a real cost, whatever the tests use.

The suite's own process hashes cheaply (tests/conftest.py); this holds the hashers the service
ships with to OWASP's minimum for argon2id (19 MiB, 2 passes), so that shortcut cannot leak
into the product unnoticed."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from tests.conftest import SERVICE_HASHERS


@pytest.mark.parametrize("hasher", SERVICE_HASHERS, ids=["client-secrets", "console-passwords"])
def test_the_service_hashes_with_argon2id_at_owasp_cost_or_more(hasher: PasswordHasher) -> None:
    # given the hasher a module of the service made for itself
    # when it hashes a secret
    made = extract_parameters(hasher.hash("a-secret-of-some-length"))

    # then the hash is argon2id at 19 MiB and 2 passes or more
    assert made.type is Type.ID
    assert made.memory_cost >= 19 * 1024 and made.time_cost >= 2
