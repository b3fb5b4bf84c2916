"""The HTTP API: routes translate between JSON and use cases, nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coupons.entrypoints.http.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with the package: the console builds on this package's
    # modules (middleware, rendering) and the app mounts the console, so an eager import
    # here made `import coupons.entrypoints.console` meet the app half made.
    if name == "create_app":
        from coupons.entrypoints.http.app import create_app

        return create_app
    raise AttributeError(name)
