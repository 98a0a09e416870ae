"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

import orchestrator


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


VIEW = {"$ref": "#/components/schemas/OrderView"}
ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeat a request safely: a repeat gets the first answer and applies nothing.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Order orchestrator",
        "version": orchestrator.__version__,
        "description": "One durable statechart actor per order. Errors are RFC 9457 problems.",
    },
    "paths": {
        "/orders": {
            "post": {
                "summary": "Create an order with its first pizza (applied as version 1)",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Create"}}
                    },
                },
                "responses": {
                    "201": _json(VIEW, "The new order"),
                    "413": _problem("Body too large"),
                    "422": _problem("Malformed body; `field` names the culprit"),
                },
            },
            "get": {
                "summary": "List orders, newest first",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Prefix of the state path, e.g. bakePizza",
                    },
                    {"name": "chart", "in": "query", "schema": {"type": "string"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["orders", "nextCursor"],
                            "properties": {
                                "orders": {"type": "array", "items": VIEW},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        },
                        "A page of orders",
                    ),
                    "422": _problem("Bad query parameter"),
                },
            },
        },
        "/orders/{order_id}": {
            "get": {
                "summary": "The order's current view",
                "parameters": [ORDER_ID],
                "responses": {"200": _json(VIEW, "The order"), "404": _problem("No such order")},
            }
        },
        "/orders/{order_id}/events": {
            "post": {
                "summary": "Send one event to the order",
                "parameters": [
                    ORDER_ID,
                    IDEMPOTENCY_KEY,
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        "description": "Apply only if the order is at this version",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Event"}}
                    },
                },
                "responses": {
                    "200": _json(VIEW, "The order after the event"),
                    "404": _problem("No such order"),
                    "409": _problem("Not allowed in this state (`allowed` lists what is)"),
                    "412": _problem("The order moved past If-Match"),
                    "413": _problem("Body too large"),
                    "422": _problem("Malformed body or unknown event type"),
                },
            }
        },
        "/orders/{order_id}/history": {
            "get": {
                "summary": "The journal of applied events, oldest first",
                "parameters": [
                    ORDER_ID,
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/History"}, "The history"),
                    "404": _problem("No such order"),
                    "422": _problem("Bad query parameter"),
                },
            }
        },
        "/events": {
            "post": {
                "summary": "A CloudEvent for an order (structured or binary HTTP binding)",
                "description": (
                    "With a webhook secret set, X-Orchestrator-Timestamp (Unix seconds) and "
                    "X-Orchestrator-Signature: sha256=HMAC-SHA256(secret, timestamp + '.' + body) "
                    "are required."
                ),
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/cloudevents+json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json(VIEW, "The order after the event"),
                    "401": _problem("Missing, bad or stale signature"),
                    "404": _problem("No such order"),
                    "409": _problem("Not allowed in this state"),
                    "413": _problem("Body too large"),
                    "422": _problem("Not a usable CloudEvent"),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {"200": {"description": "Alive"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: recovery done, accepting work",
                "responses": {"200": {"description": "Ready"}, "503": _problem("Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Text format"}},
            }
        },
    },
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Only when the server has ORCHESTRATOR_API_TOKEN set.",
            }
        },
        "schemas": {
            "Pizza": {"type": "object", "examples": [{"name": "pineapple", "size": "L"}]},
            "Create": {
                "type": "object",
                "required": ["pizza"],
                "additionalProperties": False,
                "properties": {
                    "pizza": {"$ref": "#/components/schemas/Pizza"},
                    "chart": {"type": "string", "default": "pizza"},
                },
            },
            "Event": {
                "type": "object",
                "required": ["type"],
                "additionalProperties": False,
                "properties": {
                    "type": {"type": "string", "examples": ["ADD_PIZZA", "CONFIRM_PIZZA"]},
                    "data": {"type": "object"},
                },
            },
            "OrderView": {
                "type": "object",
                "required": [
                    "id",
                    "chart",
                    "state",
                    "status",
                    "items",
                    "nextEvents",
                    "version",
                    "createdAt",
                    "updatedAt",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "chart": {"type": "string"},
                    "state": {"type": "string", "examples": ["bakePizza.waitingForPizzaToBeBaked"]},
                    "status": {"type": ["string", "null"]},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Pizza"}},
                    "context": {"type": "object"},
                    "nextEvents": {"type": "array", "items": {"type": "string"}},
                    "version": {"type": "integer", "minimum": 1},
                    "createdAt": {"type": "string", "format": "date-time"},
                    "updatedAt": {"type": "string", "format": "date-time"},
                },
            },
            "History": {
                "type": "object",
                "required": ["id", "entries"],
                "properties": {
                    "id": {"type": "string"},
                    "nextAfter": {"type": "integer"},
                    "entries": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": [
                                "version",
                                "eventId",
                                "type",
                                "data",
                                "at",
                                "stateBefore",
                                "stateAfter",
                                "durationMs",
                            ],
                            "properties": {
                                "version": {"type": "integer"},
                                "eventId": {"type": "string"},
                                "type": {"type": "string"},
                                "data": {"type": "object"},
                                "at": {"type": "string", "format": "date-time"},
                                "stateBefore": {"type": "string"},
                                "stateAfter": {"type": "string"},
                                "durationMs": {
                                    "type": "number",
                                    "description": "Time spent in stateBefore",
                                },
                            },
                        },
                    },
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "field": {"type": "string"},
                    "allowed": {"type": "array", "items": {"type": "string"}},
                    "version": {"type": "integer"},
                },
            },
        },
    },
}


def _websocket(summary: str, description: str, parameters: list[Any]) -> dict[str, Any]:
    """A WebSocket as OpenAPI can say it: a GET answered 101, its messages described."""
    return {
        "get": {
            "summary": summary,
            "description": description,
            "parameters": parameters,
            "responses": {
                "101": {
                    "description": (
                        'Switching to WebSocket; each message is {"version", "event", "view"}: '
                        "the applied event's history entry (null on connect) and the view"
                    ),
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/WsMessage"}}
                    },
                }
            },
        }
    }


ACCESS_TOKEN = {
    "name": "access_token",
    "in": "query",
    "required": False,
    "description": "The API token, for browsers, which cannot set headers on a WebSocket",
    "schema": {"type": "string"},
}
STATE_NODE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "initial", "final", "parallel", "history", "children"],
    "properties": {
        "id": {"type": "string"},
        "initial": {"type": "boolean"},
        "final": {"type": "boolean"},
        "parallel": {"type": "boolean"},
        "history": {"enum": [None, "shallow", "deep"]},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/ChartState"}},
    },
}

# The chart structure and the WebSockets, which the dashboard reads.
OPENAPI["paths"].update(
    {
        "/charts": {
            "get": {
                "summary": "The loaded charts, and the one POST /orders uses by default",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["charts", "default"],
                            "properties": {
                                "charts": {"type": "array", "items": {"type": "string"}},
                                "default": {"type": "string"},
                            },
                        },
                        "Chart names",
                    )
                },
            }
        },
        "/charts/{name}": {
            "get": {
                "summary": "A chart's states as a tree and its transitions",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Chart"}, "The chart"),
                    "404": _problem("No such chart"),
                },
            }
        },
        "/orders/{order_id}/ws": _websocket(
            "WebSocket: one order's view on connect, then one message per applied event",
            "Close codes: 4401 no or wrong token, 4404 unknown order, 4422 bad `after`, "
            "4008 fell behind (reconnect with ?after=<last version seen>).",
            [
                ORDER_ID,
                ACCESS_TOKEN,
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
        ),
        "/ws": _websocket(
            "WebSocket firehose: every order's messages as its events are applied",
            "Nothing is sent on connect and nothing is replayed: read GET /orders after "
            "connecting. Close codes: 4401 no or wrong token, 4008 fell behind (reconnect, "
            "then read GET /orders again).",
            [ACCESS_TOKEN],
        ),
    }
)
OPENAPI["components"]["schemas"].update(
    {
        "ChartState": STATE_NODE,
        "Chart": {
            "type": "object",
            "required": ["name", "createFields", "creatable", "states", "transitions"],
            "properties": {
                "name": {"type": "string"},
                "createFields": {
                    "type": "object",
                    "description": "What POST /orders takes besides `chart`: field -> JSON type",
                    "additionalProperties": {"type": "string"},
                    "examples": [{"pizza": "object"}],
                },
                "creatable": {"type": "boolean"},
                "states": {"type": "array", "items": {"$ref": "#/components/schemas/ChartState"}},
                "transitions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["source", "target", "event", "internal"],
                        "properties": {
                            "source": {"type": "string"},
                            "target": {
                                "type": ["string", "null"],
                                "description": "null: an action run in place, no state change",
                            },
                            "event": {
                                "type": ["string", "null"],
                                "description": "Space-separated event names; null if eventless",
                            },
                            "internal": {"type": "boolean"},
                        },
                    },
                },
            },
        },
        "WsMessage": {
            "type": "object",
            "required": ["version", "event", "view"],
            "properties": {
                "version": {"type": "integer"},
                "event": {"type": ["object", "null"]},
                "view": VIEW,
            },
        },
    }
)
