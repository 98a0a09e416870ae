"""The kitchen's commands and the events that answer them."""

from __future__ import annotations

NAME = "kitchen"
ANSWERS = {"MAKE_PIZZA": "PIZZA_READY", "CANCEL_PIZZA": "PIZZA_CANCELLED"}
# A compensation and the command it undoes: a cancelled pizza is thrown away.
COMPENSATIONS = {"CANCEL_PIZZA": "MAKE_PIZZA"}
