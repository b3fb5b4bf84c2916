"""Sign-in and sign-out, search, coupon and customer pages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from coupons.domain import errors
from coupons.domain.model import Series
from coupons.domain.people import Person
from coupons.entrypoints.console.web import (
    COOKIE,
    PREFIX,
    check_origin,
    checked_form,
    console_of,
    error_page,
    new_form_key,
    page,
    path_id,
    read,
    safe_next,
    session_token,
    signed_in,
    to_sign_in,
)
from coupons.entrypoints.http.deps import client_address
from coupons.entrypoints.http.middleware import nul_field
from coupons.services import lookup, people, revoke
from coupons.services.common import utcnow

Handler = Callable[[Request, Person], Awaitable[Response]]
NOTICES = {
    "reinstated": "Reinstated.",
    "signed-out": "You are signed out.",
    "session-ended": (
        "Your session has ended (signed out elsewhere, expired, or your access was removed); "
        "nothing was changed. Sign in to go on."
    ),
}


def needs_person(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The page for a signed-in person; anyone else goes to the sign-in page first.

    A path or query holding NUL, which PostgreSQL can neither store nor compare, is the API's
    9002 naming the parameter, as a page, before the page reads it (forms are checked where
    they are read, `web.checked_form`)."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        person = await signed_in(request)
        if person is None:
            return to_sign_in(request)
        field = nul_field(request.scope)
        if field is not None:
            raise errors.InvalidField(field, "must not contain NUL characters")
        return await handler(request, person)

    return endpoint


def notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


# --- sign in and out ---------------------------------------------------------------------


async def home(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/search", status_code=303)


async def sign_in_page(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return page(
        request,
        "signin.html",
        title="Sign in",
        next=safe_next(request.query_params.get("next")),
        email="",
        notice=notice(request),
    )


async def sign_in(request: Request) -> Response:
    form = await checked_form(request, None)
    email = str(form.get("email") or "")[:400]
    password = str(form.get("password") or "")[:1000]
    target = safe_next(str(form.get("next") or ""))
    console = console_of(request)
    try:
        done = await run_in_threadpool(
            lambda: people.sign_in(
                console.db,
                console.throttle,
                email=email,
                password=password,
                address=client_address(request),
                now=utcnow(),
                lifetime=console.session_lifetime,
            ),
        )
    except errors.TooManyAuthFailures as error:
        message = f"Too many failed sign-ins. Try again in {error.retry_after} seconds."
        refused = page(
            request,
            "signin.html",
            status=429,
            title="Sign in",
            next=target,
            email=email,
            error=message,
        )
        refused.headers["Retry-After"] = str(error.retry_after)
        return refused
    except errors.AuthenticationFailed:
        return page(
            request,
            "signin.html",
            status=401,
            title="Sign in",
            next=target,
            email=email,
            error="Wrong email or password.",
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        done.token,
        max_age=int(console.session_lifetime.total_seconds()),
        path=PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return response


async def sign_out(request: Request) -> Response:
    # Checked first: without a session (SameSite keeps the cookie off another site's post)
    # a page elsewhere could otherwise sign a person out by deleting the cookie.
    check_origin(request)
    person = await signed_in(request)
    token = session_token(request)
    if person is not None and token is not None:
        await checked_form(request, person)
        await run_in_threadpool(console_of(request).db.run, lambda uow: people.sign_out(uow, token))
    response = RedirectResponse(f"{PREFIX}/signin?notice=signed-out", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# --- search, coupon, customer ------------------------------------------------------------


@needs_person
async def search(request: Request, person: Person) -> Response:
    text = request.query_params.get("q", "").strip()[:320]
    after = _after(request)
    found = None
    if text:
        try:
            found = await read(
                request, person, lambda uow, ctx: lookup.search(uow, ctx, text, after)
            )
        except errors.CouponError as error:  # a cursor of another search, say
            return error_page(request, "Search", error, (f"{PREFIX}/search", "Search again"))
        hits = len(found.coupons) + len(found.customers)
        if hits == 1 and found.coupons and after is None and found.next_cursor is None:
            return RedirectResponse(f"{PREFIX}/coupons/{found.coupons[0].id}", status_code=303)
        if hits == 1 and found.customers:
            return RedirectResponse(f"{PREFIX}/customers/{found.customers[0].id}", status_code=303)
    more = None
    if found is not None and found.next_cursor:
        more = f"{PREFIX}/search?{urlencode({'q': text, 'after': found.next_cursor})}"
    return page(request, "search.html", title="Search", q=text, found=found, more=more)


def _after(request: Request) -> str | None:
    """A list page's cursor, as the API's lists take it (`nextCursor` of the page before)."""
    return request.query_params.get("after", "").strip()[:500] or None


@needs_person
async def coupon(request: Request, person: Person) -> Response:
    coupon_id = path_id(request, "coupon_id")
    try:
        detail = await read(
            request, person, lambda uow, ctx: lookup.coupon_detail(uow, ctx, coupon_id)
        )
    except errors.CouponError as error:
        return error_page(request, "Coupon", error)
    return page(
        request,
        "coupon.html",
        action_key=new_form_key(),
        title=f"Coupon {detail.coupon.code}",
        detail=detail,
        series_expired=detail.series.is_expired(utcnow()),
        refusal=_refusal(detail.series, utcnow()),
        notice=notice(request),
    )


@needs_person
async def customer(request: Request, person: Person) -> Response:
    customer_id = path_id(request, "customer_id")
    after = _after(request)
    try:
        detail = await read(
            request, person, lambda uow, ctx: lookup.customer_detail(uow, ctx, customer_id, after)
        )
    except errors.CouponError as error:
        return error_page(request, "Customer", error)
    now = utcnow()
    expired = {i for i, s in detail.series.items() if s.is_expired(now)}
    refused = {i for i, s in detail.series.items() if _refusal(s, now)}
    holder = detail.customer
    return page(
        request,
        "customer.html",
        title=" ".join(
            n for n in ("Customer", holder.first_name, holder.last_name, f"#{customer_id}") if n
        ),
        detail=detail,
        expired=expired,
        refused=refused,
        # "Select all unredeemed": every box a revoke may take comes ticked (no script), on
        # this page of the customer's coupons (a page is never more than a revoke may pick).
        pick_all=request.query_params.get("pick") == "all",
        this_page=f"{PREFIX}/customers/{customer_id}?"
        + urlencode({"pick": "all", **({"after": after} if after else {})}),
        more=f"{PREFIX}/customers/{customer_id}?{urlencode({'after': detail.next_cursor})}"
        if detail.next_cursor
        else None,
        # A code held twice (a GENERIC series' coupons share theirs): each box's name also
        # carries its coupon id, so a screen reader, or a test, can tell them apart.
        repeated={code for code, n in Counter(c.code for c in detail.coupons).items() if n > 1},
    )


def _refusal(series: Series, now: datetime) -> str | None:
    """Why the API would refuse to revoke any coupon of `series` (the revoke's own check:
    712, 811), so the page offers no revoke for it; None when it would not."""
    try:
        revoke.check_series(series, now)
    except errors.SeriesExpired:
        return "series expired"
    except errors.CouponError:
        return f"a {series.type.value} series' coupons cannot be revoked"
    return None


routes = [
    Route("/", home),
    Route("/signin", sign_in_page, methods=["GET"]),
    Route("/signin", sign_in, methods=["POST"]),
    Route("/signout", sign_out, methods=["POST"]),
    Route("/search", search),
    Route("/coupons/{coupon_id}", coupon),
    Route("/customers/{customer_id}", customer),
]
