"""Soak test: sustained mixed load against `coupons serve --workers 2` (`make soak`)."""
