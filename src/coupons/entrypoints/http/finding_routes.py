"""Routes for finding things (spec §7): lists, code search, the revocations trail, and their
CSV exports (`Accept: text/csv`, or the same path ending in `.csv`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from coupons.domain import errors
from coupons.domain.model import Coupon, CouponState, StateChange
from coupons.domain.paging import DEFAULT_LIMIT, MAX_LIMIT, Page
from coupons.domain.records import EventRecord
from coupons.domain.trail import Revocation, TrailFilter
from coupons.entrypoints.http import csv_export, render
from coupons.entrypoints.http.deps import ReadActor
from coupons.entrypoints.http.envelope import JSON
from coupons.entrypoints.http.middleware import request_id_of
from coupons.entrypoints.http.routes import (
    ERRORS,
    CouponIdPath,
    IdPath,
    StatusQuery,
    perform,
)
from coupons.entrypoints.http.routing import IdRoute, QueryWhole, whole_query
from coupons.entrypoints.http.time_bounds import moment
from coupons.services import finding
from coupons.services.common import Actor, Context, utcnow
from coupons.services.ports import UnitOfWork

T = TypeVar("T")

# Every path parameter here is a number: a typo where one goes is 404, as on the core routes.
router = APIRouter(route_class=IdRoute)

# Rows read per transaction while streaming an export: memory holds one page.
EXPORT_PAGE = 1000
COUPON_HEADER = ("couponId", "couponCode", "seriesId", "state", "issuedToUserId")
TRAIL_HEADER = (
    "requestId", "at", "actor", "reason", "revokedCount", "reinstatedCount", "jobId"
)  # fmt: skip
HISTORY_HEADER = (
    "couponId", "action", "fromState", "toState", "at", "actor", "requestId", "reason"
)  # fmt: skip

Limit = Annotated[
    QueryWhole, *whole_query(1, MAX_LIMIT, description=f"rows per page (1 to {MAX_LIMIT})")
]
After = Annotated[
    # Empty is not given, as for every filter: the first page (a form or a template that
    # always sends `after=` was refused with 9002). Inside the type: FastAPI applies a
    # `Query` constraint after every validator, to the None that empty becomes.
    Annotated[str, StringConstraints(max_length=600), AfterValidator(lambda v: v or None)] | None,
    Query(description="the `nextCursor` of the previous page, unchanged (empty: the first page)"),
]
Reader = Callable[[UnitOfWork, Context, str | None, int], Page[T]]


def wants_csv(request: Request) -> bool:
    """`Accept: text/csv` asks for the export of a list (JSON stays the default). The answer
    then depends on `Accept`, and says so (`Vary`, set by the edge) so that no cache hands
    one client's CSV to another asking for JSON."""
    request.state.varies_by_accept = True
    return prefers_csv(request.headers.get("accept", ""))


def prefers_csv(accept: str) -> bool:
    """Whether an `Accept` header prefers CSV to the JSON envelope, by its quality values.

    JSON is the default: CSV only when `text/csv` is named with a quality above zero, above
    that of `application/json` if that is named too (a tie keeps JSON), and at least that of
    any wildcard (`*/*`, `application/*`), which a named type beats on a tie
    (`text/csv, */*` is a CSV client). A quality that is not a number counts as 1, as a
    missing one does; a malformed part is skipped rather than refused.
    """
    csv = json = wildcard = None
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        q = _quality(params)
        if media == "text/csv":
            csv = max(csv or 0.0, q)
        elif media == "application/json":
            json = max(json or 0.0, q)
        elif media in ("*/*", "application/*"):
            wildcard = max(wildcard or 0.0, q)
    if not csv:
        return False
    return (json is None or csv > json) and (wildcard is None or csv >= wildcard)


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 1.0
            return min(1.0, q) if q >= 0 else 0.0  # NaN compares false: counted as 0
    return 1.0


def _json_doc(entity: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    envelope = {"entity": entity, "warnings": [], "errors": [], "success": True}
    return {**ERRORS, 200: {"content": {JSON: {"example": envelope}}}}


COUPON_EXAMPLE = {
    "couponId": 17, "couponCode": "SPRING-001", "seriesId": 3, "state": "ISSUED",
    "issuedToUserId": 977,
}  # fmt: skip
CURSOR_EXAMPLE = "WyJzZXJpZXMtY291cG9ucyIsMTdd"
SERIES_EXAMPLE = {
    "id": 3, "description": "Spring 15%", "clientHandlingType": "DISC_CODE",
    "genericCode": None, "validTill": "2030-12-31T23:59:59.999999Z", "discountType": "PERC",
    "discountValue": 15, "expired": False, "createdAt": "2026-11-26T04:00:00Z",
    "counts": {"AVAILABLE": 7, "ISSUED": 2, "REDEEMED": 0, "REVOKED": 1}, "totalCount": 10,
}  # fmt: skip
TRAIL_EXAMPLE = {
    "requestId": "9f1c0d2a6b4e4f7e8d7a3c1b2e0f9a8b", "at": "2026-11-26T04:17:33.512044Z",
    "actor": "pos-terminal-12", "reason": "leak #4411", "revokedCount": 50,
    "reinstatedCount": 2, "jobId": None,
}  # fmt: skip


def _csv_doc(example: str) -> dict[int | str, dict[str, Any]]:
    return {
        **ERRORS,
        200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": example}}},
    }


async def _page(
    request: Request, actor: Actor, read: Reader[T], render_page: Callable[[Page[T]], Any],
    after: str | None, limit: int,
) -> Response:  # fmt: skip
    return await perform(
        request,
        actor,
        lambda uow, ctx: read(uow, ctx, after, limit),
        lambda page, ctx: render_page(page),
        write=False,
    )


async def export(
    request: Request,
    actor: Actor,
    read: Reader[T],
    header: Sequence[str],
    row: Callable[[T], Sequence[csv_export.Cell]],
    filename: str,
    after: str | None = None,
) -> Response:
    """Stream every row `read` pages through, as CSV, one short read transaction a page.

    The first page is read before the answer starts, so a bad request or an unknown series
    is still an ordinary error envelope. Later pages are read as the client takes the bytes,
    each in its own transaction: keyset paging returns every row that existed when the export
    began exactly once, each as it was when its page was read.
    """
    db = request.app.state.db
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())

    def fetch(cursor: str | None) -> Page[T]:
        return db.run(lambda uow: read(uow, ctx, cursor, EXPORT_PAGE), write=False)  # type: ignore[no-any-return]

    first = await run_in_threadpool(fetch, after)

    def pages() -> Iterator[list[Sequence[csv_export.Cell]]]:
        page = first
        yield [row(item) for item in page.items]
        while page.next_cursor is not None:
            page = fetch(page.next_cursor)
            yield [row(item) for item in page.items]

    return csv_export.CsvStream(csv_export.stream(header, pages()), filename=filename)


def coupon_row(c: Coupon) -> Sequence[csv_export.Cell]:
    return (c.id, c.code, c.series_id, c.state.value, c.customer_id)


def trail_row(r: Revocation) -> Sequence[csv_export.Cell]:
    return (r.request_id, r.at, r.actor, r.reason, r.revoked_count, r.reinstated_count, r.job_id)


def _coupons_entity(page: Page[Coupon]) -> dict[str, Any]:
    return {"coupons": [render.coupon(c) for c in page.items], "nextCursor": page.next_cursor}


# --- series --------------------------------------------------------------------------------


@router.get(
    "/v2/coupon/series",
    tags=["finding"],
    responses=_json_doc({"series": [SERIES_EXAMPLE], "nextCursor": None}),
)
async def list_series(
    request: Request, actor: ReadActor, limit: Limit = DEFAULT_LIMIT, after: After = None
) -> Response:
    """The org's series, newest first, each with its coupon counts per state."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: finding.list_series(uow, ctx, limit, after),
        lambda page, ctx: {
            "series": [render.series(s.series, s.counts, ctx.now) for s in page.items],
            "nextCursor": page.next_cursor,
        },
        write=False,
    )


StateQuery = Annotated[
    str | None,
    Query(
        max_length=20,
        description="AVAILABLE, ISSUED, REDEEMED or REVOKED (default: all)",
        json_schema_extra={"enum": [state.value for state in CouponState]},
    ),
]


def _series_reader(series_id: int, state: str | None) -> Reader[Coupon]:
    return lambda uow, ctx, after, limit: finding.series_coupons(
        uow, ctx, series_id, state, limit, after
    )


@router.get(
    "/v2/coupon/series/{id}/coupons.csv",
    tags=["finding"],
    responses=_csv_doc(
        "couponId,couponCode,seriesId,state,issuedToUserId\r\n17,SPRING-001,3,ISSUED,977\r\n"
    ),
)
async def export_series_coupons(
    series_id: IdPath,
    request: Request,
    actor: ReadActor,
    state: StateQuery = None,
    after: After = None,
) -> Response:
    """Every coupon of a series (in one state, if given) as CSV, in id order; after a list
    page's `nextCursor`, if given."""
    return await export(
        request, actor, _series_reader(series_id, state), COUPON_HEADER, coupon_row,
        f"series-{series_id}-coupons.csv", after,
    )  # fmt: skip


@router.get(
    "/v2/coupon/series/{id}/coupons",
    tags=["finding"],
    responses=_json_doc({"coupons": [COUPON_EXAMPLE], "nextCursor": CURSOR_EXAMPLE}),
)
async def series_coupons(
    series_id: IdPath,
    request: Request,
    actor: ReadActor,
    state: StateQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> Response:
    """A page of a series' coupons in id order; `Accept: text/csv` exports them all."""
    if wants_csv(request):
        return await export_series_coupons(series_id, request, actor, state, after)
    return await _page(
        request, actor, _series_reader(series_id, state), _coupons_entity, after, limit
    )


# --- customers (the JSON list lives with the other customer routes) -------------------------


def _customer_reader(customer_id: int, status: str) -> Reader[Coupon]:
    return lambda uow, ctx, after, limit: finding.customer_coupons(
        uow, ctx, customer_id, status, limit, after
    )


@router.get(
    "/v2/customers/{id}/coupons.csv",
    tags=["finding"],
    responses=_csv_doc(
        "couponId,couponCode,seriesId,state,issuedToUserId\r\n24,SPRING-002,3,REVOKED,977\r\n"
    ),
)
async def export_customer_coupons(
    customer_id: IdPath,
    request: Request,
    actor: ReadActor,
    status: StatusQuery = "ALL",
) -> Response:
    """A customer's coupons (ACTIVE, REDEEMED, REVOKED or ALL) as CSV, in id order."""
    return await export(
        request, actor, _customer_reader(customer_id, status), COUPON_HEADER, coupon_row,
        f"customer-{customer_id}-coupons.csv",
    )  # fmt: skip


# --- search --------------------------------------------------------------------------------


@router.get(
    "/v2/coupon/search",
    tags=["finding"],
    responses=_json_doc({"coupons": [COUPON_EXAMPLE], "nextCursor": None}),
)
async def search_coupons(
    request: Request,
    actor: ReadActor,
    code: Annotated[str | None, Query(max_length=100, description="exact code, any case")] = None,
    code_prefix: Annotated[
        str | None,
        Query(
            alias="codePrefix",
            max_length=100,
            description="at least 3 characters",
            json_schema_extra={"minLength": 3},
        ),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> Response:
    """Coupons of every series of the org by code (case-insensitive), or by code prefix."""

    _no_nul("code", code)
    _no_nul("codePrefix", code_prefix)

    def read(uow: UnitOfWork, ctx: Context, cursor: str | None, size: int) -> Page[Coupon]:
        return finding.search_coupons(uow, ctx, code, code_prefix, size, cursor)

    return await _page(request, actor, read, _coupons_entity, after, limit)


# --- the revocations trail -----------------------------------------------------------------

Since = Annotated[
    str | None,
    Query(
        max_length=40, description="from this time on: YYYY-MM-DD or ISO-8601 (UTC if no offset)"
    ),
]
Until = Annotated[
    str | None,
    Query(max_length=40, description="before this time; a bare date includes that whole day"),
]
ActorQuery = Annotated[str | None, Query(max_length=200, description="who revoked")]


def _no_nul(name: str, value: str | None) -> None:
    # PostgreSQL cannot compare text holding NUL: refuse it as a 400, never a 500.
    if value is not None and "\x00" in value:
        raise errors.InvalidField(name, "must not contain NUL characters")


def _trail_reader(actor: str | None, since: str | None, until: str | None) -> Reader[Revocation]:
    _no_nul("actor", actor)
    where = TrailFilter(
        actor=actor or None,
        since=moment("since", since, end_of_day=False),
        until=moment("until", until, end_of_day=True),
    )
    return lambda uow, ctx, after, limit: finding.revocations(uow, ctx, where, limit, after)


@router.get(
    "/v2/coupon/revocations.csv",
    tags=["finding"],
    responses=_csv_doc(
        "requestId,at,actor,reason,revokedCount,reinstatedCount,jobId\r\n"
        "9f1c0d2a6b4e4f7e8d7a3c1b2e0f9a8b,2026-11-26T04:17:33.512044Z,pos-terminal-12,"
        "leak #4411,50,2,\r\n"
    ),
)
async def export_revocations(
    request: Request,
    actor: ReadActor,
    by: Annotated[str | None, Query(alias="actor", max_length=200)] = None,
    since: Since = None,
    until: Until = None,
    after: After = None,
) -> Response:
    """The revocations trail as CSV, newest first; after a list page's `nextCursor`, if
    given."""
    return await export(
        request, actor, _trail_reader(by, since, until), TRAIL_HEADER, trail_row,
        "revocations.csv", after,
    )  # fmt: skip


@router.get(
    "/v2/coupon/revocations",
    tags=["finding"],
    responses=_json_doc({"revocations": [TRAIL_EXAMPLE], "nextCursor": None}),
)
async def list_revocations(
    request: Request,
    actor: ReadActor,
    by: Annotated[str | None, Query(alias="actor", max_length=200)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> Response:
    """One row per revoke call or job that revoked something, newest first: who, when, why,
    how many, and how many were reinstated since. `requestId` is what
    `POST /v2/coupon/reinstate {"revokeRequestId"}` undoes."""
    if wants_csv(request):
        return await export_revocations(request, actor, by, since, until, after)
    return await _page(
        request,
        actor,
        _trail_reader(by, since, until),
        lambda page: {
            "revocations": [render.revocation(r) for r in page.items],
            "nextCursor": page.next_cursor,
        },
        after,
        limit,
    )


# --- every coupon's history over a time range ---------------------------------------------

HISTORY_RANGE_HEADER = (
    "id", "couponId", "couponCode", "seriesId", "customerId", "action", "fromState", "toState",
    "at", "actor", "requestId", "reason",
)  # fmt: skip
HISTORY_ENTRY_EXAMPLE = {
    "id": 5120, "couponId": 24, "couponCode": "SPRING-002", "seriesId": 3, "customerId": 977,
    "action": "REVOKE", "fromState": "ISSUED", "toState": "REVOKED",
    "at": "2026-11-26T04:17:33.512044Z", "actor": "pos-terminal-12",
    "requestId": "9f1c0d2a6b4e4f7e8d7a3c1b2e0f9a8b", "reason": "leak #4411",
}  # fmt: skip


def _history_reader(since: str | None, until: str | None) -> Reader[EventRecord]:
    start = moment("since", since, end_of_day=False)
    end = moment("until", until, end_of_day=True)
    return lambda uow, ctx, after, limit: finding.history_range(uow, ctx, start, end, limit, after)


def history_row(e: EventRecord) -> Sequence[csv_export.Cell]:
    return (
        e.id,
        e.coupon_id,
        e.code,
        e.series_id,
        e.customer_id,
        e.action.value if e.action else None,
        e.from_state.value if e.from_state else None,
        e.to_state.value if e.to_state else None,
        e.at,
        e.actor,
        e.request_id,
        e.reason,
    )


def _history_entry(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "couponId": e.coupon_id,
        "couponCode": e.code,
        "seriesId": e.series_id,
        "customerId": e.customer_id,
        "action": e.action.value if e.action else None,
        "fromState": e.from_state.value if e.from_state else None,
        "toState": e.to_state.value if e.to_state else None,
        "at": render.timestamp(e.at),
        "actor": e.actor,
        "requestId": e.request_id,
        "reason": e.reason,
    }


@router.get(
    "/v2/coupon/history.csv",
    tags=["finding"],
    responses=_csv_doc(
        "id,couponId,couponCode,seriesId,customerId,action,fromState,toState,at,actor,requestId,"
        "reason\r\n"
        "5120,24,SPRING-002,3,977,REVOKE,ISSUED,REVOKED,2026-11-26T04:17:33.512044Z,pos-terminal-12,"
        "9f1c0d2a6b4e4f7e8d7a3c1b2e0f9a8b,leak #4411\r\n"
    ),
)
async def export_history(
    request: Request,
    actor: ReadActor,
    since: Since = None,
    until: Until = None,
    after: After = None,
) -> Response:
    """Every coupon history entry of the org from `since` to `until`, oldest first, as CSV;
    after a list page's `nextCursor`, if given."""
    return await export(
        request, actor, _history_reader(since, until), HISTORY_RANGE_HEADER, history_row,
        "history.csv", after,
    )  # fmt: skip


@router.get(
    "/v2/coupon/history",
    tags=["finding"],
    responses=_json_doc({"history": [HISTORY_ENTRY_EXAMPLE], "nextCursor": None}),
)
async def list_history(
    request: Request,
    actor: ReadActor,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> Response:
    """Every coupon's state changes over a time range, oldest first, across series: the
    audit log an auditor reads for a month. `Accept: text/csv` exports it all."""
    if wants_csv(request):
        return await export_history(request, actor, since, until, after)
    return await _page(
        request,
        actor,
        _history_reader(since, until),
        lambda page: {
            "history": [_history_entry(e) for e in page.items],
            "nextCursor": page.next_cursor,
        },
        after,
        limit,
    )


# --- a coupon's history --------------------------------------------------------------------


@router.get(
    "/v2/coupon/{couponId}.csv",
    tags=["finding"],
    responses=_csv_doc(
        "couponId,action,fromState,toState,at,actor,requestId,reason\r\n"
        "24,REVOKE,ISSUED,REVOKED,2026-11-26T04:17:33.512044Z,pos-1,9f1c0d2a,'=leak\r\n"
    ),
)
async def export_coupon_history(
    coupon_id: CouponIdPath, request: Request, actor: ReadActor
) -> Response:
    """A coupon's history as CSV, oldest first: the whole of it. It takes no paging or
    filter: one sent (as the other exports take them) is 9002, as any parameter a route does
    not take."""

    def read(uow: UnitOfWork, ctx: Context, cursor: str | None, size: int) -> Page[StateChange]:
        return Page(finding.coupon_history(uow, ctx, coupon_id), None)

    def row(h: StateChange) -> Sequence[csv_export.Cell]:
        return (
            coupon_id,
            h.action.value,
            h.from_state.value if h.from_state else None,
            h.to_state.value,
            h.at,
            h.actor,
            h.request_id,
            h.reason,
        )

    return await export(
        request, actor, read, HISTORY_HEADER, row, f"coupon-{coupon_id}-history.csv"
    )


def install(main: APIRouter) -> None:
    """Put these routes into the main router just before `GET /v2/coupon/{couponId}`, which
    would otherwise take `search`, `series`, `revocations.csv` or `12.csv` for a coupon id.
    Revoke stays the first route tried (see the end of `routes.py`). Safe to call again."""
    if any(route in main.routes for route in router.routes):
        return
    at = next(
        i
        for i, route in enumerate(main.routes)
        if getattr(route, "path", None) == "/v2/coupon/{couponId}"
    )
    main.routes[at:at] = router.routes
