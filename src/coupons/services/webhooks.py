"""Webhook subscriptions and their delivery: signed batches of events, in order, at least once.

A subscription keeps a cursor (the last event id it was sent). A delivery reads the events after
the cursor, POSTs them as one signed batch, and only a 2xx moves the cursor, so order holds per
subscription and a crash anywhere before that repeats the same events (same ids). Failures back
off exponentially with jitter; after `RetryPolicy.give_up_after` of failing the subscription is
DEAD until retried by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx

from coupons.domain import errors
from coupons.domain.paging import Page, decode_id_cursor, list_kind, page_of
from coupons.domain.records import DeliveryRecord, EventRecord, NewDelivery, WebhookRecord
from coupons.services import events as event_log
from coupons.services.common import Context, same_secret, utcnow
from coupons.services.ports import Transactions, UnitOfWork

SIGNATURE_HEADER = "X-Coupons-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_URL_LENGTH = 2000
MAX_DELIVERY_PAGE = 100
# The deliveries list, as its cursors name it.
DELIVERIES = "webhook-deliveries"

# A receiver answers with a status code; a failure to get one raises.
Post = Callable[[str, bytes, dict[str, str]], int]
# The body of one delivery, (webhook id, events) to bytes: the entrypoint owns the format.
RenderBody = Callable[[int, Sequence[EventRecord]], bytes]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, then dead-letter."""

    first_delay: timedelta = timedelta(seconds=5)
    max_delay: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(hours=24)

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
        """Wait before attempt `attempts + 1`: doubling, capped, scaled into [50%, 100%]."""
        # Capped in seconds, before it is a `timedelta`: 5 s doubled 44 times overflowed
        # `timedelta` before the cap applied, and the failed delivery went unrecorded.
        doubled = self.first_delay.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 64)
        base = timedelta(seconds=min(doubled, self.max_delay.total_seconds()))
        return base * (0.5 + 0.5 * rng())


@dataclass(frozen=True, slots=True)
class NewWebhook:
    url: str
    events: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: WebhookRecord
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery round did: DELIVERED, FAILED, DEAD, SKIPPED or NOTHING; `more` when
    the batch was full, so more events are likely waiting."""

    outcome: str
    event_count: int = 0
    more: bool = False


# --- signatures -----------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Coupons-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether `header` signs `body` with `secret` and is no older than `tolerance` seconds."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(same_secret(given, expected) for given in parts.get("v1", []))


def shown_url(url: str) -> str:
    """The URL as the API shows it: a password in it (for a receiver behind Basic auth) is
    `***`, as a stored secret is never shown again; deliveries still send it."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def redact_url(url: str) -> str:
    """The URL without user info, fit for logs and error messages. Never raises: a URL
    stored before creation refused unsendable ones must still get its failure recorded."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "(a URL that cannot be parsed)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- subscriptions (use cases) ----------------------------------------------------------------


def _check(new: NewWebhook) -> frozenset[str]:
    # The forbidden address first: said as such even in a spelling no delivery could send to
    # (0251.0376.0251.0376, octal for the metadata address).
    try:
        host = urlsplit(new.url).hostname or ""
    except ValueError:
        host = ""
    if forbidden_address(host):
        raise errors.InvalidField("url", f"{FORBIDDEN_TARGET} ({host})")
    if not _sendable(new.url):
        raise errors.InvalidField(
            "url", f"an http(s) URL a delivery can reach, of at most {MAX_URL_LENGTH} characters"
        )
    unknown = sorted(new.events - event_log.ALL_TYPES)
    if unknown:
        known = ", ".join(sorted(event_log.ALL_TYPES))
        raise errors.InvalidField("events", f"unknown event type {unknown[0]!r}; one of {known}")
    # No types named means every type, now and later.
    return new.events


FORBIDDEN_TARGET = "no receiver at a link-local, unspecified or cloud metadata address"
# Where clouds serve instance metadata and credentials outside the link-local ranges: AWS's
# IPv6 address, Alibaba Cloud's and Oracle Cloud's.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)


def forbidden_address(host: str) -> bool:
    """Whether `host`, an IP address, is one no webhook is sent to: link-local (169.254.0.0/16,
    fe80::/10, where clouds serve instance metadata and credentials) or unspecified (0.0.0.0,
    which reaches the worker's own host), in any of the forms a connection would take for it.
    Private and loopback addresses stay allowed: a self-hosted receiver usually sits there. A
    name is not an address (False); the worker checks what it resolves to."""
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and _forbidden(embedded):
            return True
    return _forbidden(address)


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_link_local or address.is_unspecified or address in METADATA_ADDRESSES


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    bare = host.strip("[]").split("%")[0].rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    # The older IPv4 spellings every resolver still reads: 0, 2852039166, 0xa9.0xfe.0xa9.0xfe,
    # 0251.0376.0251.0376 (whole numbers, hex or octal parts).
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


_NAT64 = int(ipaddress.IPv6Address("64:ff9b::")) >> 32


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    6to4 or NAT64 (64:ff9b::a.b.c.d)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if int(address) >> 32 in (0, _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _sendable(url: str) -> bool:
    """Whether the delivery worker can send to `url`: http(s), a host, a port in range, and
    no whitespace or control characters. What the standard parser lets through here it
    refuses later, at delivery time (a bracketed host left open, port 99999 or 'abc')."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is out of range or not a number
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return False
    # The HTTP client's own parser decides what a delivery can send to: taken here, a URL it
    # refuses (0177.0.0.1, [zz], a port after brackets, a host IDNA cannot encode) failed
    # every delivery. Decoding the host is where bad IDNA fails.
    try:
        httpx.URL(url).host  # noqa: B018
        # What the connection encodes: a label over 63 characters failed every delivery.
        parts.hostname.encode("idna")
    except Exception:
        return False
    return True


def create_webhook(uow: UnitOfWork, ctx: Context, new: NewWebhook) -> CreatedWebhook:
    """Subscribe a URL to the org's events from now on; the signing secret is shown once."""
    types = _check(new)
    secret = "whsec_" + secrets.token_urlsafe(32)
    webhook = uow.webhooks.add_webhook(
        org_id=ctx.org_id, url=new.url, events=types, secret=secret, now=ctx.now
    )
    return CreatedWebhook(webhook, secret)


def list_webhooks(uow: UnitOfWork, ctx: Context) -> list[WebhookRecord]:
    return uow.webhooks.webhooks_of_org(ctx.org_id)


def _owned(uow: UnitOfWork, ctx: Context, webhook_id: int) -> WebhookRecord:
    found = uow.webhooks.webhook(ctx.org_id, webhook_id)
    if found is None:
        raise errors.ResourceNotFound("webhook not found")
    return found


def delete_webhook(uow: UnitOfWork, ctx: Context, webhook_id: int) -> WebhookRecord:
    found = _owned(uow, ctx, webhook_id)
    uow.webhooks.delete_webhook(ctx.org_id, webhook_id)
    return found


def retry_webhook(uow: UnitOfWork, ctx: Context, webhook_id: int) -> WebhookRecord:
    """Put a dead (or backing-off) subscription back on schedule now."""
    _owned(uow, ctx, webhook_id)
    uow.webhooks.revive_webhook(webhook_id, ctx.now, org_id=ctx.org_id)
    return _owned(uow, ctx, webhook_id)


def retry_webhook_by_id(uow: UnitOfWork, webhook_id: int, now: datetime) -> bool:
    """The operator's retry (CLI): any org's subscription, by id."""
    return uow.webhooks.revive_webhook(webhook_id, now)


def deliveries(
    uow: UnitOfWork, ctx: Context, webhook_id: int, limit: int, after: str | None = None
) -> Page[DeliveryRecord]:
    """A subscription's delivery attempts, newest first, a page at a time: a receiver down
    for a day leaves more attempts than one page holds."""
    if not 1 <= limit <= MAX_DELIVERY_PAGE:
        raise errors.InvalidField("limit", f"must be 1 to {MAX_DELIVERY_PAGE}")
    _owned(uow, ctx, webhook_id)
    kind = list_kind(DELIVERIES, ctx.org_id, webhook_id)
    found = uow.webhooks.deliveries(webhook_id, limit + 1, before_id=decode_id_cursor(kind, after))
    return page_of(found, limit, kind, lambda d: (d.id,))


# --- delivery ---------------------------------------------------------------------------------


def claim(
    db: Transactions, owner: str, lease: timedelta, limit: int, now: datetime | None = None
) -> list[WebhookRecord]:
    """Lease due subscriptions with pending events for this worker."""
    at = now or utcnow()
    # Look first without the write lock (SQLite has one for the whole database): an idle
    # worker must not hold up the API's writers.
    if not db.run(lambda uow: uow.webhooks.due_webhooks(at, limit), write=False):
        return []

    def work(uow: UnitOfWork) -> list[WebhookRecord]:
        claimed = uow.webhooks.claim_webhooks(owner, at, at + lease, limit)
        uow.commit()
        return claimed

    return db.run(work)


def _wanted(webhook: WebhookRecord, types: Iterable[str]) -> list[bool]:
    return [not webhook.events or t in webhook.events for t in types]


def deliver(
    db: Transactions,
    webhook: WebhookRecord,
    owner: str,
    post: Post,
    *,
    render_body: RenderBody,
    policy: RetryPolicy,
    batch_size: int = 1000,
) -> DeliveryResult:
    """One round for a leased subscription: send the next batch and record what happened.

    No transaction is held while the receiver is called.
    """
    pending = db.run(
        lambda uow: uow.history.events(webhook.org_id, webhook.cursor, batch_size), write=False
    )
    if not pending:
        # Nothing readable yet (held back behind a transaction still open): no attempt was
        # made, so a failing subscription keeps its backoff and its dead-letter clock (a
        # success here had reset both); only the lease goes.
        _finish(db, webhook, owner, cursor=None, ok=None, now=utcnow(), policy=policy)
        return DeliveryResult("NOTHING")
    types = [event_log.event_type(e) for e in pending]
    batch = [e for e, keep in zip(pending, _wanted(webhook, types), strict=True) if keep]
    if not batch:
        # Nothing this subscription wants: move past it without calling the receiver.
        _finish(db, webhook, owner, cursor=pending[-1].id, ok=True, now=utcnow(), policy=policy)
        return DeliveryResult("SKIPPED", more=len(pending) == batch_size)
    body = render_body(webhook.id, batch)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(webhook.secret, body, timestamp),
        "User-Agent": "coupons-webhooks/1",
    }
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = post(webhook.url, body, headers)
        if not 200 <= status < 300:
            error = f"receiver answered HTTP {status}"
    except Exception as exc:  # any transport failure is a failed attempt, retried later
        error = f"{type(exc).__name__}: {exc}".replace(webhook.url, redact_url(webhook.url))
    duration_ms = int((time.monotonic() - started) * 1000)
    now = utcnow()
    outcome = _finish(
        db,
        webhook,
        owner,
        cursor=pending[-1].id if error is None else None,
        ok=error is None,
        now=now,
        policy=policy,
        error=error,
        delivery=lambda outcome: NewDelivery(
            webhook_id=webhook.id,
            first_event_id=batch[0].id,
            last_event_id=batch[-1].id,
            event_count=len(batch),
            attempt=webhook.attempts + 1,
            outcome=outcome,
            http_status=status,
            error=error[:500] if error else None,
            duration_ms=duration_ms,
            at=now,
        ),
    )
    return DeliveryResult(outcome, len(batch), more=len(pending) == batch_size)


def _finish(
    db: Transactions,
    webhook: WebhookRecord,
    owner: str,
    *,
    cursor: int | None,
    ok: bool | None,
    now: datetime,
    policy: RetryPolicy,
    error: str | None = None,
    delivery: Callable[[str], NewDelivery] | None = None,
) -> str:
    """Store the round's result (and its attempt record, once the outcome is known);
    `ok=None` is a round that attempted nothing: the schedule stays, the lease goes."""
    if ok is None:
        outcome, status, attempts = "NOTHING", webhook.status, webhook.attempts
        failing_since, next_at, error = (
            webhook.failing_since,
            webhook.next_attempt_at,
            webhook.last_error,
        )
    elif ok:
        outcome, status, attempts, failing_since, next_at = "DELIVERED", "ACTIVE", 0, None, now
    else:
        attempts = webhook.attempts + 1
        failing_since = webhook.failing_since or now
        if now - failing_since >= policy.give_up_after:
            outcome, status, next_at = "DEAD", "DEAD", now
        else:
            outcome, status = "FAILED", "ACTIVE"
            next_at = now + policy.delay(attempts)

    def work(uow: UnitOfWork) -> None:
        uow.webhooks.finish_delivery(
            webhook.id,
            owner,
            cursor=cursor,
            attempts=attempts,
            failing_since=failing_since,
            next_attempt_at=next_at,
            status=status,
            last_error=error[:500] if error else None,
        )
        if delivery is not None:
            uow.webhooks.add_delivery(delivery(outcome))
        uow.commit()

    db.run(work)
    return outcome
