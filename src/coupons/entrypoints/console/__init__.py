"""The web console (spec §9): server-rendered pages for people, on the API's use cases."""

from coupons.entrypoints.console.app import create_console

__all__ = ["create_console"]
