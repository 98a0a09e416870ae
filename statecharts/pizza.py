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
    fields: ClassVar[JsonObject] = {"items": []}
    create_event: ClassVar[str | None] = "ADD_PIZZA"
    create_fields: ClassVar[dict[str, type]] = {"pizza": dict}
    items: list[JsonObject]

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
