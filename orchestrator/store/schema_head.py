"""The schema version this code needs, and the verdict on a database's: read without SQLAlchemy
or alembic, since every command that opens the database checks it first (the read-only CLI
queries start without either). alembic loads only to name a revision this code does not have.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError, SchemaNotMigrated
from orchestrator.store.schema_names import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HAS_VERSION_TABLE_SQL",
    "VERSIONS_SQL",
    "alembic_config",
    "head_revision",
    "migrations_dir",
    "refuse_unless_head",
]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_NO_SCHEMA = "database has no orchestrator schema; run `orchestrator db upgrade`"

#: Whether the version table exists (NULL: no orchestrator schema), then its rows.
HAS_VERSION_TABLE_SQL = "SELECT to_regclass(%(t)s) AS found"
VERSIONS_SQL = f"SELECT version_num FROM {VERSION_TABLE}"


def migrations_dir() -> Path:
    """The alembic scripts: inside the installed wheel, or `<repo>/migrations` in a checkout."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError(f"orchestrator migrations not found next to {_PACKAGE_DIR}")


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


@lru_cache(maxsize=1)
def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The revision this code expects the database to be at.

    Read from the scripts' `revision` and `down_revision` assignments rather than through
    alembic: every command that opens the database checks the schema, and loading alembic's
    script machinery for that costs a CLI start ~0.2 s. tests/integration/test_migrations.py
    checks the answer against alembic's own.
    """
    parents: dict[str, tuple[str, ...]] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        found = _revision_assignments(path)
        if "revision" in found:
            down = found.get("down_revision")
            parents[found["revision"]] = (down,) if isinstance(down, str) else tuple(down or ())
    children = {parent for downs in parents.values() for parent in downs}
    heads = sorted(set(parents) - children)
    if len(heads) != 1:
        raise ConfigError(f"orchestrator migrations have {len(heads)} heads, expected one")
    return heads[0]


def _revision_assignments(path: Path) -> dict[str, Any]:
    """A migration script's module-level `revision` and `down_revision` literals."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id in _REVISION_NAMES and value is not None:
            found[target.id] = ast.literal_eval(value)
    return found


_REVISION_NAMES = frozenset({"revision", "down_revision"})


def refuse_unless_head(versions: list[str] | None) -> None:
    """SchemaNotMigrated unless the version table (None: absent) holds exactly this code's head."""
    if not versions:
        raise SchemaNotMigrated(_NO_SCHEMA)
    head = head_revision()
    if versions == [head]:
        return
    have = ", ".join(versions)
    if all(_known_revision(v) for v in versions):
        raise SchemaNotMigrated(
            f"database schema is at revision {have}, this orchestrator needs {head}; "
            "run `orchestrator db upgrade`"
        )
    raise SchemaNotMigrated(
        f"database schema is at revision {have}, unknown to this orchestrator (needs {head}); "
        "was it migrated by a newer version?"
    )


def _known_revision(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _script_directory().get_revision(revision) is not None
    except CommandError:
        return False
