"""Actions of the pizza chart (pizza.yaml), bound by name to the names the chart uses."""

from __future__ import annotations

from typing import ClassVar

from orchestrator import Context, InvalidInput, JsonObject, Refused


def _pizza(data: JsonObject) -> JsonObject:
    pizza = data.get("pizza")
    if not isinstance(pizza, dict):
        raise InvalidInput("data.pizza", 'pizza must be a JSON object, e.g. {"name": "hawaii"}')
    return pizza


class PizzaOrder(Context):
    # ``retries`` counts the automatic retries of the current stage (kitchen or delivery).
    fields: ClassVar[JsonObject] = {"items": [], "retries": 0}
    options: ClassVar[JsonObject] = {
        # Seconds to wait for PIZZA_READY / PIZZA_DELIVERED before the stage is in error.
        "kitchenTimeout": 600.0,
        "deliveryTimeout": 1800.0,
        # Automatic retries per stage, the first after retryBackoff seconds, each next one
        # after twice as long; then the order waits for RETRY (or CANCEL in the kitchen).
        "maxRetries": 3,
        "retryBackoff": 2.0,
    }
    create_event: ClassVar[str | None] = "ADD_PIZZA"
    create_fields: ClassVar[dict[str, type]] = {"pizza": dict}
    items: list[JsonObject]
    retries: int

    def addPizzaToItems(self, data: JsonObject) -> None:
        self.items.append(_pizza(data))

    def removePizzaFromItems(self, data: JsonObject) -> None:
        pizza = _pizza(data)
        if pizza not in self.items:
            raise Refused(f"the order has no pizza equal to {pizza}")
        self.items.remove(pizza)

    def orderPizzaFromKitchen(self) -> None:
        self.send_command("MAKE_PIZZA", {"items": self.items}, invoke="sendOrderToKitchen")

    def orderDelivery(self) -> None:
        self.send_command("DELIVER_PIZZA", {"items": self.items}, invoke="sendOrderToDelivery")

    def cancelPizzaInKitchen(self) -> None:
        self.send_command("CANCEL_PIZZA", {"items": self.items}, invoke="sendCancelToKitchen")

    # -- timeouts and retries --------------------------------------------------------------

    def kitchenTimeout(self) -> float:
        return float(self.options["kitchenTimeout"])

    def deliveryTimeout(self) -> float:
        return float(self.options["deliveryTimeout"])

    def retryDelay(self) -> float | None:
        """Seconds to the next automatic retry, doubling each time; None when used up."""
        if self.retries >= self.options["maxRetries"]:
            return None
        return float(self.options["retryBackoff"]) * 2.0**self.retries

    def startStage(self) -> None:
        self.retries = 0

    def countRetry(self) -> None:
        self.retries += 1

    def describeKitchenError(self) -> None:
        self.status = "Ooops! Something got burned... " + self._next_step("RETRY or CANCEL")

    def describeDeliveryError(self) -> None:
        self.status = "Ooops! The delivery got lost... " + self._next_step("RETRY")

    def _next_step(self, manual: str) -> str:
        delay = self.retryDelay()
        if delay is None and self.retries == 0:
            return f"Send {manual}."
        if delay is None:
            return f"Gave up after {self.retries} automatic retries: send {manual}."
        most = self.options["maxRetries"]
        return f"Trying again in {delay:g} s (retry {self.retries + 1} of {most})."

    # -- cancellation ------------------------------------------------------------------

    def cancelledBeforeKitchen(self) -> None:
        self.status = "Cancelled before anything was baked."

    def kitchenStopped(self) -> None:
        self.status = "Cancelled: the kitchen stopped and threw the pizza away."

    def kitchenUnreachable(self) -> None:
        self.status = (
            "Cancelled, but the kitchen could not be told: if it took the order, it may "
            "still bake the pizza."
        )
