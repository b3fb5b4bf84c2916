"""Activity (the revocations trail) and series pages, on the API's finding use cases."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coupons.domain import errors
from coupons.domain.model import CouponState, Series
from coupons.domain.paging import Page
from coupons.domain.people import Person
from coupons.domain.trail import Revocation
from coupons.entrypoints.console.pages import needs_person
from coupons.entrypoints.console.web import (
    PREFIX,
    call,
    error_page,
    message_of,
    new_form_key,
    page,
    path_id,
    status_of,
)
from coupons.entrypoints.http import finding_routes, render
from coupons.entrypoints.http.finding_routes import Reader
from coupons.services import finding, jobs, people, series
from coupons.services.common import Context
from coupons.services.ports import UnitOfWork

PAGE = 50
STATES = [s.value for s in CouponState]


def _text(request: Request, name: str, limit: int = 200) -> str:
    return request.query_params.get(name, "").strip()[:limit]


def _trail_page(
    uow: UnitOfWork, ctx: Context, reader: Reader[Revocation], after: str | None
) -> tuple[Page[Revocation], set[str]]:
    """A page of the trail, and which of its jobs can still be undone (one more read)."""
    found = reader(uow, ctx, after, PAGE)
    job_ids = [r.job_id for r in found.items if r.job_id]
    return found, jobs.undoable(uow, ctx, job_ids)


def _undoable(row: Revocation, undoable_jobs: set[str]) -> bool:
    """Whether the row's Undo would do something: a job's by the service's rule
    (`jobs.undoable`, which the job page asks too), a call's while some of what it revoked
    is still revoked."""
    if row.job_id:
        return row.job_id in undoable_jobs
    return row.revoked_count > row.reinstated_count


def _in_form_words(message: str) -> str:
    """A message naming the API's `since`/`until` by the form's own labels, From and To."""
    return re.sub(
        r"\b(since|until)\b",
        lambda m: "From" if m.group(1).lower() == "since" else "To",
        message,
        flags=re.IGNORECASE,
    )


@needs_person
async def activity(request: Request, person: Person) -> Response:
    """Revoke calls and jobs, newest first, filtered by person and dates."""
    filters = {name: _text(request, name) for name in ("actor", "since", "until")}
    after = _text(request, "after", 500) or None
    try:
        reader = finding_routes._trail_reader(
            filters["actor"] or None, filters["since"] or None, filters["until"] or None
        )
        entity = await call(
            request,
            person,
            lambda uow, ctx: _trail_page(uow, ctx, reader, after),
            lambda found, ctx: {
                "rows": [
                    {**render.revocation(r), "undoable": _undoable(r, found[1])}
                    for r in found[0].items
                ],
                "next": found[0].next_cursor,
            },
            write=False,
        )
    except errors.CouponError as error:
        return page(
            request,
            "activity.html",
            status=status_of(error),
            title="Activity",
            rows=[],
            filters=filters,
            next_url=None,
            error=_in_form_words(message_of(error)),
        )
    next_url = None
    if entity["next"]:
        query = {k: v for k, v in filters.items() if v}
        next_url = f"{PREFIX}/activity?{urlencode({**query, 'after': entity['next']})}"
    return page(
        request,
        "activity.html",
        action_key=new_form_key(),
        title="Activity",
        rows=entity["rows"],
        filters=filters,
        next_url=next_url,
    )


@needs_person
async def series_list(request: Request, person: Person) -> Response:
    after = _text(request, "after", 500) or None
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: finding.list_series(uow, ctx, PAGE, after),
            lambda found, ctx: {
                "series": [render.series(s.series, s.counts, ctx.now) for s in found.items],
                "next": found.next_cursor,
            },
            write=False,
        )
    except errors.CouponError as error:
        return error_page(request, "Series", error)
    next_url = f"{PREFIX}/series?{urlencode({'after': entity['next']})}" if entity["next"] else None
    return page(
        request,
        "series_list.html",
        title="Series",
        series=entity["series"],
        states=STATES,
        next_url=next_url,
    )


@needs_person
async def series_detail(request: Request, person: Person) -> Response:
    series_id = path_id(request, "series_id")
    state = _text(request, "state", 20).upper()
    after = _text(request, "after", 500) or None
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: (
                finding.series_coupons(uow, ctx, series_id, state or None, PAGE, after),
                _series(uow, ctx, series_id),
            ),
            lambda found, ctx: {
                "coupons": [render.coupon(c) for c in found[0].items],
                "next": found[0].next_cursor,
                "series": render.series(found[1][0], found[1][1], ctx.now),
            },
            write=False,
        )
    except errors.CouponError as error:
        return error_page(request, "Series", error)
    next_url = None
    if entity["next"]:
        query = {"state": state} if state else {}
        next_url = f"{PREFIX}/series/{series_id}?{urlencode({**query, 'after': entity['next']})}"
    return page(
        request,
        "series.html",
        title=entity["series"]["description"],
        s=entity["series"],
        coupons=entity["coupons"],
        states=STATES,
        chosen=state if state in STATES else "",
        next_url=next_url,
    )


def _series(uow: UnitOfWork, ctx: Context, series_id: int) -> tuple[Series, dict[CouponState, int]]:
    return series.get_series(uow, ctx, series_id)


@needs_person
async def series_export(request: Request, person: Person) -> Response:
    series_id = path_id(request, "series_id")
    state = _text(request, "state", 20).upper() or None
    try:
        return await finding_routes.export(
            request,
            people.actor_of(person),
            finding_routes._series_reader(series_id, state),
            finding_routes.COUPON_HEADER,
            finding_routes.coupon_row,
            f"series-{series_id}-coupons.csv",
        )
    except errors.CouponError as error:
        return error_page(request, "Export", error)


routes = [
    Route("/activity", activity),
    Route("/series", series_list),
    Route("/series/{series_id}", series_detail),
    Route("/series/{series_id}/coupons.csv", series_export),
]
