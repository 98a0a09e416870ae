"""`orchestrator serve` reads every flag from an ORCHESTRATOR_* variable too (docs/design.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("ORCHESTRATOR_PORT", "notanumber", "'--port'"),
        ("ORCHESTRATOR_SYNCHRONOUS", "SOMETIMES", "'--synchronous'"),
        ("ORCHESTRATOR_KITCHEN_MODE", "sulk", "'--kitchen-mode'"),
        ("ORCHESTRATOR_CHARTS", "/no/such/charts", "/no/such/charts"),
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


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("pizza.kitchenTimeout=1 pizza.ovenTemperature=250", "no option 'ovenTemperature'"),
        ("pizza.kitchenTimeout=1 pizza.maxRetries=many", "'maxRetries' must be like its default"),
        ("kitchenTimeout=1", "is not CHART.NAME=VALUE"),
    ],
)
def test_chart_options_from_the_environment_are_checked_at_start(
    value: str, complaint: str
) -> None:
    """ORCHESTRATOR_CHART_OPTION takes several space-separated options; a wrong one stops
    the server before it listens, naming it."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "1"],
        env={**os.environ, "ORCHESTRATOR_CHART_OPTION": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert complaint in result.stderr


def test_a_flawed_chart_stops_the_server_at_start_naming_line_and_state(
    tmp_path: Path,
) -> None:
    """A chart directory holding a transition to an unknown state: `serve` exits 2 before
    it listens, and the message names the file, the line and the state."""
    charts = Path(__file__).resolve().parent.parent / "statecharts"
    (tmp_path / "pizza.py").write_text((charts / "pizza.py").read_text())
    document = (charts / "pizza.yaml").read_text()
    assert document.count("target: deliverPizza") == 1
    (tmp_path / "pizza.yaml").write_text(document.replace("target: deliverPizza", "target: oven"))
    line = 1 + document.splitlines().index("      - event: PIZZA_READY")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "1", "--charts", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"pizza.yaml: line {line}, state 'bakePizza'" in result.stderr
    assert "unknown state 'oven'" in result.stderr
