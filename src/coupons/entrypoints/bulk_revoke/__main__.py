"""`python -m coupons.entrypoints.bulk_revoke`: the command alone, without the server's code."""

from coupons.entrypoints.bulk_revoke.command import main

main()
