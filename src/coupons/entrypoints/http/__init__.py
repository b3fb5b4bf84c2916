"""The HTTP API: routes translate between JSON and use cases, nothing more."""

from coupons.entrypoints.http.app import create_app

__all__ = ["create_app"]
