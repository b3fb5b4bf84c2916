"""A self-hostable coupon service with a vendor-compatible revoke API."""

__version__ = "0.1.0"
