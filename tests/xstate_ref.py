"""The differential harness: a machine config run on the real ``xstate`` package and here.

``reference`` runs ``tests/xstate_reference/run.mjs`` on Node with the xstate package pinned
in ``tests/xstate_reference/package.json`` (v5 as ``xstate``, v4 as ``xstate4``; installed by
``scripts/test.sh``). It fails, never skips, when Node or the package is missing: the
differential tests are the proof that a chart behaves as XState does.

``ours`` loads the same config as a chart (``<name>.json`` beside a generated actions module
whose every action records its name, whose every invoke ``src`` sends a command) and applies
the same events to an order. Both give one ``Step`` for the start and one per event.

Events are given by XState's names, an invoke's outcomes too (v5 ``xstate.done.actor.<id>``,
v4 ``error.platform.<id>``...): ``ours`` sends each under the internal name the loaded
chart gives it (``Chart.event_names``), as the relay raises it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from statemachine.exceptions import TransitionNotAllowed

from orchestrator.charts import load_chart
from orchestrator.context import CommandIntent
from orchestrator.model import JsonObject

# A guard's value, or its (JavaScript, Python) expressions.
Guards = Mapping[str, bool | tuple[str, str]]
# JSON as JavaScript's JSON.stringify writes it.
dumps = partial(json.dumps, separators=(",", ":"))
REFERENCE_DIR = Path(__file__).parent / "xstate_reference"
# Generous: Node starts in well under a second; this only catches a hang.
REFERENCE_TIMEOUT = 60


@dataclass(frozen=True)
class Step:
    """The state after one event: active leaves as dotted paths, context, actions run."""

    value: tuple[str, ...]
    context: JsonObject
    actions: tuple[str, ...]
    # The reference did not send the event: an outcome of an invoke that was not running.
    skipped: bool = False
    # The services started, each as (src, its input as JSON or None).
    started: tuple[tuple[str, str | None], ...] = ()


def reference(
    config: JsonObject,
    events: list[str],
    *,
    version: int = 5,
    guards: Guards | None = None,
    only_running: bool = False,
) -> tuple[list[Step], list[str]]:
    """XState's steps for ``events``, and the ids of the invokes running after the start;
    each guard of ``guards`` always gives its value, or a (JavaScript, Python) pair of
    expressions gives it (over ``context``, ``event``, ``params``; ``self``, ``params``).
    With ``only_running``, an invoke's outcome is sent only while the invoke runs (else
    its step is ``skipped``)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the XState reference cannot run")
    if not (REFERENCE_DIR / "node_modules" / "xstate").is_dir():
        pytest.fail("the xstate package is not installed: npm ci --prefix tests/xstate_reference")
    request = {
        "version": version,
        "config": config,
        "events": [{"type": e} for e in events],
        "onlyRunning": only_running,
        "guards": {
            name: value[0] if isinstance(value, tuple) else json.dumps(value)
            for name, value in (guards or {}).items()
        },
    }
    done = subprocess.run(
        [node, str(REFERENCE_DIR / "run.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=REFERENCE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    out = [
        Step(
            tuple(s["value"]),
            s["context"] or {},
            tuple(s["actions"]),
            s["skipped"],
            tuple((name, given) for name, given in s["started"]),
        )
        for s in steps
    ]
    return out, list(steps[0]["children"])


def _actions_module(
    actions: set[str], sources: set[str], fields: JsonObject, guards: Guards
) -> str:
    lines = [
        "from functools import partial",
        "from json import dumps as _dumps",
        "from typing import ClassVar",
        "from orchestrator import Context, JsonObject",
        "dumps = partial(_dumps, separators=(',', ':'))",
        "class Recorder(Context):",
        f"    fields: ClassVar[JsonObject] = {fields!r}",
    ]
    # Each method under the Python form of its name (isValid? is isValid_), as chart
    # authors write them.
    for name in sorted(actions):
        lines += [
            f"    def {_python(name)}(self, params: JsonObject | None = None) -> None:",
            f"        run = {name!r} if params is None else {name!r} + '(' + dumps(params) + ')'",
            "        self.__dict__.setdefault('actions_run', []).append(run)",
        ]
    for name in sorted(sources - actions):
        lines += [
            f"    def {_python(name)}(self, input: JsonObject | None = None) -> None:",
            f"        self.send_command({name!r}, {{}} if input is None else {{'input': input}})",
        ]
    for name, value in sorted(guards.items()):
        python = value[1] if isinstance(value, tuple) else repr(value)
        lines += [
            f"    def {_python(name)}(self, params: JsonObject | None = None) -> bool:",
            f"        return bool({python})",
        ]
    return "\n".join(lines) + "\n"


def _python(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _names(config: Any, actions: set[str], sources: set[str]) -> None:
    """Every action name and every invoke src in ``config``."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key in ("entry", "exit", "actions"):
                for item in value if isinstance(value, list) else [value]:
                    actions.add(item["type"] if isinstance(item, dict) else item)
            elif key == "src" and isinstance(value, str):
                sources.add(value)
            elif key != "context":
                _names(value, actions, sources)
    elif isinstance(config, list):
        for item in config:
            _names(item, actions, sources)


@dataclass
class Ours:
    steps: list[Step]
    # The invoke each command of the start was sent for.
    start_invokes: list[str | None]


def ours(
    directory: Path,
    config: JsonObject,
    events: list[str],
    *,
    fields: JsonObject | None = None,
    guards: Guards | None = None,
    ignore_unhandled: bool = False,
) -> Ours:
    """Our steps for ``events``: ``config`` loaded as a chart, applied to a new order;
    each guard of ``guards`` always gives its value. With ``ignore_unhandled``, an event
    the order refuses (no transition takes it now) changes nothing, as XState ignores it;
    else it fails the test."""
    actions: set[str] = set()
    sources: set[str] = set()
    _names(config, actions, sources)
    module = _actions_module(actions, sources, fields or {}, guards or {})
    (directory / "ref.py").write_text(module)
    path = directory / "ref.json"
    path.write_text(json.dumps(config))
    chart = load_chart(path)
    order = chart.start("o-1")
    commands = order.context.take_commands()
    start_invokes = [c.invoke for c in commands]

    def step(commands: list[CommandIntent]) -> Step:
        data = order.context.data()
        del data["status"]
        run = order.context.__dict__.pop("actions_run", [])
        started = tuple(
            (c.type, dumps(c.data["input"]) if "input" in c.data else None) for c in commands
        )
        return Step(tuple(sorted(order.state_path().split(","))), data, tuple(run), False, started)

    internal = {name: event for event, name in chart.event_names.items()}
    steps = [step(commands)]
    for event in events:
        try:
            order.send(internal.get(event, event), {})
        except TransitionNotAllowed:
            if not ignore_unhandled:
                raise
        steps.append(step(order.context.take_commands()))
    return Ours(steps, start_invokes)
