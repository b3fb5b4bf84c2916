"""Event ids become visible in order: a reader that has seen id N never sees a lower id later.

This is what lets a consumer of `GET /v2/events?after=N` (and the webhook worker) keep only
the last id it saw. Writers race on both backends while a reader polls the log; on
PostgreSQL it holds only because the outbox insert takes the org's lock until COMMIT.
"""

from __future__ import annotations

import threading
import uuid

from coupons.services import revoke, runner
from coupons.services.auth import actor_of
from coupons.services.common import Context, utcnow
from tests.conftest import Backend
from tests.e2e.conftest import Api

WRITERS = 6
REVOKES_EACH = 25


def test_a_polling_reader_never_sees_an_event_id_below_one_it_already_saw(
    api: Api, backend: Backend
) -> None:
    # Given a series of codes and the admin client's identity
    codes = [f"ORD{i:04}" for i in range(WRITERS * REVOKES_EACH)]
    series_id = api.series(codes=codes)
    client = backend.db.run(lambda uow: uow.clients.client_by_username("acme-admin"), write=False)
    assert client is not None
    actor = actor_of(client)
    start = threading.Barrier(WRITERS + 1)
    writing = threading.Event()
    writing.set()

    def write(mine: list[str]) -> None:
        start.wait()
        for code in mine:
            ctx = Context(actor=actor, request_id=uuid.uuid4().hex, now=utcnow())
            request = revoke.RevokeRequest(series_id=series_id, codes=(code,))
            runner.execute(
                backend.db, ctx, lambda uow, ctx=ctx, r=request: revoke.revoke(uow, ctx, r),
                lambda outcome: b"",
            )  # fmt: skip

    snapshots: list[set[int]] = []

    def read() -> None:
        start.wait()
        while writing.is_set():
            events = backend.db.run(
                lambda uow: uow.history.events(actor.org_id, 0, 10_000), write=False
            )
            snapshots.append({e.id for e in events})

    # When writers revoke one code a request, side by side, while a reader polls the log
    writers = [threading.Thread(target=write, args=(codes[i::WRITERS],)) for i in range(WRITERS)]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writing.clear()
    reader.join(timeout=30)
    final = {e.id for e in backend.db.run(lambda uow: uow.history.events(actor.org_id, 0, 10_000))}

    # Then every event exists, and no snapshot ever lacked an id below its highest one
    assert len(final) == len(codes)
    assert len(snapshots) > 5
    gaps = [
        sorted(i for i in final if i < max(seen) and i not in seen)[:5]
        for seen in snapshots
        if seen
    ]
    assert [g for g in gaps if g] == []
