"""The delivery's commands and the events that answer them."""

from __future__ import annotations

NAME = "delivery"
ANSWERS = {"DELIVER_PIZZA": "PIZZA_DELIVERED"}
COMPENSATIONS: dict[str, str] = {}
