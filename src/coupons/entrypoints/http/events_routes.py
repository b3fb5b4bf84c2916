"""Routes for the event log and webhook subscriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field, WithJsonSchema
from starlette.responses import Response

from coupons.entrypoints.http import render_events, schemas
from coupons.entrypoints.http.deps import ReadActor, allowed
from coupons.entrypoints.http.finding_routes import After
from coupons.entrypoints.http.routes import ERRORS, IdPath, perform
from coupons.entrypoints.http.routing import IdRoute, QueryWhole, whole_query
from coupons.services import events, webhooks
from coupons.services.common import Actor

router = APIRouter(route_class=IdRoute)

AdminActor = Annotated[Actor, Depends(allowed("admin"))]


# The event types a subscription may name, as the contract documents them.
EVENT_TYPE_SCHEMA = {"type": "string", "enum": sorted(events.ALL_TYPES)}


class WebhookBody(schemas.Body):
    """A subscription: where to POST, and which event types (none given: all). A `Body`, so
    `"Events"` is refused as the typo it is rather than read as "every type"."""

    url: str = Field(min_length=1, max_length=webhooks.MAX_URL_LENGTH)
    events: list[Annotated[str, WithJsonSchema(EVENT_TYPE_SCHEMA)]] = Field(
        default_factory=list, max_length=20
    )


@router.get("/v2/events", tags=["events"], responses=ERRORS)
async def list_events(
    request: Request,
    actor: ReadActor,
    after: Annotated[
        QueryWhole, *whole_query(0, 2**62, description="last event id seen; 0 = start")
    ] = 0,
    limit: Annotated[QueryWhole, *whole_query(1, events.MAX_PAGE)] = 100,
) -> Response:
    """The org's coupon events in order, after the cursor `after`; pass `nextAfter` back."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: events.list_events(uow, ctx, after, limit),
        lambda found, ctx: render_events.page(found, after),
        write=False,
    )


@router.post("/v2/webhooks", tags=["webhooks"], responses=ERRORS)
async def create_webhook(body: WebhookBody, request: Request, actor: AdminActor) -> Response:
    """Subscribe a URL to the org's events (coupon_admin); the secret is returned only here."""
    new = webhooks.NewWebhook(url=body.url.strip(), events=frozenset(body.events))
    return await perform(
        request,
        actor,
        lambda uow, ctx: webhooks.create_webhook(uow, ctx, new),
        lambda created, ctx: render_events.created_webhook(created),
        # The secret is shown once: a replay under the same key answers without it (it would
        # otherwise outlive a DELETE, which wipes it, for as long as the key is kept).
        replayed=lambda created, ctx: {**render_events.created_webhook(created), "secret": None},
    )


@router.get("/v2/webhooks", tags=["webhooks"], responses=ERRORS)
async def list_webhooks(request: Request, actor: AdminActor) -> Response:
    """The org's subscriptions, without secrets (coupon_admin)."""
    return await perform(
        request,
        actor,
        webhooks.list_webhooks,
        lambda found, ctx: render_events.webhooks(found),
        write=False,
    )


@router.delete("/v2/webhooks/{id}", tags=["webhooks"], responses=ERRORS)
async def delete_webhook(webhook_id: IdPath, request: Request, actor: AdminActor) -> Response:
    """Stop a subscription at once (coupon_admin)."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: webhooks.delete_webhook(uow, ctx, webhook_id),
        lambda found, ctx: render_events.deleted_webhook(found),
    )


@router.post("/v2/webhooks/{id}/retry", tags=["webhooks"], responses=ERRORS)
async def retry_webhook(webhook_id: IdPath, request: Request, actor: AdminActor) -> Response:
    """Retry a dead-lettered (or backing-off) subscription now, from where it stopped."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: webhooks.retry_webhook(uow, ctx, webhook_id),
        lambda found, ctx: render_events.webhook(found),
    )


@router.get("/v2/webhooks/{id}/deliveries", tags=["webhooks"], responses=ERRORS)
async def list_deliveries(
    webhook_id: IdPath,
    request: Request,
    actor: AdminActor,
    limit: Annotated[QueryWhole, *whole_query(1, webhooks.MAX_DELIVERY_PAGE)] = 50,
    after: After = None,
) -> Response:
    """A subscription's delivery attempts, newest first, paged by `nextCursor`
    (coupon_admin)."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: webhooks.deliveries(uow, ctx, webhook_id, limit, after),
        lambda page, ctx: render_events.deliveries(page.items, page.next_cursor),
        write=False,
    )
