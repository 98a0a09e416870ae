"""Actions of the XState pizza chart (xstate_pizza.json), named as in the seed article.

The pizza actions and the two services are those of the YAML chart (pizza.py); this
module adds the seed's bookkeeping actions. The converter turns each state's
``meta.message`` into an assign of ``status`` on entry, so ``updateStatus``, which in the
seed copied that message into the context, has nothing left to do but must still resolve.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from orchestrator import JsonObject
from statecharts.pizza import PizzaOrder

logger = logging.getLogger(__name__)


class XStatePizzaOrder(PizzaOrder):
    # The seed's machine has no timeouts or retries: none of the YAML chart's data for them.
    fields: ClassVar[JsonObject] = {"items": []}
    options: ClassVar[JsonObject] = {}

    def updateStatus(self) -> None:
        """The status is already set from ``meta.message`` before the entry actions run."""

    def setSendOrderStatus(self) -> None:
        """The target state's ``meta.message`` says the order was sent; only log it."""
        logger.debug("order %s: command sent", self.order_id)

    def setErrorStatus(self, data: JsonObject) -> None:
        """The target state's ``meta.message`` tells the client; log the broker's reason."""
        logger.warning("order %s: command failed: %s", self.order_id, data.get("reason"))

    def log(self, event: str) -> None:
        logger.debug("order %s: %s", self.order_id, event)
