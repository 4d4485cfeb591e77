"""Import layering, read from the source (ast), lazy imports included.

The domain packages of api/ import only downwards, so each can be read, tested and changed
without the ones above it:

    core < events < work < submissions < clients < moderation < accounts < background

api/main.py, api/cli.py, api/demo.py and api/console/ sit on top and may import anything in api/.
The simulator (sim/) is a client of the public HTTP API: it imports nothing from api/, and api/
imports nothing from it. The pure cores (geo/, validation/, storage/, checklists/,
recurrence/) import neither.

api/ also keeps off FastAPI's and Starlette's internals (fastapi.dependencies, the non-public
names of fastapi.routing, anything with a leading underscore): they change in minor releases
without notice.

Each failure names the import: file:line, importing module -> imported module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = (
    "core",
    "events",
    "work",
    "submissions",
    "clients",
    "moderation",
    "accounts",
    "background",
)
# Top-level modules of api/: they assemble the domain packages and may import any of them.
TOP_LEVEL = frozenset(
    {
        "api.main",
        "api.cli",
        "api.demo",
        "api.console",
    }
)
PURE_CORES = ("geo", "validation", "storage", "checklists", "recurrence")
SCANNED = ("api", "sim", *PURE_CORES)

FRAMEWORKS = ("fastapi", "starlette")
# fastapi.routing's documented names; the rest of that module is FastAPI's own machinery.
FASTAPI_ROUTING_PUBLIC = frozenset({"APIRouter", "APIRoute", "APIWebSocketRoute"})
FRAMEWORK_PRIVATE_MODULES = ("fastapi.dependencies",)
# Files allowed to reach into the frameworks' internals, by path relative to the repository.
INTERNALS_ALLOWED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Import:
    path: str  # relative to the scanned root
    line: int
    importer: str  # dotted module name
    target: str  # dotted module name, resolved
    names: tuple[str, ...]  # names taken by ``from target import ...``; empty for ``import``

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} -> {self.target}"


def module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        base = root / top
        if not base.is_dir():
            continue
        for file in sorted(base.rglob("*.py")):
            rel = file.relative_to(root).parts
            if rel[:2] == ("api", "migrations"):
                continue  # migrations are frozen history, run by alembic, not imported
            files.append(file)
    return files


def _resolve_from(root: Path, file: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` reads from, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    package = module_name(root, file).split(".")
    if file.name != "__init__.py":
        package = package[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _exists(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _dynamic_import(call: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("...")`` or ``__import__("...")``."""
    func = call.func
    named = (isinstance(func, ast.Name) and func.id in {"__import__", "import_module"}) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )
    if named and call.args:
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imports_of(root: Path, file: Path) -> list[Import]:
    """Every import in the file, at any depth (function-level and TYPE_CHECKING ones too), and
    ``importlib.import_module``/``__import__`` calls with a literal name."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    importer = module_name(root, file)
    rel = file.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, importer, alias.name, ()))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(root, file, node)
            names = tuple(alias.name for alias in node.names)
            # ``from api import console`` imports the module api.console: name it.
            submodules = [n for n in names if _exists(root, f"{base}.{n}")]
            for name in submodules:
                found.append(Import(rel, node.lineno, importer, f"{base}.{name}", (name,)))
            rest = tuple(n for n in names if n not in submodules)
            if rest or not submodules:
                found.append(Import(rel, node.lineno, importer, base, rest))
        elif isinstance(node, ast.Call) and (name := _dynamic_import(node)):
            found.append(Import(rel, node.lineno, importer, name, ()))
    return found


def _top(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _within(dotted: str, package: str) -> bool:
    return dotted == package or dotted.startswith(package + ".")


def api_place(module: str) -> str | int | None:
    """Where a module of api/ sits: its layer's index, "top", "root" (the api package itself,
    which everything imports first and so may import nothing of api/), or None (placed nowhere)."""
    if module == "api":
        return "root"
    if any(_within(module, top) for top in TOP_LEVEL):
        return "top"
    parts = module.split(".")
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def layering_violations(root: Path) -> list[str]:
    problems: list[str] = []
    for file in source_files(root):
        importer = module_name(root, file)
        package = _top(importer)
        place = api_place(importer) if package == "api" else None
        if package == "api" and place is None:
            rel = file.relative_to(root).as_posix()
            problems.append(f"{rel}: {importer} is in no layer (add it to a domain package)")
            continue
        for imp in imports_of(root, file):
            target = imp.target
            if package == "api":
                if _top(target) == "sim":
                    problems.append(f"{imp} (api/ must not import the simulator)")
                elif _top(target) == "api" and target != "api":
                    target_place = api_place(target)
                    if place == "root":
                        problems.append(f"{imp} (the api package itself imports nothing of api/)")
                    elif target_place is None:
                        problems.append(f"{imp} (the imported module is in no layer)")
                    elif place == "top":
                        continue
                    elif target_place == "top":
                        problems.append(f"{imp} (a domain package imports a top-level module)")
                    elif (
                        isinstance(place, int)
                        and isinstance(target_place, int)
                        and target_place > place
                    ):
                        problems.append(
                            f"{imp} ({LAYERS[place]} must not import {LAYERS[target_place]},"
                            f" which is above it)"
                        )
            elif package == "sim":
                if _top(target) == "api":
                    problems.append(f"{imp} (the simulator uses the HTTP API, not api/)")
            elif package in PURE_CORES and _top(target) in {"api", "sim"}:
                problems.append(f"{imp} ({package}/ is a pure core: no api/ or sim/)")
    return problems


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def internals_violations(root: Path) -> list[str]:
    problems: list[str] = []
    for file in source_files(root):
        rel = file.relative_to(root).as_posix()
        if _top(module_name(root, file)) != "api" or rel in INTERNALS_ALLOWED:
            continue
        for imp in imports_of(root, file):
            if _top(imp.target) not in FRAMEWORKS:
                continue
            if _private(imp.target):
                problems.append(f"{imp} (a private module)")
            elif any(_within(imp.target, m) for m in FRAMEWORK_PRIVATE_MODULES):
                problems.append(f"{imp} (FastAPI's dependency machinery)")
            elif imp.target == "fastapi.routing" and not imp.names:
                problems.append(f"{imp} (import the public names, not the module)")
            elif imp.target == "fastapi.routing" and (
                hidden := [n for n in imp.names if n not in FASTAPI_ROUTING_PUBLIC]
            ):
                problems.append(f"{imp} (non-public {', '.join(hidden)})")
            elif hidden := [n for n in imp.names if n.startswith("_")]:
                problems.append(f"{imp} (private {', '.join(hidden)})")
    return problems


# --- the project ------------------------------------------------------------------------------


def test_every_place_is_scanned() -> None:
    # Guards against a checker that passes because it reads nothing.
    modules = {module_name(ROOT, f) for f in source_files(ROOT)}
    for expected in (
        "api.main",
        "api.core.db",
        "api.work.reservations",
        "sim.http",
        "geo",
        "checklists.model",
    ):
        assert expected in modules
    assert not any(m.startswith("api.migrations") for m in modules)


def test_imports_point_down() -> None:
    problems = layering_violations(ROOT)
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_api_keeps_off_framework_internals() -> None:
    problems = internals_violations(ROOT)
    assert not problems, "framework internals imported:\n" + "\n".join(problems)


# --- the checker, on a synthetic tree ---------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


GOOD_TREE = {
    "api/__init__.py": '"""API."""\n',
    "api/core/__init__.py": "",
    "api/core/db.py": "import sqlalchemy\n",
    "api/events/__init__.py": "",
    "api/events/outbox.py": "from api.core import db\nfrom ..core.db import x\n",
    "api/work/__init__.py": "",
    "api/work/tasks.py": "from api.events.outbox import emit\nfrom . import helpers\n",
    "api/work/helpers.py": "",
    "api/background/__init__.py": "",
    "api/background/jobs.py": "from api.work import tasks\nimport api.accounts.auth\n",
    "api/accounts/__init__.py": "",
    "api/accounts/auth.py": "from api.submissions.x import y\n",
    "api/submissions/__init__.py": "",
    "api/main.py": "from api.background import jobs\nfrom api import console\n",
    "api/console/__init__.py": "from api.main import app\n",
    "api/migrations/versions/0001.py": "from api.main import create_app\nimport sim\n",
    "sim/__init__.py": "",
    "sim/http.py": "import httpx\nfrom geo import distance\n",
    "geo/__init__.py": "",
    "geo/distance.py": "import math\n",
    "storage/__init__.py": "from storage.base import ObjectStore\n",
    "storage/base.py": "",
    "validation/__init__.py": "",
}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    _write(tmp_path, GOOD_TREE)
    assert layering_violations(tmp_path) == []
    assert internals_violations(tmp_path) == []


def test_checker_names_each_upward_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **GOOD_TREE,
            # a lazy import, two levels up
            "api/work/tasks.py": (
                "from api.events.outbox import emit\n"
                "\n"
                "def f():\n"
                "    from api.submissions.settlement import settle\n"
                "    return settle\n"
            ),
            "api/submissions/settlement.py": "",
            # a relative import upwards
            "api/core/db.py": "from ..work import tasks\n",
            # a domain package reaching a top-level module, under TYPE_CHECKING
            "api/events/outbox.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from api.main import app\n"
            ),
            # a dynamic import by literal name
            "api/clients/__init__.py": "",
            "api/clients/stores.py": (
                "import importlib\nm = importlib.import_module('api.moderation.suspensions')\n"
            ),
            "api/moderation/__init__.py": "",
            "api/moderation/suspensions.py": "",
            # a module placed in no layer
            "api/stray.py": "",
        },
    )
    assert sorted(layering_violations(tmp_path)) == sorted(
        [
            "api/work/tasks.py:4: api.work.tasks -> api.submissions.settlement"
            " (work must not import submissions, which is above it)",
            "api/core/db.py:1: api.core.db -> api.work.tasks"
            " (core must not import work, which is above it)",
            "api/events/outbox.py:3: api.events.outbox -> api.main"
            " (a domain package imports a top-level module)",
            "api/clients/stores.py:2: api.clients.stores -> api.moderation.suspensions"
            " (clients must not import moderation, which is above it)",
            "api/stray.py: api.stray is in no layer (add it to a domain package)",
        ]
    )


def test_checker_keeps_sim_and_the_pure_cores_apart(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **GOOD_TREE,
            "sim/http.py": "def f():\n    from api.core.settings import Settings\n",
            "api/cli.py": "import sim.run\n",
            "geo/distance.py": "from api.core import db\n",
            "validation/__init__.py": "from sim import http\n",
            "storage/base.py": "import api\n",
            "api/__init__.py": "from api.core import db\n",
        },
    )
    assert sorted(layering_violations(tmp_path)) == sorted(
        [
            "sim/http.py:2: sim.http -> api.core.settings"
            " (the simulator uses the HTTP API, not api/)",
            "api/cli.py:1: api.cli -> sim.run (api/ must not import the simulator)",
            "geo/distance.py:1: geo.distance -> api.core.db (geo/ is a pure core: no api/ or sim/)",
            "validation/__init__.py:1: validation -> sim.http"
            " (validation/ is a pure core: no api/ or sim/)",
            "storage/base.py:1: storage.base -> api (storage/ is a pure core: no api/ or sim/)",
            "api/__init__.py:1: api -> api.core.db"
            " (the api package itself imports nothing of api/)",
        ]
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("from fastapi.dependencies.utils import solve_dependencies\n", "dependency machinery"),
        ("from fastapi.dependencies.models import Dependant\n", "dependency machinery"),
        ("import fastapi.dependencies\n", "dependency machinery"),
        ("from fastapi.routing import APIRoute, serialize_response\n", "non-public"),
        ("import fastapi.routing\n", "public names, not the module"),
        ("from starlette._utils import is_async_callable\n", "private module"),
        ("from fastapi._compat import ModelField\n", "private module"),
        ("from starlette.routing import _wrap_gen_lifespan_context\n", "private"),
        ("def f():\n    from fastapi import _private\n", "private"),
    ],
)
def test_checker_finds_framework_internals(tmp_path: Path, source: str, reason: str) -> None:
    _write(tmp_path, {**GOOD_TREE, "api/work/helpers.py": source})
    problems = internals_violations(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"api/work/helpers.py:{source.count(chr(10))}: api.work.helpers")
    assert reason in problems[0]


def test_checker_lets_public_framework_names_through(tmp_path: Path) -> None:
    source = (
        "from fastapi import APIRouter, Depends\n"
        "from fastapi.routing import APIRoute\n"
        "from fastapi.responses import JSONResponse\n"
        "from starlette.types import ASGIApp\n"
        "import starlette.requests\n"
    )
    _write(tmp_path, {**GOOD_TREE, "api/work/helpers.py": source})
    assert internals_violations(tmp_path) == []
