"""The kitchen's commands and the events that answer them."""

from __future__ import annotations

NAME = "kitchen"
ANSWERS = {"MAKE_PIZZA": "PIZZA_READY"}
