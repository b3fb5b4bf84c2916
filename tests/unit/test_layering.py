"""The layering rules of docs/architecture.md, checked on the source: the domain and the services
import nothing from adapters or entrypoints (not even under TYPE_CHECKING or inside a function),
and no module is over 600 lines (migrations aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import coupons

PACKAGE = Path(coupons.__file__).parent
INNER_LAYERS = ("domain", "services")
OUTER_PREFIXES = ("coupons.adapters", "coupons.entrypoints")
MAX_LINES = 600


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source file imports, wherever the import statement sits."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: resolve against the importing module's package.
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts)


def is_outer(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUTER_PREFIXES)


def inner_files() -> list[Path]:
    return sorted(p for layer in INNER_LAYERS for p in (PACKAGE / layer).rglob("*.py"))


def test_the_checker_sees_imports_in_every_form() -> None:
    # Given imports at top level, under TYPE_CHECKING, in a function, and relative
    source = """
from typing import TYPE_CHECKING
import coupons.adapters.db
if TYPE_CHECKING:
    from coupons.entrypoints.http import render
def f() -> None:
    from ..adapters import sql_uow
"""

    # When the checker lists them, then every outer import is caught
    found = imported_modules(source, "coupons.services.example")
    assert {n for n in found if is_outer(n)} >= {
        "coupons.adapters.db",
        "coupons.entrypoints.http.render",
        "coupons.adapters.sql_uow",
    }


@pytest.mark.parametrize("path", inner_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_domain_and_services_import_nothing_from_adapters_or_entrypoints(path: Path) -> None:
    outer = sorted(n for n in imported_modules(path.read_text(), module_name(path)) if is_outer(n))
    assert outer == [], f"{path.relative_to(PACKAGE)} imports {outer}"


def test_no_module_is_over_600_lines_migrations_aside() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}


# Run in a fresh interpreter: learns which other packages the project's modules import, imports
# those once, then forks a child per project module that imports it first, with no module of
# the project loaded yet. A cycle shows as an ImportError in that child, as in a fresh process,
# at a fifth of the CPU of one interpreter start per module.
IMPORT_EACH_FIRST = """
import importlib, json, os, subprocess, sys, traceback
modules = sys.argv[1:]
probe = (
    "import importlib, json, sys\\n"
    "for m in sys.argv[1:]: importlib.import_module(m)\\n"
    "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] != 'coupons')))"
)
learned = subprocess.run([sys.executable, "-c", probe, *modules], capture_output=True, text=True)
if learned.returncode:
    sys.exit(learned.stderr)
for name in json.loads(learned.stdout):
    try:
        importlib.import_module(name)
    except Exception:
        pass  # a module that only imports in its own context: the child imports it itself
assert not any(n == "coupons" or n.startswith("coupons.") for n in sys.modules)
sys.stdout.flush()
for module in modules:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            print(json.dumps([module, traceback.format_exc()[-300:]]), flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status and status != 256:
        print(json.dumps([module, f"child ended with status {status}"]), flush=True)
"""


def test_every_module_imports_first_in_a_fresh_process() -> None:
    # A cycle between modules fails only when one of them is imported first: the suite
    # imports them in one order, `coupons client create` in another (services.admin first
    # once failed on a cycle through services.people and services.demo).
    import json
    import subprocess
    import sys

    modules = sorted(
        ".".join(("coupons", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for layer in (*INNER_LAYERS, "adapters", "entrypoints")
        for path in (PACKAGE / layer).rglob("*.py")
        if path.name != "__main__.py"
    )
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_FIRST, *modules],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    failed = dict(json.loads(line) for line in done.stdout.splitlines() if line.strip())
    assert failed == {}
