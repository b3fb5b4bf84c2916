"""Revoke (preview, confirm), undo by request id, and reinstate one coupon.

The preview is the API's dry run of the very call that "Confirm revoke" makes; both go
through `services.picked`, which names the picked coupons to `services.revoke` exactly as an
API client would. The result shows the API's entity (`revokedCoupons`, `failedToRevoke`).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from coupons.domain import errors
from coupons.domain.codes import CodeCase
from coupons.domain.model import Coupon
from coupons.domain.people import Person
from coupons.entrypoints.console.pages import needs_person
from coupons.entrypoints.console.web import (
    PREFIX,
    call,
    checked_form,
    error_page,
    form_id,
    form_once,
    form_reason,
    message_of,
    new_form_key,
    page,
    path_id,
    read,
    status_of,
)
from coupons.entrypoints.http import render
from coupons.entrypoints.http.middleware import request_id_of
from coupons.services import lookup, picked, revoke

MAX_REASON = 500
REVOKED = ("revokedCoupons", "failedToRevoke")
REINSTATED = ("reinstatedCoupons", "failedToReinstate")


def _ids(values: list[str]) -> list[int]:
    """The picked coupon ids; a value that is no id is refused (9002), never skipped, so
    what is revoked is exactly what was picked."""
    ids = sorted({i for i in (form_id("coupon", v) for v in values) if i is not None})
    if len(ids) > picked.MAX_PICKED:
        # Refused before anything is listed: a page of the first picks would count those
        # alone, and leave the rest out without a word.
        raise errors.InvalidField(
            "coupons",
            f"{len(ids)} picked; pick at most {picked.MAX_PICKED}, or use a bulk revoke job",
        )
    return ids


def _bad_pick(request: Request, error: errors.CouponError, reason: str) -> Response:
    return page(
        request,
        "revoke.html",
        status=status_of(error),
        title="Revoke",
        coupons=[],
        missing=[],
        reason=reason,
        preview=None,
        result=None,
        error=message_of(error),
    )


@needs_person
async def revoke_page(request: Request, person: Person) -> Response:
    """What will be revoked (the picked coupons), and the form for a reason."""
    try:
        ids = _ids(request.query_params.getlist("coupon"))
    except errors.CouponError as error:
        return _bad_pick(request, error, "")
    coupons = await read(request, person, lambda uow, ctx: lookup.coupons_by_ids(uow, ctx, ids))
    return page(
        request,
        "revoke.html",
        title="Revoke",
        coupons=coupons,
        missing=_missing(ids, coupons),
        reason="",
        preview=None,
        result=None,
    )


def _missing(ids: list[int], coupons: list[Coupon]) -> list[int]:
    """Picked ids the org has no coupon for (a stale link, a typo): named on the page, not
    silently dropped from what the person thinks they are revoking."""
    found = {c.id for c in coupons}
    return [i for i in ids if i not in found]


@needs_person
async def revoke_post(request: Request, person: Person) -> Response:
    form = await checked_form(request, person)
    reason = form_reason(form)
    step = str(form.get("step") or "preview")
    try:
        ids = _ids([str(v) for v in form.getlist("coupon")])
    except errors.CouponError as error:
        return _bad_pick(request, error, reason[:MAX_REASON])
    coupons = await read(request, person, lambda uow, ctx: lookup.coupons_by_ids(uow, ctx, ids))
    context: dict[str, Any] = {
        "title": "Revoke",
        "coupons": coupons,
        "missing": _missing(ids, coupons),
        "reason": reason,
        "preview": None,
    }
    if not reason:
        return page(
            request,
            "revoke.html",
            status=400,
            result=None,
            error="Give a reason: it is written into each coupon's history.",
            **context,
        )
    if len(reason) > MAX_REASON:
        return page(
            request,
            "revoke.html",
            status=400,
            result=None,
            error=f"The reason is too long (at most {MAX_REASON} characters).",
            **context,
        )
    dry_run = step != "confirm"
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: picked.revoke_picked(uow, ctx, ids, reason),
            lambda outcome, ctx: render.outcome(outcome, CodeCase.AS_IT_IS, *REVOKED),
            permission="revoke",
            dry_run=dry_run,
            once=form_once(form, "revoke", sorted(ids), reason),
        )
    except errors.CouponError as error:
        status = status_of(error)
        return page(
            request, "revoke.html", status=status, result=None, error=message_of(error), **context
        )
    if dry_run:
        context["preview"] = entity
        return page(request, "revoke.html", result=None, form_key=new_form_key(), **context)
    replayed = bool(getattr(request.state, "replayed", False))
    undoable = bool(entity["revokedCoupons"])
    if replayed and undoable:
        # What the first sending revoked may have been undone since, or undone and revoked
        # again by someone else: the undo is offered only while a coupon is still revoked by
        # this very request, as the undo itself would find it.
        request_id = request_id_of(request.scope)
        revoked_ids = [c["couponId"] for c in entity["revokedCoupons"]]
        still = await read(
            request,
            person,
            lambda uow, ctx: uow.history.still_revoked_by(request_id, revoked_ids),
        )
        undoable = bool(still)
    return page(
        request,
        "revoked.html",
        action_key=new_form_key(),
        title="Revoked" if entity["revokedCoupons"] else "Nothing revoked",
        result=entity,
        request_id=request_id_of(request.scope),
        reason=reason,
        replayed=replayed,
        undoable=undoable,
        # A replay changed nothing: the states read before it are the states now.
        states_now={c.id: c.state.value for c in coupons} if replayed else {},
    )


@needs_person
async def undo(request: Request, person: Person) -> Response:
    """Reinstate everything one revoke request revoked that nothing changed since."""
    form = await checked_form(request, person)
    request_id = str(form.get("request_id") or "")[:128]
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: revoke.reinstate_request(
                uow, ctx, request_id, f"undo of revoke {request_id}"
            ),
            lambda outcome, ctx: render.outcome(outcome, CodeCase.AS_IT_IS, *REINSTATED),
            permission="reinstate",
            # Sent twice (a double click), the second replays the first: it found nothing
            # left to reinstate and said so, as if the undo had failed.
            once=form_once(form, "undo", request_id),
        )
    except errors.CouponError as error:
        return error_page(request, "Undo", error)
    title = "Undone" if entity["reinstatedCoupons"] else "Nothing undone"
    return page(request, "undone.html", title=title, result=entity, undone=request_id)


@needs_person
async def reinstate(request: Request, person: Person) -> Response:
    """Reinstate this one revoked coupon (by id: a customer holding a shared GENERIC code
    twice has two coupons of one series, code and holder)."""
    form: FormData = await checked_form(request, person)
    coupon_id = path_id(request, "coupon_id")
    reason = form_reason(form)[:MAX_REASON] or None
    back = (f"{PREFIX}/coupons/{coupon_id}", "Back to the coupon")
    try:
        await read(request, person, lambda uow, ctx: lookup.coupon_detail(uow, ctx, coupon_id))
        entity = await call(
            request,
            person,
            lambda uow, ctx: picked.reinstate_picked(uow, ctx, [coupon_id], reason),
            lambda outcome, ctx: render.outcome(outcome, CodeCase.AS_IT_IS, *REINSTATED),
            permission="reinstate",
            once=form_once(form, "reinstate", coupon_id, reason),
        )
    except errors.CouponError as error:
        return error_page(request, "Reinstate", error, back)
    if entity["failedCount"]:
        group = entity["failedToReinstate"][0]
        return page(
            request,
            "error.html",
            status=409,
            title="Reinstate",
            message=f"Not reinstated: {group['errorMessage']} (error {group['errorCode']})",
            back=back,
        )
    return RedirectResponse(f"{PREFIX}/coupons/{coupon_id}?notice=reinstated", status_code=303)


routes = [
    Route("/revoke", revoke_page, methods=["GET"]),
    Route("/revoke", revoke_post, methods=["POST"]),
    Route("/undo", undo, methods=["POST"]),
    Route("/coupons/{coupon_id}/reinstate", reinstate, methods=["POST"]),
]
