"""Actions, guards and delays of the payment chart (payment.yaml).

The task token identifies the step that waits for a callback, as the workflow's
``$context.task.token`` does: 128 random bits per step, kept in the order's snapshot. Each
waiting step sends it to the payment provider in a command (REQUEST_PAYMENT, then
SETTLE_PAYMENT), and the provider's callback carries it back, so a late callback for an
earlier step is refused. It is a private field: on no view of the order, and left out of
the history's event data. The callbacks are also service events (payment.yaml's
``serviceEvents``), taken only from the broker or a signed webhook. Rejected: a token
derived from the order id and the step's count, which kept the action deterministic but
which anyone who saw an order's id could compute.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import ClassVar

from orchestrator import Context, InvalidInput, JsonObject

METHODS = {"zhifubao": "Alipay", "weixin": "WeChat Pay", "unionpay": "UnionPay"}


class PaymentOrder(Context):
    fields: ClassVar[JsonObject] = {
        "products": [],
        "supplier": None,
        "address": None,
        "orderNum": None,
        "price": 0,
        "paymentcombination": [],
        "paymentMethod": None,
        "taskToken": None,
        "steps": 0,
        "reason": None,
    }
    private_fields: ClassVar[frozenset[str]] = frozenset({"taskToken"})
    options: ClassVar[JsonObject] = {
        # Seconds each waitForCallback step waits before the order is cancelled.
        "paymentTimeout": 300.0,
        "settleTimeout": 300.0,
    }
    create_event: ClassVar[str | None] = "PLACE_ORDER"
    create_fields: ClassVar[dict[str, type]] = {"products": list, "supplier": str, "address": str}
    products: list[JsonObject]
    price: float
    paymentMethod: str | None
    taskToken: str | None
    steps: int

    # -- generateInfo ------------------------------------------------------------------

    def generateInfo(self, data: JsonObject) -> None:
        products = data.get("products")
        if not isinstance(products, list) or not products:
            raise InvalidInput("data.products", "products must be a non-empty list")
        price = 0.0
        for n, product in enumerate(products):
            cost = product.get("price") if isinstance(product, dict) else None
            if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
                raise InvalidInput(
                    f"data.products[{n}].price", "each product needs a price, a number >= 0"
                )
            try:
                price += float(cost)
            except OverflowError:
                price = math.inf
        if not math.isfinite(price):
            raise InvalidInput("data.products", "the products' prices add up beyond any number")
        self.products = products
        self.supplier = data.get("supplier")
        self.address = data.get("address")
        self.price = round(price, 2)
        self.orderNum = f"ORD-{self.order_id[-12:]}"
        self.paymentcombination = sorted(METHODS)

    # -- waitForCallback ---------------------------------------------------------------

    def issueTaskToken(self) -> None:
        self.steps += 1
        self.taskToken = secrets.token_hex(16)

    def requestPayment(self) -> None:
        """Ask the payment provider for the payment; its callback brings the token back."""
        self.send_command(
            "REQUEST_PAYMENT",
            {"taskToken": self.taskToken, "orderNum": self.orderNum, "price": self.price},
        )

    def requestSettlement(self) -> None:
        self.send_command(
            "SETTLE_PAYMENT",
            {"taskToken": self.taskToken, "orderNum": self.orderNum, "method": self.paymentMethod},
        )

    def tokenMatches(self, data: JsonObject) -> bool:
        token = data.get("taskToken")
        if not isinstance(token, str):
            raise InvalidInput("data.taskToken", "the callback must carry the step's taskToken")
        expected = self.taskToken or ""
        return hmac.compare_digest(token.encode(), expected.encode())

    def paymentTimeout(self) -> float:
        return float(self.options["paymentTimeout"])

    def settleTimeout(self) -> float:
        return float(self.options["settleTimeout"])

    # -- payment and the choice --------------------------------------------------------

    def recordPayment(self, data: JsonObject) -> None:
        method = data.get("paymentMethod")
        if not isinstance(method, str):
            raise InvalidInput("data.paymentMethod", "paymentMethod must be a string")
        self.paymentMethod = method

    def paidWithZhifubao(self) -> bool:
        return self.paymentMethod == "zhifubao"

    def paidWithWeixin(self) -> bool:
        return self.paymentMethod == "weixin"

    def paidWithUnionpay(self) -> bool:
        return self.paymentMethod == "unionpay"

    # -- endings -----------------------------------------------------------------------

    def describeCompletion(self) -> None:
        method = METHODS.get(self.paymentMethod or "", self.paymentMethod)
        self.status = f"Completed: {self.orderNum} paid {self.price:g} with {method}."
        self.taskToken = None

    def unknownMethod(self) -> None:
        self._cancel(f"payment method {self.paymentMethod!r} is not one of {sorted(METHODS)}")

    def paymentTimedOut(self) -> None:
        self._cancel("no payment callback in time")

    def settlementTimedOut(self) -> None:
        self._cancel(f"{METHODS.get(self.paymentMethod or '')} did not settle in time")

    def _cancel(self, reason: str) -> None:
        self.reason = reason
        self.status = f"Cancelled: {reason}."
        self.taskToken = None
