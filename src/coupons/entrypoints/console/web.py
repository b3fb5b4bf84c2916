"""What every console page shares: templates, the signed-in person, CSRF and Origin checks,
and running a use case exactly as the API does.

Sessions: the cookie holds a random token; the database keeps its SHA-256 and expiry
(`services.people`), so any process serves any request, and sign-out or disabling a person
ends it at once. The CSRF token is an HMAC of the session token: fixed for the session,
never stored, and unguessable without the HttpOnly cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import SplitResult, quote, unquote, urlsplit

import jinja2
import orjson
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from coupons.adapters.sql_uow import Database
from coupons.domain import errors
from coupons.domain.people import Person
from coupons.entrypoints.http.middleware import answer_as, request_id_of, under_own_id
from coupons.services import people
from coupons.services.auth import FailureThrottle, require
from coupons.services.common import Context, same_secret, utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.runner import Idempotency, Rendered, execute

T = TypeVar("T")
log = structlog.get_logger("coupons.console")

COOKIE = "coupons_session"
MAX_ID = 2**62  # the API's bound on every id it takes
MAX_FORM_BYTES = 1024 * 1024
PREFIX = "/console"
# Sent with every console response (`app.SecurityHeaders`), pages and downloads alike.
SECURITY_HEADERS = {
    # Everything the pages use is served from here; nothing inline runs, nothing frames us.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the console will not act on (CSRF, Origin, role); nothing was changed."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Console:
    """The console's state, built once per app."""

    db: Database
    throttle: FailureThrottle
    session_lifetime: timedelta
    templates: jinja2.Environment


def console_of(request: Request) -> Console:
    state: Console = request.app.state.console
    return state


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"console-csrf", hashlib.sha256).hexdigest()


def session_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE)
    return token if token and len(token) <= 100 else None


async def signed_in(request: Request) -> Person | None:
    """The person whose unexpired session the cookie names, or None."""
    token = session_token(request)
    if token is None:
        return None
    db = console_of(request).db
    person = await run_in_threadpool(
        db.run, lambda uow: people.session_person(uow, token, utcnow()), write=False
    )
    if person is not None:
        request.state.person = person
        request.state.csrf = csrf_token(token)
    return person


def to_sign_in(request: Request) -> Response:
    """Send a signed-out browser to the sign-in page, remembering where it was going.

    A form sent without a session, a browser that still holds a session cookie, or a click
    on a console page's link (the browser drops an expired cookie, and sign-out in another
    tab deletes it) had a session that ended under it (signed out in another tab, expired,
    the person disabled): the page says so, and that nothing was changed, rather than
    showing a bare sign-in form after a click on "Confirm". A form goes back to the page it
    was sent from (a form's own address shows nothing)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    form = request.method not in ("GET", "HEAD")
    referer = _split(request.headers.get("referer", ""))
    sent_from = referer.path + (f"?{referer.query}" if referer.query else "")
    # Referrer-Policy `same-origin`: a Referer here was sent by one of this console's pages.
    from_a_page = sent_from.startswith(f"{PREFIX}/") and not sent_from.startswith(
        f"{PREFIX}/signin"
    )
    if form:
        target = sent_from if from_a_page else f"{PREFIX}/search"
    ended = form or bool(request.cookies.get(COOKIE)) or from_a_page
    ended_notice = "&notice=session-ended" if ended else ""
    return RedirectResponse(f"{PREFIX}/signin?next={_quote(target)}{ended_notice}", status_code=303)


def _split(url: str) -> SplitResult:
    """A header's URL in parts; one that does not parse (`http://[`, a bracketed host that is
    no IPv6 address, which `urlsplit` raises on) as one that names nothing."""
    try:
        return urlsplit(url)
    except ValueError:
        return urlsplit("")


def _quote(value: str) -> str:
    return quote(value, safe="/")


def safe_next(value: str | None) -> str:
    """Only a path inside the console: never an open redirect to another site, nor one that
    climbs out of the console by a dot segment (`/console/../v2/...`, also percent-encoded or
    with the tab or line break a browser drops)."""
    if (
        value
        and value.startswith(f"{PREFIX}/")
        and "\\" not in value
        and not urlsplit(value).netloc
        and not any(ord(c) < 0x20 or c == "\x7f" for c in value)
        and not _climbs(urlsplit(value).path)
    ):
        return value
    return f"{PREFIX}/search"


def _climbs(path: str) -> bool:
    """Whether a path holds a `.` or `..` segment once its percent-escapes are undone (a
    browser reads `%2e%2e` as `..`); escapes nested past a few levels count as climbing."""
    for _ in range(4):
        if any(part in (".", "..") for part in path.split("/")):
            return True
        decoded = unquote(path)
        if decoded == path:
            return "\\" in path
        path = decoded
    return True


def check_origin(request: Request) -> None:
    """A state-changing request must come from a page of this console: its Origin (or, when
    a browser sends none, its Referer) must name this host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host", "")
    if not origin or origin == "null" or _split(origin).netloc != host:
        raise Refused("This form was not sent from this console's own page; nothing was changed.")


async def checked_form(
    request: Request, person: Person | None, *, max_bytes: int = MAX_FORM_BYTES
) -> FormData:
    """The posted form, after the Origin check and (when signed in) the CSRF token check."""
    check_origin(request)
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        raise Refused("A form must say how long it is; nothing was changed.", 411) from None
    if declared > max_bytes:
        limit = f"{max_bytes // (1024 * 1024)} MiB"
        raise Refused(
            f"That is too much to send at once (limit {limit}); nothing was changed.", 413
        )
    try:
        # A pasted field may be as large as the form may be (Starlette's default caps each
        # field at 1 MiB: a long paste of codes was a bare 400 with the form lost).
        form = await request.form(max_part_size=max_bytes)
    except HTTPException as error:  # a body the form parser cannot read
        detail = f"This form could not be read ({error.detail}); nothing was changed."
        raise Refused(detail, 400) from None
    if person is not None:
        sent = form.get("csrf")
        expected = getattr(request.state, "csrf", "")
        if not isinstance(sent, str) or not same_secret(sent, expected):
            raise Refused(
                "This form has expired or was not sent by this console; nothing was changed."
            )
    for name, value in form.multi_items():
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL can neither store nor compare it: the API's 9002, as a page.
            raise errors.InvalidField(name, "must not contain NUL characters")
    return form


def form_reason(form: FormData) -> str:
    """The reason field as the person typed it: a browser sends each line break of a text
    area as CR LF, which would count twice against the API's 500 characters."""
    return str(form.get("reason") or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def path_id(request: Request, name: str) -> int:
    """A page address's id; 0 (which names nothing: the page's own "not found") for anything
    not written in ASCII digits. `isdigit` alone takes `²`, which `int` refuses, and `٣`,
    which `int` reads as 3, where the API refuses both."""
    raw = str(request.path_params[name])
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0


def form_id(field: str, raw: str) -> int | None:
    """The id a form field names, or None when it is empty. Anything else that is not a whole
    number in the API's range is the API's 9002, never read as "no id", which would widen
    what an action touches."""
    text = raw.strip()
    if not text:
        return None
    digits = text.lstrip("0")
    if text.isascii() and text.isdigit() and len(digits) <= len(str(MAX_ID)):
        value = int(digits or "0")  # not `text`: int() refuses past 4,300 digits, zeros too
        if 1 <= value <= MAX_ID:
            return value
    raise errors.InvalidField(field, f"must be a whole number from 1 to {MAX_ID}")


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with the layout's context: who is signed in, their CSRF token."""
    console = console_of(request)
    person: Person | None = getattr(request.state, "person", None)
    body = console.templates.get_template(template).render(
        person=person,
        csrf=getattr(request.state, "csrf", ""),
        can_revoke=person is not None and can(person, "revoke"),
        can_admin=person is not None and can(person, "admin"),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(body, status_code=status)  # `app.SecurityHeaders` adds the headers


def can(person: Person, permission: str) -> bool:
    """Whether the person's role allows it: the API's own group check."""
    try:
        require(people.actor_of(person), permission)
    except errors.AccessDenied:
        return False
    return True


def message_of(error: errors.CouponError) -> str:
    """An API error as a person reads it: the message, with the API's code for support, and
    what to do instead where the API's words (the vendor's) do not say."""
    text = error.message[:1].upper() + error.message[1:]
    hint = HINTS.get(type(error))
    return f"{text} (error {error.code}){hint or ''}"


# The vendor's message for 108 names a series setting; a person needs the way that works.
HINTS: dict[type[errors.CouponError], str] = {
    errors.GenericCodeNeedsCustomer: ". A GENERIC series' code is shared by all its holders, "
    "so it is revoked holder by holder: search for the customer and revoke their coupon.",
}


def error_page(
    request: Request, title: str, error: errors.CouponError, back: tuple[str, str] | None = None
) -> HTMLResponse:
    """An API error as a page: its message, its status (see `status_of`) and, for errors
    about timing, the API's `Retry-After`. An action's refusal links `back` (address, words)
    to the page it was sent from, to see the state that refused it."""
    response = page(
        request,
        "error.html",
        status=status_of(error),
        title=title,
        message=message_of(error),
        back=back,
    )
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def status_of(error: errors.CouponError) -> int:
    """The HTTP status a page shows an API error with: the API's own (a 503 outage stays a
    503, never a "not found"), and at least 400."""
    return max(error.http_status, 400)


def new_form_key() -> str:
    """A key for one rendered form that changes something: sent back with it, it makes the
    action happen once however often the form is sent (`call`'s `once`)."""
    return uuid.uuid4().hex


def form_once(form: FormData, action: str, *values: object) -> Idempotency | None:
    """The idempotency of a form's `action`, sent with the key its page was rendered with:
    sent again with the same `values`, it replays the first answer. The values are part of
    the key, so a form changed and sent again (someone went back and edited it) is simply
    another request, never a reused key. None for a form without a well-formed key."""
    key = str(form.get("form_key") or "")
    if not _FORM_KEY.fullmatch(key):
        return None
    digest = hashlib.sha256(orjson.dumps([action, *(str(v) for v in values)])).hexdigest()
    return Idempotency(key=f"console-form:{key}:{digest}", fingerprint=digest)


_FORM_KEY = re.compile(r"[0-9a-f]{32}")


async def call(
    request: Request,
    person: Person,
    use_case: Callable[[UnitOfWork, Context], T],
    entity: Callable[[T, Context], Any],
    *,
    permission: str = "read",
    dry_run: bool = False,
    write: bool = True,
    once: Idempotency | None = None,
) -> Any:
    """Run one use case through the API's runner (one transaction; a dry run or a read rolls
    back) as the person, and return the entity the API would answer with.

    With `once` (`form_once`), a form sent again (a double click, Back and send) answers what
    the first sending did, under its request id, and changes nothing more."""
    actor = people.actor_of(person)
    require(actor, permission)
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())

    async def run(ctx: Context) -> Rendered:
        return await run_in_threadpool(
            execute,
            console_of(request).db,
            ctx,
            lambda uow: use_case(uow, ctx),
            lambda result: orjson.dumps(entity(result, ctx)),
            idempotency=None if dry_run else once,
            dry_run=dry_run,
            write=write,
        )

    rendered = await under_own_id(request.scope, ctx, run)
    if rendered.replayed and rendered.request_id:
        answer_as(request.scope, rendered.request_id)
    request.state.replayed = rendered.replayed
    return orjson.loads(rendered.body)


async def read(request: Request, person: Person, use_case: Callable[[UnitOfWork, Context], T]) -> T:
    """Run a read-only use case as the person and return its result as it is."""
    actor = people.actor_of(person)
    require(actor, "read")
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
    return await run_in_threadpool(
        console_of(request).db.run, lambda uow: use_case(uow, ctx), write=False
    )
