"""One error tree: every exception class the package defines derives from `OrchestratorError`,
so a caller catches one root and the CLI maps errors without importing `orchestrator.violet`.

The walk imports every module, not just the exported names, so a new exception class anywhere
in the package is checked the day it is written. `orchestrator.sandbox` is left out: it is a
stand-alone fake of Violet (it imports nothing from the orchestrator) with its own errors, and
the orchestrator never raises them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import orchestrator
from orchestrator.errors import OrchestratorError, VioletError

_EXCLUDED = ("orchestrator.sandbox",)


def _package_modules() -> list[str]:
    names = [orchestrator.__name__]
    for info in pkgutil.walk_packages(orchestrator.__path__, prefix="orchestrator."):
        if not any(info.name == ex or info.name.startswith(ex + ".") for ex in _EXCLUDED):
            names.append(info.name)
    return sorted(names)


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _package_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            # Classes defined in the package, wherever they are imported: re-exports count once.
            if (
                issubclass(value, BaseException)
                and value.__module__.startswith("orchestrator.")
                and not value.__module__.startswith(_EXCLUDED)
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


def test_the_walk_reaches_every_wing_of_the_package() -> None:
    modules = _package_modules()
    # A broken walk (a wrong prefix, an import error swallowed) would make the tree test vacuous.
    for expected in ("orchestrator.cli.app", "orchestrator.violet.client", "orchestrator.store"):
        assert expected in modules
    assert not any(name.startswith("orchestrator.sandbox") for name in modules)
    classes = {cls.__name__ for cls in _exception_classes()}
    assert {"CheckoutNotFound", "VioletAuthError", "VioletCartErrors"} <= classes


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda cls: cls.__qualname__)
def test_every_exception_class_in_the_package_derives_from_the_root(
    cls: type[BaseException],
) -> None:
    assert issubclass(cls, OrchestratorError), f"{cls.__module__}.{cls.__qualname__}"


def test_every_violet_error_is_caught_through_the_root_without_importing_violet() -> None:
    from orchestrator import violet

    family = [
        value
        for value in vars(violet).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert family, "orchestrator.violet exports its errors"
    for cls in family:
        assert issubclass(cls, VioletError), cls.__name__
        assert issubclass(cls, OrchestratorError), cls.__name__
    assert violet.VioletError is VioletError
