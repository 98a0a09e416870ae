"""The public surface of ``orchestrator.worker``, pinned as ``tests/test_exports.py`` pins
the package's: services import these names and nothing else (an import-linter contract
keeps ``services/`` to them), so growing the list must be a visible choice made here."""

from __future__ import annotations

from types import ModuleType

import orchestrator.worker

EXPORTED = [
    "MAX_COMMAND_BYTES",
    "MAX_DELIVERIES",
    "Command",
    "CommandHandler",
    "OncePer",
    "Poison",
    "ProcessOptions",
    "Retry",
    "Service",
    "main",
    "process_options",
    "serve",
]


def test_all_is_exactly_the_public_names() -> None:
    assert orchestrator.worker.__all__ == EXPORTED


def test_every_public_attribute_is_exported() -> None:
    """Every public, non-module attribute of the package is in ``__all__``."""
    public = sorted(
        name
        for name, value in vars(orchestrator.worker).items()
        if not isinstance(value, ModuleType) and not name.startswith("_")
    )
    assert public == sorted(EXPORTED)
