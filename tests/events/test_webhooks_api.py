"""Webhook subscriptions over HTTP: create, list, delete, per org and coupon_admin only."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import Backend
from tests.e2e.conftest import Api, error_code
from tests.events.conftest import subscribe


def test_creating_a_webhook_shows_its_secret_once_and_listing_never_does(api: Api) -> None:
    # when a subscription is created
    created = subscribe(api, "https://example.test/hook", ["coupon.revoked"])

    # then the secret comes back this once, and never in the list
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    listed = api.ok(api.get("/v2/webhooks"))["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert listed[0]["events"] == ["coupon.revoked"] and listed[0]["status"] == "ACTIVE"


def test_a_webhook_with_no_types_subscribes_to_every_type(api: Api) -> None:
    created = subscribe(api, "https://example.test/all")

    assert created["events"] == [
        "coupon.issued",
        "coupon.reactivated",
        "coupon.redeemed",
        "coupon.reinstated",
        "coupon.revoked",
        "revoke_job.finished",
    ]


def test_a_deleted_webhook_is_gone(api: Api) -> None:
    # given a subscription
    created = subscribe(api, "https://example.test/gone")

    # when it is deleted
    api.ok(api.request("DELETE", f"/v2/webhooks/{created['id']}"))

    # then it is listed no more, and a second delete finds nothing
    assert api.ok(api.get("/v2/webhooks"))["webhooks"] == []
    again = api.request("DELETE", f"/v2/webhooks/{created['id']}")
    assert again.status_code == 404 and error_code(again) == 9014


def test_another_orgs_webhook_behaves_as_missing(api: Api, other: Api) -> None:
    created = subscribe(api, "https://example.test/acme")

    for response in (
        other.request("DELETE", f"/v2/webhooks/{created['id']}"),
        other.get(f"/v2/webhooks/{created['id']}/deliveries"),
        other.post(f"/v2/webhooks/{created['id']}/retry"),
    ):
        assert response.status_code == 404 and error_code(response) == 9014
    assert other.ok(other.get("/v2/webhooks"))["webhooks"] == []
    assert len(api.ok(api.get("/v2/webhooks"))["webhooks"]) == 1


def test_bad_urls_and_unknown_event_types_are_field_errors(api: Api) -> None:
    for body, field in (
        ({"url": "ftp://example.test/x"}, "url"),
        ({"url": "not a url"}, "url"),
        # What the parser takes but the delivery worker could never send to (one was a 500)
        ({"url": "http://[::1"}, "url"),
        ({"url": "https://exa mple.test/"}, "url"),
        ({"url": "https://example.test/\u0000"}, "url"),
        ({"url": "http://[::1]:99999/x"}, "url"),
        ({"url": "http://example.test:abc/"}, "url"),
        # a dotted quad or a bracketed host the HTTP client refuses, and port 0
        ({"url": "http://0177.0.0.1/x"}, "url"),
        ({"url": "http://[zz]/x"}, "url"),
        ({"url": "http://127.0.0.1:0/x"}, "url"),
        ({"url": "http://[::1]x/h"}, "url"),
        ({"url": "http://[::1]]/h"}, "url"),
        ({"url": "http://\u2603.com/h"}, "url"),
        ({"url": "http://xn--/h"}, "url"),
        ({"url": "https://example.test/x", "events": ["coupon.exploded"]}, "events"),
        # where clouds serve instance credentials, and the worker's own host
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "link-local"),
        ({"url": "http://[fe80::1]:8080/x"}, "link-local"),
        ({"url": "http://[::ffff:169.254.169.254]/"}, "link-local"),
        ({"url": "http://0.0.0.0:8000/x"}, "unspecified"),
        # the same addresses in the other spellings a resolver reads
        ({"url": "http://0:8000/x"}, "unspecified"),
        ({"url": "http://2852039166/"}, "link-local"),
        ({"url": "http://0xa9.0xfe.0xa9.0xfe/"}, "link-local"),
        ({"url": "http://0251.0376.0251.0376/"}, "link-local"),
        ({"url": "http://169.254.169.254./"}, "link-local"),
        ({"url": "http://[::169.254.169.254]/"}, "link-local"),
        ({"url": "http://[64:ff9b::a9fe:a9fe]/"}, "link-local"),
        ({"url": "http://[2002:a9fe:a9fe::1]/"}, "link-local"),
        # metadata addresses outside the link-local ranges: AWS (IPv6), Alibaba, Oracle
        ({"url": "http://[fd00:ec2::254]/latest/meta-data/"}, "metadata"),
        ({"url": "http://100.100.100.200/latest/meta-data/"}, "metadata"),
        ({"url": "http://192.0.0.192/opc/v2/instance/"}, "metadata"),
        ({"url": "http://[::ffff:100.100.100.200]/"}, "metadata"),
        # a host no connection can encode: every delivery failed
        ({"url": "http://" + "x" * 300 + ".example/h"}, "url"),
    ):
        response = api.post("/v2/webhooks", body)

        assert response.status_code == 400 and error_code(response) == 9002
        assert field in response.json()["errors"][0]["message"]


def test_receivers_on_private_and_loopback_addresses_are_allowed(api: Api) -> None:
    # a self-hosted service's receivers usually sit there
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]:9/x"):
        assert subscribe(api, url)["url"] == url


def test_a_password_in_a_receiver_url_is_masked_in_answers_and_kept_for_delivery(
    api: Api, backend: Backend
) -> None:
    # for a receiver behind Basic auth; the API echoed it in every listing
    url = "http://alice:s3cret-pw@127.0.0.1:9/hook"

    created = subscribe(api, url)

    shown = "http://alice:***@127.0.0.1:9/hook"
    assert created["url"] == shown
    assert [w["url"] for w in api.ok(api.get("/v2/webhooks"))["webhooks"]] == [shown]
    with backend.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT url FROM webhooks")).scalar_one()
    assert stored == url


def test_only_coupon_admins_manage_webhooks(viewer: Api, api: Api) -> None:
    response = viewer.post("/v2/webhooks", {"url": "https://example.test/x"})

    assert response.status_code == 403 and error_code(response) == 9011
    assert viewer.get("/v2/webhooks").status_code == 403


def test_deleting_a_webhook_wipes_its_stored_secret(api: Api, backend: Backend) -> None:
    # given a subscription
    created = subscribe(api, "https://example.test/wipe")

    # when it is deleted
    api.ok(api.request("DELETE", f"/v2/webhooks/{created['id']}"))

    # then its signing key no longer exists anywhere in the database
    with backend.db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT secret FROM webhooks WHERE id = :id"), {"id": created["id"]}
        ).scalar_one()
    assert stored == ""


def test_a_replay_of_the_creation_answers_without_the_secret(api: Api) -> None:
    # The secret is shown once; a replay kept it for as long as the key was kept, and showed
    # it even after a DELETE had wiped it
    key = {"Idempotency-Key": "create-hook-1"}
    body = {"url": "https://example.test/replayed"}
    first = api.post("/v2/webhooks", body, headers=key)
    again = api.post("/v2/webhooks", body, headers=key)
    api.ok(api.request("DELETE", f"/v2/webhooks/{api.ok(first)['id']}"))
    after_delete = api.post("/v2/webhooks", body, headers=key)

    assert api.ok(first)["secret"].startswith("whsec_")
    for replay in (again, after_delete):
        assert replay.headers["Idempotent-Replayed"] == "true"
        entity = api.ok(replay)
        assert entity["id"] == api.ok(first)["id"] and entity["secret"] is None
