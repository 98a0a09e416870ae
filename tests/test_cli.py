"""`orchestrator serve` reads every flag from an ORCHESTRATOR_* variable too (DESIGN)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("ORCHESTRATOR_PORT", "notanumber", "'--port'"),
        ("ORCHESTRATOR_SYNCHRONOUS", "SOMETIMES", "'--synchronous'"),
        ("ORCHESTRATOR_KITCHEN_MODE", "sulk", "'--kitchen-mode'"),
    ],
)
def test_each_flag_reads_its_environment_variable(
    variable: str, value: str, complaint: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert complaint in result.stderr and value in result.stderr


def test_a_bad_setting_is_a_usage_error_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--max-actors", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "max_actors must be at least 1" in result.stderr
