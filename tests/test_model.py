"""The JSON and time formats every stored and served value goes through (orchestrator.model).

Both are faster paths to what the standard library gives; these tests hold them to the
standard library's answers.
"""

from __future__ import annotations

import enum
import json
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.model import iso, to_json


def reference_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class Size(enum.IntEnum):
    L = 3


class Name(str):
    pass


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "big", "float", "str", "bool", "none"]
    if depth < 4:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(2**63), 2**63)
    if kind == "big":
        return rng.randint(-(10**40), 10**40)
    if kind == "float":
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-320, 308)])
    if kind == "str":
        return "".join(
            chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0, 0x10FFFF)]))
            for _ in range(rng.randint(0, 8))
        )
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        str(random_value(rng, 4)): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))
    }


def test_to_json_writes_what_json_dumps_writes() -> None:
    rng = random.Random(7)
    values = [random_value(rng) for _ in range(3000)]
    values += [
        {"pizza": {"name": "quattro formaggi", "size": "L"}, "n": 1.5e300, "lone": "\ud800"},
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        [Size.L, Name("margherita"), -0.0, 1e-320, 2**70],
        "",
        'é\u2028\n"\\',
    ]
    for value in values:
        assert to_json(value) == reference_json(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"items": [{"price": math.nan}]}])
def test_to_json_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        to_json(value)


def test_to_json_refuses_objects_and_cycles() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        to_json({"when": datetime.now(UTC)})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError):
        to_json({"items": cycle})


def test_iso_writes_what_datetime_writes() -> None:
    rng = random.Random(11)
    now = time.time()
    second = float(int(now))
    # Around the roundings: to the microsecond (half to even), then down to the millisecond.
    edges = [0.0005, 0.0004995, 0.9995, 0.9999994999, 0.9999995, 0.0000005, 0.0000015, 0.999]
    stamps = [second + edge for edge in edges] + [0.0, 1.0, 4102444800.25]
    stamps += [now + rng.random() * 10_000 for _ in range(20_000)]
    stamps += [rng.uniform(0, 4e9) for _ in range(20_000)]
    stamps += [rng.randint(0, 2**32) + rng.randint(0, 999_999) / 1e6 for _ in range(20_000)]
    stamps += [-rng.random() * 1e6 for _ in range(1000)]
    for stamp in stamps:
        expected = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
        assert iso(stamp) == expected, stamp
