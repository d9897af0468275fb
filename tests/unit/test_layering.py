"""The one-way import rule of design §9, checked on the source (every import, lazy ones too).

Each part of the package is declared with the parts it may import; a module nobody declared fails
here, so a new package is placed in the house on purpose. The rule: cli/console -> front door
(api, sync) and jobs (recovery, verify, audit) -> engine -> states, violet, store; `violet/` knows
nothing of the database, `store/` nothing of HTTP, the sandbox stands alone, and nothing below
imports the CLI or the console.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator

PACKAGE = Path(orchestrator.__file__).parent

# Units are the top-level modules and packages of `orchestrator`; each may import these others.
_BASE = frozenset({"errors", "sensitive", "clock", "logs", "observe", "tracing"})
_FRONT = _BASE | {"states", "engine", "store", "violet", "checkout", "request", "config", "aio"}
ALLOWED: dict[str, frozenset[str]] = {
    "states": frozenset(),
    "bag_states": frozenset(),
    "sensitive": frozenset(),
    "clock": frozenset(),
    "observe": frozenset(),
    "tracing": frozenset(),
    "aio": frozenset(),
    "database_url": frozenset(),
    "errors": frozenset({"sensitive"}),
    "logs": frozenset({"sensitive"}),
    "config": frozenset({"errors", "sensitive", "database_url"}),
    "violet": _BASE,
    "store": _BASE | {"states", "bag_states", "database_url"},
    "request": frozenset({"errors", "sensitive"}),
    "checkout": _BASE | {"states", "store", "violet"},
    "engine": _BASE | {"states", "bag_states", "store", "violet", "checkout", "request"},
    "api": _FRONT,
    "sync": _FRONT | {"api"},
    "audit": _BASE | {"states", "store", "checkout"},
    "recovery": _FRONT | {"bag_states", "webhooks"},
    "verify": _FRONT | {"bag_states"},
    "readback": _FRONT | {"bag_states"},
    "retention": _BASE | {"store", "checkout"},
    "webhooks": _FRONT | {"bag_states", "audit"},
    "sandbox": frozenset(),
    "describe": _BASE | {"checkout"},
    "metrics": _BASE | {"states", "store"},
    "console": _FRONT | {"api", "audit", "recovery", "describe", "bag_states", "metrics"},
    "__init__": _FRONT | {"api", "sync", "retention"},
}
ALLOWED["cli"] = frozenset(ALLOWED) - {"cli", "__init__"}
ALLOWED["__main__"] = frozenset({"cli"})

# Finer rules inside a part: the webhook receiver answers Violet within its deadline, so it never
# calls Violet and never takes a checkout's lease (the engine's business); of the engine it may
# use the crash points alone (the kill -9 test between its insert and its answer).
FORBIDDEN_WITHIN: dict[str, frozenset[str]] = {
    "webhooks.receive": frozenset({"violet", "engine"}),
}
EXCEPT_MODULES: frozenset[str] = frozenset({"orchestrator.engine.crashpoints"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imported_units(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from orchestrator import x` names a unit in `x`; deeper `from` names it in the path.
            base = node.module
            names = [f"{base}.{a.name}" for a in node.names] if base == "orchestrator" else [base]
        else:
            continue
        for name in names:
            if name.startswith("orchestrator."):
                unit = _unit(name)
                if (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file():
                    yield node.lineno, unit, name


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_declared_layer() -> None:
    units = {_unit(_module_name(path)) for path in _modules()}
    assert units - set(ALLOWED) == set(), "declare the new part's layer in ALLOWED"
    assert {"engine", "cli", "violet", "store", "sandbox", "states"} <= units


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _module_name(p))
def test_imports_point_one_way(path: Path) -> None:
    module = _module_name(path)
    unit = _unit(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = ALLOWED[unit] | {unit}
    forbidden = next(
        (
            rule
            for prefix, rule in FORBIDDEN_WITHIN.items()
            if module.startswith(f"orchestrator.{prefix}")
        ),
        frozenset[str](),
    )
    wrong = [
        f"line {line}: {unit} -> {target}"
        for line, target, name in _imported_units(tree)
        if target not in allowed or (target in forbidden and name not in EXCEPT_MODULES)
    ]
    assert wrong == [], f"{module} breaks the one-way import rule (design §9): {wrong}"


def test_only_the_cli_imports_the_console() -> None:
    """The console is a top layer: the library, the jobs and the engine run without it (and
    without Starlette's templates and Jinja2)."""
    assert [unit for unit, allowed in ALLOWED.items() if "console" in allowed] == ["cli"]


def test_the_rule_catches_a_wrong_import() -> None:
    tree = ast.parse("def f():\n    from orchestrator.store import repository\n")
    assert [t for _, t, _ in _imported_units(tree)] == ["store"]
    assert "store" not in ALLOWED["violet"]
    assert "cli" not in ALLOWED["engine"] and "console" not in ALLOWED["api"]
