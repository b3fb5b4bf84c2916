"""The `coupons` command's entry point: the command line, with a Ctrl-C that comes while
Python is still importing it (its first tenth of a second or two) said in one line.

Every command answers Ctrl-C itself once it runs; before that, the interpreter printed the
import's traceback. Nothing has been done yet at that point: `coupons revoke` exits 2, as it
does for any interrupted run (docs/bulk-revoke.md), every other command 130, as the shell
expects of a command stopped by SIGINT.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from coupons.entrypoints.cli import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before it started: nothing was done\n")
        raise SystemExit(2 if sys.argv[1:2] == ["revoke"] else 130) from None
