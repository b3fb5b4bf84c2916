"""API clients, secrets, tokens and access groups (spec §2).

Secrets are stored only as argon2 hashes. Argon2 is slow on purpose, so a successful Basic
check is remembered in memory, keyed by the stored hash and a SHA-256 of the presented secret:
the next request with the same credentials skips argon2, and a changed secret misses the cache.

The client row itself is remembered for a second (`CLIENT_CACHE_SECONDS`), by username and by
id, so a busy client costs no database read per request. A disable or a secret change made
anywhere (another worker, the CLI) therefore takes effect within about a second: the row is
read again once its entry is older than that, and the hash check is keyed by the stored hash,
so a wrong or superseded secret is never accepted from the cache.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from coupons.domain import errors
from coupons.domain.records import ClientRecord
from coupons.services.common import Actor, utcnow
from coupons.services.ports import Transactions, UnitOfWork

# The name prefix of a console person's own API client (`services.people`): ':' cannot appear
# in a client's name (Basic auth splits on it), and its secret is random and never shown, so
# it never signs in to the API; it only gives records that name an API client (idempotency
# keys, revoke jobs) a client to name.
PERSON_CLIENT_PREFIX = "console:"

GROUPS = ("default", "coupon_admin", "read_only")

# What each access group may do.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read_only": frozenset({"read"}),
    "default": frozenset({"read", "customers", "issue", "redeem", "revoke", "reinstate"}),
    "coupon_admin": frozenset(
        {"read", "customers", "issue", "redeem", "revoke", "reinstate", "admin"}
    ),
}

SIGNING_KEY_NAME = "token_signing_key"
# How long a client row read for authentication is trusted (see the module docstring).
CLIENT_CACHE_SECONDS = 1.0
_CACHE_LIMIT = 10_000
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the username is unknown, so timing does not reveal it."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    """Whether `secret` is the one `secret_hash` was made from (slow: argon2)."""
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def secret_version(secret_hash: str) -> str:
    """A short fingerprint of a client's current secret, carried in its tokens: a reset
    secret changes it, so tokens issued under the old secret stop working at once."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()[:16]


def new_secret() -> str:
    return secrets.token_urlsafe(24)


MIN_CHOSEN_SECRET = 8


def chosen_or_new_secret(password: str | None) -> str:
    """The password an operator chose, or a generated one when none was given. A chosen one
    is at least 8 characters: `--password ''` silently got a generated secret, and a
    one-letter password was taken."""
    if password is None:
        return new_secret()
    if len(password) < MIN_CHOSEN_SECRET:
        raise errors.InvalidField(
            "password",
            f"must be at least {MIN_CHOSEN_SECRET} characters (leave it out to have one generated)",
        )
    return password


def parse_groups(value: str | Iterable[str]) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    groups = frozenset(g.strip() for g in items if g.strip())
    unknown = groups - set(GROUPS)
    if unknown or not groups:
        raise ValueError(f"unknown access group(s): {', '.join(sorted(unknown)) or '(none)'}")
    if "read_only" in groups and len(groups) > 1:
        # Groups add up, so read_only beside another would mean nothing: the client could
        # write, while its groups said it reads only.
        raise ValueError("read_only cannot be combined with another group (groups add up)")
    return groups


def require(actor: Actor, permission: str) -> None:
    """9011 unless one of the caller's groups allows `permission`."""
    if not any(permission in PERMISSIONS.get(g, frozenset()) for g in actor.groups):
        raise errors.AccessDenied()


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: int


class FailureThrottle:
    """Counts failed logins per username and per address in a sliding window.

    Memory stays bounded whoever sends what: only a failed login (an argon2 check's worth
    of work) adds a key, a long key is kept as its digest, and past `max_keys` the keys
    that failed longest ago are let go, so a spray of usernames never lifts a lockout that
    is still being earned."""

    def __init__(self, limit: int, window_seconds: int, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        # By the time of each key's last failure, oldest first (a dict keeps its order).
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(64)]

    def _recent(self, key: str, now: float) -> deque[float] | None:
        entries = self._failures.get(key)
        if entries is None:
            return None
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._failures[key]
            return None
        return entries

    def check(self, *keys: str) -> None:
        """429 while any key has too many recent failures."""
        now = time.monotonic()
        with self._lock:
            for key in map(_bounded, keys):
                entries = self._recent(key, now)
                if entries is not None and len(entries) >= self.limit:
                    retry = max(1, int(entries[0] + self.window - now) + 1)
                    raise errors.TooManyAuthFailures(retry)

    @contextmanager
    def one_at_a_time(self, key: str) -> Iterator[None]:
        """Run a check, verify and count for `key` alone: attempts sent at once then each see
        the failures of those before them (checked side by side, sixteen wrong passwords sent
        together were all tried against a limit of three). Keys share 64 locks, so memory
        stays fixed; an attempt that waits here has not been checked yet."""
        with self._stripes[hash(_bounded(key)) % len(self._stripes)]:
            yield

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in map(_bounded, keys):
                entries = self._recent(key, now) or deque()
                entries.append(now)
                while len(entries) > max(self.limit, 1):  # more say nothing more
                    entries.popleft()
                self._failures.pop(key, None)
                self._failures[key] = entries  # now the most recent
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]


def _bounded(key: str) -> str:
    """A throttle key of at most 80 characters: an 8 KB username is kept as its digest."""
    if len(key) <= 80:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class Authenticator:
    """Checks Basic credentials and tokens against the client table."""

    def __init__(
        self,
        db: Transactions,
        *,
        token_secret: str | None,
        token_ttl_seconds: int,
        throttle: FailureThrottle,
        client_cache_seconds: float = CLIENT_CACHE_SECONDS,
    ) -> None:
        self.db = db
        self.client_cache_seconds = client_cache_seconds
        # username / client id -> (monotonic time read, row); None rows are not kept.
        self._by_username: dict[str, tuple[float, ClientRecord]] = {}
        self._by_id: dict[int, tuple[float, ClientRecord]] = {}
        self.token_ttl = token_ttl_seconds
        self.throttle = throttle
        self._token_secret = token_secret
        self._verified: dict[tuple[int, str], bytes] = {}
        _dummy_hash()  # made now, so the first unknown username costs no more than later ones
        self._lock = threading.Lock()

    # --- Basic ----------------------------------------------------------------------------

    def check_secret(self, username: str, secret: str, address: str) -> ClientRecord:
        """The active client with these credentials, or 9010 (429 when throttled)."""
        keys = (f"user:{username}", f"addr:{address}")
        self.throttle.check(*keys)
        # No stored username holds NUL, and PostgreSQL refuses it in a query (a 500), so such a
        # name is simply unknown; it still costs an argon2 verify like any unknown name.
        client = None if "\x00" in username else self._client_by_username(username)
        # Verify first, whatever the lookup found: an unknown username must cost the same
        # argon2 work as a known one, or response time tells which usernames exist.
        verified = self._verify(client, secret)
        if client is None or not verified or not _may_sign_in(client):
            self.throttle.fail(*keys)
            raise errors.AuthenticationFailed()
        return client

    # --- from memory alone --------------------------------------------------------------
    # A busy client's requests are answered from the two caches below: no database read, no
    # argon2. These checks never block, so the HTTP edge runs them on the event loop and
    # sends only a miss (None) to a worker thread for the full check: a thread hop fewer per
    # request. A miss decides nothing, it only means "ask the full check".

    def cached_secret(self, username: str, secret: str, address: str) -> ClientRecord | None:
        """The client, when memory says these credentials are good; else None."""
        self.throttle.check(f"user:{username}", f"addr:{address}")
        client = self._cached(self._by_username, username)
        if client is None or not _may_sign_in(client):
            return None
        with self._lock:
            verified = self._verified.get((client.id, client.secret_hash))
        digest = hashlib.sha256(secret.encode()).digest()
        if verified is None or not hmac.compare_digest(verified, digest):
            return None
        return client

    def cached_token(self, token: str) -> ClientRecord | None:
        """The client of a valid token whose row is in memory; else None (a bad token too:
        the full check refuses it)."""
        if self._token_secret is None:
            return None
        try:
            claims = self._claims(token)
        except errors.AuthenticationFailed:
            return None
        client = self._cached(self._by_id, int(claims["sub"]))
        if client is None or not self._token_fits(client, claims):
            return None
        return client

    def _cached(
        self, table: dict[Any, tuple[float, ClientRecord]], key: Any
    ) -> ClientRecord | None:
        with self._lock:
            hit = table.get(key)
        if hit is None or time.monotonic() - hit[0] >= self.client_cache_seconds:
            return None
        return hit[1]

    def _verify(self, client: ClientRecord | None, secret: str) -> bool:
        digest = hashlib.sha256(secret.encode()).digest()
        if client is not None:
            key = (client.id, client.secret_hash)
            with self._lock:
                cached = self._verified.get(key)
            if cached is not None and hmac.compare_digest(cached, digest):
                return True
        try:
            _hasher.verify(client.secret_hash if client else _dummy_hash(), secret)
        except (VerificationError, InvalidHashError):
            return False
        if client is None:
            return False
        with self._lock:
            if len(self._verified) > _CACHE_LIMIT:
                self._verified.clear()
            self._verified[(client.id, client.secret_hash)] = digest
        return True

    # --- the client row, cached briefly ---------------------------------------------------

    def _client_by_username(self, username: str) -> ClientRecord | None:
        now = time.monotonic()
        with self._lock:
            hit = self._by_username.get(username)
        if hit is not None and now - hit[0] < self.client_cache_seconds:
            return hit[1]
        client = self.db.run(lambda uow: uow.clients.client_by_username(username), write=False)
        self._remember(now, client)
        return client

    def _client_by_id(self, client_id: int) -> ClientRecord | None:
        now = time.monotonic()
        with self._lock:
            hit = self._by_id.get(client_id)
        if hit is not None and now - hit[0] < self.client_cache_seconds:
            return hit[1]
        client = self.db.run(lambda uow: uow.clients.client_by_id(client_id), write=False)
        self._remember(now, client)
        return client

    def _remember(self, read_at: float, client: ClientRecord | None) -> None:
        # Unknown names are not remembered: a client created a moment ago works at once, and
        # a spray of made-up names cannot fill the cache.
        if client is None or self.client_cache_seconds <= 0:
            return
        with self._lock:
            if len(self._by_username) > _CACHE_LIMIT or len(self._by_id) > _CACHE_LIMIT:
                self._by_username.clear()
                self._by_id.clear()
            self._by_username[client.username] = (read_at, client)
            self._by_id[client.id] = (read_at, client)

    # --- tokens ---------------------------------------------------------------------------

    def signing_key(self) -> str:
        """The configured key, or one generated on first use and kept in the database."""
        if self._token_secret is None:
            self._token_secret = self.db.run(_load_or_create_key, retry_integrity=True)
        return self._token_secret

    def issue_token(self, username: str, secret: str, address: str) -> Token:
        client = self.check_secret(username, secret, address)
        now = utcnow()
        claims = {
            "sub": str(client.id),
            "org": client.org_id,
            # To the microsecond (a NumericDate may have a fraction): whole seconds could not
            # tell a token issued just before an enable from one just after it.
            "iat": now.timestamp(),
            "exp": int((now + timedelta(seconds=self.token_ttl)).timestamp()),
            "jti": secrets.token_hex(8),
            "sv": secret_version(client.secret_hash),
        }
        token = jwt.encode(claims, self.signing_key(), algorithm="HS256")
        return Token(access_token=token, expires_in=self.token_ttl)

    def check_token(self, token: str) -> ClientRecord:
        """The active client a valid, unexpired token was issued to, or 9010."""
        claims = self._claims(token)
        client = self._client_by_id(int(claims["sub"]))
        if client is None or not self._token_fits(client, claims):
            raise errors.AuthenticationFailed()
        return client

    def _claims(self, token: str) -> dict[str, Any]:
        """A token's claims if it is signed by us, unexpired and names a client id; else 9010."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.signing_key(),
                algorithms=["HS256"],
                options={"require": ["sub", "exp", "iat"]},
            )
            if not 0 < int(claims["sub"]) < 2**63:  # no client id: no database lookup
                raise ValueError("sub")
        except (jwt.PyJWTError, ValueError, TypeError):
            raise errors.AuthenticationFailed() from None
        return claims

    @staticmethod
    def _token_fits(client: ClientRecord, claims: dict[str, Any]) -> bool:
        """Active, of the org the token names, its secret not reset and the client not
        disabled or enabled since the token (a token of whole seconds, as issued before
        `iat` had a fraction, counts as issued at the start of its second)."""
        return (
            _may_sign_in(client)
            and client.org_id == claims.get("org")
            and claims.get("sv") == secret_version(client.secret_hash)
            and (
                client.tokens_after is None
                or float(claims.get("iat", 0)) > client.tokens_after.timestamp()
            )
        )


def _may_sign_in(client: ClientRecord) -> bool:
    """Active, and no console person's own client (whose secret nobody is meant to know)."""
    return client.is_active and not client.username.startswith(PERSON_CLIENT_PREFIX)


def _load_or_create_key(uow: UnitOfWork) -> str:
    existing = uow.clients.service_key(SIGNING_KEY_NAME)
    if existing is not None:
        return existing
    key = secrets.token_urlsafe(48)
    uow.clients.add_service_key(SIGNING_KEY_NAME, key)  # a racing twin is retried, then reads ours
    uow.commit()
    return key


def actor_of(client: ClientRecord) -> Actor:
    return Actor(
        org_id=client.org_id,
        client_id=client.id,
        username=client.username,
        groups=client.groups,
    )
