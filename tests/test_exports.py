"""The public surface of the ``orchestrator`` package, pinned as httpx pins its own.

Chart authors and embedders import these names; growing or shrinking the list must be a
visible choice made in this file, not a side effect of an import.
"""

from __future__ import annotations

from types import ModuleType

import orchestrator

EXPORTED = ["Context", "InvalidInput", "JsonObject", "OrchestratorError", "Refused", "__version__"]


def test_all_is_exactly_the_public_names() -> None:
    """``__all__`` lists exactly today's public names, sorted."""
    assert orchestrator.__all__ == EXPORTED


def test_every_exported_name_resolves() -> None:
    """Each name in ``__all__`` is an attribute of the package."""
    for name in orchestrator.__all__:
        assert hasattr(orchestrator, name), name


def test_all_public_attributes_are_exported() -> None:
    """Every public, non-module attribute of the package is in ``__all__`` (submodules such
    as ``orchestrator.errors`` appear as attributes once imported, and are not API names)."""
    public = sorted(
        name
        for name, value in vars(orchestrator).items()
        if not isinstance(value, ModuleType) and (not name.startswith("_") or name in EXPORTED)
    )
    assert public == sorted(EXPORTED)


def test_version_is_a_string() -> None:
    """``__version__`` is the package version as a dotted string."""
    assert isinstance(orchestrator.__version__, str)
    assert all(part.isdigit() for part in orchestrator.__version__.split("."))
