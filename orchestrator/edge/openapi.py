"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json.

tests/contract/test_schema.py runs schemathesis against a live server loaded from this
document, so every status, header and body a route answers, errors included, must be
described here exactly: a mismatch fails that test.

The create body is not written here: ``document`` builds it when the app starts, a
``oneOf`` with one closed object per loaded chart that can be created, from that chart's
own ``create_fields`` (what POST /orders checks), so a chart dropped into the charts
directory is in the schema without editing this module, and a client generated from the
document can create an order of every chart.

Nor are the paths listed by hand: ``document`` walks the app's routes and takes, for each
route and method, its operation from the ones written here, and refuses to start if a
route has none or an operation has no route. So the document has every route the app
serves, each once, and nothing else. A route left out on purpose says so with
``include_in_schema=False`` (the dashboard's redirect); mounts (the dashboard's static
files) are not API.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.routing import BaseRoute, Route, WebSocketRoute

import orchestrator
from orchestrator.charts import JSON_TYPES, Chart
from orchestrator.numbers import MAX_INTEGER

PROBLEM_JSON = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"description": description, "required": True, "schema": schema}


def _json(
    schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _problem(
    status: int, description: str, *required: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem answer with this status, and the extension members it always has."""
    narrowed: dict[str, Any] = {"properties": {"status": {"const": status}}}
    if required:
        narrowed["required"] = list(required)
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"allOf": [_ref("Problem"), narrowed]}}},
    }
    if headers:
        response["headers"] = headers
    return response


VIEW = _ref("OrderView")
RETRY_AFTER = {"Retry-After": _header("Seconds to wait before retrying", "^[0-9]+$")}
NOT_FOUND = _problem(404, "No such order")
TOO_LARGE = _problem(413, "Body larger than the server's --max-body-bytes", "field")
NOT_JSON = _problem(415, "The body is not declared JSON (content-type)", "field")
UNAVAILABLE = _problem(503, "The store or broker failed; retry later", headers=RETRY_AFTER)
SERVICE_ONLY = _problem(
    403,
    "An event the chart takes only from a service (its serviceEvents): over the broker or "
    "a signed webhook; `event` names it",
    "field",
    "event",
)
UNAUTHORIZED = _problem(
    401,
    "Missing or wrong bearer token (only when the server has ORCHESTRATOR_API_TOKEN set)",
    headers={"WWW-Authenticate": _header("The scheme to use", "^Bearer$")},
)


def _with_links(response: dict[str, Any]) -> dict[str, Any]:
    """An order view answer, linked to the operations on that order (for clients and for
    schemathesis's stateful run)."""
    order = {"order_id": "$response.body#/id"}
    links = {
        "getOrder": {"operationId": "getOrder", "parameters": order},
        "getHistory": {"operationId": "getHistory", "parameters": order},
        "sendEvent": {"operationId": "sendEvent", "parameters": order},
    }
    return {**response, "links": links}


def _guarded(responses: dict[str, Any]) -> dict[str, Any]:
    """The answers of an operation behind the bearer token that reads or writes orders."""
    return {**responses, "401": UNAUTHORIZED, "503": UNAVAILABLE}


ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Repeat a request safely: a repeat gets the first answer and applies nothing; the "
        "same key with a different body gets 422. Keys starting with done:, error:, timer: "
        "or auto: (the orchestrator's own event ids) get 422."
    ),
    "schema": {"type": "string", "pattern": "^[ -~]{1,200}$"},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Apply only if the order is at this version: `3`, `"3"` or `W/"3"`',
    "schema": {"type": "string", "pattern": '^(W/)?"?[0-9]{1,19}"?$'},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _limit(upper: int) -> dict[str, Any]:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": upper}, "Page size")


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# The webhook's own headers: the Standard Webhooks signature, and the binary binding's
# ce-* attributes (read only when no webhook secret is set).
SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"{description}; required when the server has a webhook secret",
        "schema": {"type": "string"},
    }
    for name, description in (
        ("webhook-id", "The CloudEvent's id"),
        ("webhook-timestamp", "Unix seconds"),
        ("webhook-signature", "`v1,<base64>`, space-separated when there are several"),
    )
]
BINARY_HEADERS = [
    {
        "name": f"ce-{name}",
        "in": "header",
        "required": False,
        "description": f"Binary binding: the CloudEvent's `{name}` attribute",
        "schema": {"type": "string"},
    }
    for name in ("specversion", "id", "type", "source", "subject")
]

PATHS: dict[str, Any] = {
    "/orders": {
        "post": {
            "operationId": "createOrder",
            "summary": "Create an order of a chart (its first event, applied as version 1)",
            "description": (
                "The body holds the chart's create fields (GET /charts/{name}: "
                "`createFields`) and `chart`, which names the chart and may be left out "
                "for the default one (GET /charts: `default`)."
            ),
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body(_ref("Create")),
            "responses": _guarded(
                {
                    "201": _with_links(
                        _json(
                            VIEW,
                            "The new order",
                            {"Location": _header("/orders/{id}", "^/orders/[^/]+$")},
                        )
                    ),
                    "409": _problem(
                        409,
                        "Refused by the chart: an action of the first event or of the initial "
                        "states failed, or the turn's transitions did not settle (`ChartLoop`);"
                        " or the order would pass --max-order-bytes (`OrderTooLarge`)",
                    ),
                    "413": TOO_LARGE,
                    "415": NOT_JSON,
                    "422": _problem(422, "Malformed body or reused key; `field` names it", "field"),
                }
            ),
        },
        "get": {
            "operationId": "listOrders",
            "summary": "List orders, newest first",
            "parameters": [
                _query("state", {"type": "string"}, "Prefix of the state path, e.g. bakePizza"),
                _query("chart", {"type": "string"}, "Only orders of this chart"),
                _query("cursor", {"type": "string"}, "The nextCursor of the previous page"),
                _limit(500),
            ],
            "responses": _guarded(
                {
                    "200": _json(_ref("OrderPage"), "A page of orders"),
                    "422": _problem(422, "Bad or unknown query parameter", "field"),
                }
            ),
        },
    },
    "/orders/{order_id}": {
        "get": {
            "operationId": "getOrder",
            "summary": "The order's current view",
            "parameters": [ORDER_ID],
            "responses": _guarded({"200": _with_links(_json(VIEW, "The order")), "404": NOT_FOUND}),
        }
    },
    "/orders/{order_id}/events": {
        "post": {
            "operationId": "sendEvent",
            "summary": "Send one event to the order",
            "parameters": [ORDER_ID, IDEMPOTENCY_KEY, IF_MATCH],
            "requestBody": _body(_ref("Event")),
            "responses": _guarded(
                {
                    "200": _with_links(_json(VIEW, "The order after the event")),
                    "403": SERVICE_ONLY,
                    "404": NOT_FOUND,
                    "409": _problem(
                        409,
                        "Not allowed in this state (then `allowed`, `state` and `version` say "
                        "what is), or refused by the chart (e.g. no such pizza to remove; "
                        "`ChartLoop`: its transitions did not settle), or the order would pass "
                        "--max-order-bytes or --max-order-events (`OrderTooLarge`: then "
                        "`limit` and `maximum` name it)",
                    ),
                    "412": _problem(412, "The order moved past If-Match", "version"),
                    "413": TOO_LARGE,
                    "415": NOT_JSON,
                    "422": _problem(
                        422, "Malformed body or header, unknown event type, reused key", "field"
                    ),
                }
            ),
        }
    },
    "/orders/{order_id}/history": {
        "get": {
            "operationId": "getHistory",
            "summary": "The journal of applied events, oldest first",
            "description": (
                "A page ends at `limit` entries or once it passes about 1 MiB of JSON"
                " (it holds at least one entry); `nextAfter` is then the `after` of the"
                " next page. A typical order's history is one page."
            ),
            "parameters": [
                ORDER_ID,
                _query(
                    "after",
                    {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
                    "Only the events after this version (the previous page's nextAfter)",
                ),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
                    "Most entries in the page (a page also ends after about 1 MiB)",
                ),
            ],
            "responses": _guarded(
                {
                    "200": _json(_ref("History"), "The history"),
                    "404": NOT_FOUND,
                    "422": _problem(422, "Bad query parameter", "field"),
                }
            ),
        }
    },
    "/orders/{order_id}/ws": {
        "get": {
            "operationId": "watchOrder",
            "summary": "WebSocket: the live view of one order",
            "description": (
                "A WebSocket (RFC 6455), which OpenAPI cannot describe fully. Every message is "
                "a `WsMessage`: the view on connect (`event` null), then one per applied "
                "event; with `?after=V` the events after V are replayed from the journal "
                "first. Close codes: 4401 bad token, 4404 unknown order, 4422 bad `after`, "
                "4008 fell behind (reconnect with `?after=<last version seen>`)."
            ),
            "parameters": [
                ORDER_ID,
                _query(
                    "after",
                    {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
                    "Replay the events after this version, then go live",
                ),
            ],
            "security": [{"bearer": []}, {"accessToken": []}],
            "responses": {
                "101": {
                    "description": "Switched to the WebSocket protocol",
                    "content": {"application/json": {"schema": _ref("WsMessage")}},
                }
            },
        }
    },
    "/events": {
        "post": {
            "operationId": "receiveCloudEvent",
            "summary": "A CloudEvent for an order (structured or binary HTTP binding)",
            "description": (
                "Structured: the whole CloudEvent as the JSON body. Binary: the attributes as "
                "ce-* headers and the event's data as the body. With a webhook secret set, "
                "only the structured binding, signed with Standard Webhooks: webhook-id (the "
                "CloudEvent's id), webhook-timestamp (Unix seconds) and webhook-signature: "
                "v1,base64(HMAC-SHA256(key, id + '.' + timestamp + '.' + body)); the signature "
                "stands in for the bearer token. Without one, the bearer token is required "
                "when the server has one, and the chart's service events are refused (403). "
                "A repeated CloudEvent id gets the first answer and applies nothing."
            ),
            # The token only when no webhook secret is set, which a document cannot say.
            "security": [{}, {"bearer": []}],
            "parameters": SIGNATURE_HEADERS + BINARY_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/cloudevents+json": {"schema": _ref("CloudEvent")},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "200": _json(VIEW, "The order after the event"),
                "400": _problem(400, "A signed event with ce-* headers, which it does not sign"),
                "401": _problem(
                    401,
                    "Missing, bad or stale signature; without a webhook secret, a missing or "
                    "wrong bearer token",
                    headers={
                        "WWW-Authenticate": _header("The scheme", "^(Standard-Webhooks|Bearer)$")
                    },
                ),
                "403": SERVICE_ONLY,
                "404": NOT_FOUND,
                "409": _problem(
                    409,
                    "Not allowed in this state, refused by the chart, or the order would pass "
                    "a size limit (`OrderTooLarge`)",
                ),
                "413": TOO_LARGE,
                "415": _problem(
                    415, "Not JSON, or a signed event that is not a structured CloudEvent", "field"
                ),
                "422": _problem(
                    422,
                    "Not a usable CloudEvent, an unknown type, or webhook-id is not its id",
                    "field",
                ),
                "503": UNAVAILABLE,
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "security": [],
            "responses": {"200": _json(_ref("Status"), "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: recovery done, accepting work",
            "security": [],
            "responses": {
                "200": _json(_ref("Status"), "Ready"),
                "503": _problem(503, "Starting up or shutting down"),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
        }
    },
}

TIMESTAMP = {"type": "string", "format": "date-time"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _record(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """A closed object: every property required but the ``optional`` ones, no others."""
    required = [name for name in properties if name not in optional]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


SCHEMAS: dict[str, Any] = {
    "Pizza": {"type": "object", "examples": [{"name": "pineapple", "size": "L"}]},
    "Event": _record(
        {
            "type": {
                "type": "string",
                "minLength": 1,
                "description": "An event of the order's chart; done.* and error.* are the "
                "orchestrator's own and refused with 422",
                "examples": ["CONFIRM_PIZZA"],
            },
            "data": {"type": "object", "examples": [{"pizza": {"name": "hawaii"}}]},
        },
        "data",
    ),
    "CloudEvent": {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON; `subject` is the order id",
        "required": ["specversion", "id", "type", "source", "subject"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "type": {"type": "string", "minLength": 1, "examples": ["PIZZA_READY"]},
            "source": {"type": "string", "minLength": 1},
            "subject": {"type": "string", "minLength": 1},
            "data": {"type": "object"},
        },
    },
    "OrderView": _record(
        {
            "id": {"type": "string"},
            "chart": {"type": "string"},
            "state": {"type": "string", "examples": ["bakePizza.waitingForPizzaToBeBaked"]},
            "status": {"type": ["string", "null"]},
            "items": {"type": "array", "items": _ref("Pizza")},
            "context": {"type": "object"},
            "nextEvents": STRINGS,
            "version": {"type": "integer", "minimum": 1},
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    ),
    "OrderPage": _record(
        {"orders": {"type": "array", "items": VIEW}, "nextCursor": {"type": ["string", "null"]}}
    ),
    "HistoryEntry": _record(
        {
            "version": {"type": "integer", "minimum": 1},
            "eventId": {"type": "string"},
            "type": {"type": "string"},
            "data": {"type": "object"},
            "at": TIMESTAMP,
            "stateBefore": {"type": "string", "description": "Empty for the first event"},
            "stateAfter": {"type": "string"},
            "durationMs": {
                "type": "number",
                "minimum": 0,
                "description": "Time since the previous event, spent in stateBefore",
            },
        }
    ),
    "History": _record(
        {
            "id": {"type": "string"},
            "entries": {"type": "array", "items": _ref("HistoryEntry")},
            "nextAfter": {
                "type": "integer",
                "description": (
                    "Present when there is more (the page reached limit or about 1 MiB):"
                    " pass it as ?after= for the next page"
                ),
            },
        },
        "nextAfter",
    ),
    "WsMessage": _record(
        {
            "version": {"type": "integer", "minimum": 1},
            "event": {"oneOf": [{"type": "null"}, _ref("HistoryEntry")]},
            "view": VIEW,
        }
    ),
    "ClusterStatus": _record(
        {
            "node": {"type": "string", "description": "The id of the node that answered"},
            "shardCount": {"type": "integer", "minimum": 1},
            "leaseTtl": {"type": "number", "description": "Seconds a lease lasts unrenewed"},
            "members": {
                "type": "array",
                "items": _record(
                    {
                        "node": {"type": "string"},
                        "address": {"type": "string"},
                        "live": {"type": "boolean"},
                        "startedSecondsAgo": {"type": "number"},
                        "heartbeatSecondsAgo": {"type": "number"},
                        "shards": {"type": "string", "examples": ["0-41,43,45-60"]},
                    }
                ),
            },
            "shards": {
                "type": "array",
                "items": _record(
                    {
                        "shard": {"type": "integer", "minimum": 0},
                        "owner": {"type": ["string", "null"]},
                        "epoch": {"type": "integer", "minimum": 0},
                        "expiresIn": {"type": ["number", "null"]},
                    }
                ),
            },
        }
    ),
    "Status": _record({"status": {"type": "string", "enum": ["ok", "ready"]}}),
    "Problem": {
        "type": "object",
        "description": "RFC 9457; the members after `detail` are extensions, each when it helps",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string", "minLength": 1},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "minLength": 1},
            "error": {"type": "string", "description": "The orchestrator's error class"},
            "field": {"type": "string", "description": "The offending field or header"},
            "allowed": {"description": "The events allowed now", **STRINGS},
            "known": {"description": "The events the chart knows", **STRINGS},
            "state": {"type": "string", "description": "The order's state"},
            "version": {"type": "integer", "description": "The order's version"},
            "limit": {
                "type": "string",
                "description": "The limit an order would pass: max-order-bytes or max-order-events",
            },
            "maximum": {"type": "integer", "description": "That limit's value"},
            "shard": {
                "type": "integer",
                "description": "In a cluster: the order's shard, which has no owner just now",
            },
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Order orchestrator",
        "version": orchestrator.__version__,
        "description": (
            "One durable statechart actor per order. Errors are RFC 9457 problems. Any "
            "request whose Host is not one of the server's names gets 400, and a POST or a "
            "WebSocket handshake from another site's page (its Origin) gets 403."
        ),
    },
    "paths": PATHS,
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Only when the server has ORCHESTRATOR_API_TOKEN set.",
            },
            "accessToken": {
                "type": "apiKey",
                "in": "query",
                "name": "access_token",
                "description": "The bearer token on a WebSocket, for browsers, which cannot "
                "set its headers",
            },
        },
        "schemas": SCHEMAS,
    },
}


STATE_NODE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "path", "initial", "final", "parallel", "history", "children"],
    "properties": {
        "id": {"type": "string"},
        "path": {"type": "string"},
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
                "operationId": "listCharts",
                "summary": "The loaded charts, and the one POST /orders uses by default",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["charts", "default"],
                            "properties": {
                                "charts": {"type": "array", "items": {"type": "string"}},
                                "default": {"type": "string"},
                            },
                        },
                        "Chart names",
                    ),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/charts/{name}": {
            "get": {
                "operationId": "getChart",
                "summary": "A chart's states as a tree and its transitions, for drawing it",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("Chart"), "The chart"),
                    "401": UNAUTHORIZED,
                    "404": _problem(404, "No such chart"),
                },
            }
        },
        "/cluster": {
            "get": {
                "operationId": "clusterStatus",
                "summary": "The cluster's members, and which node holds which shard",
                "description": (
                    "As PostgreSQL has them now: each member's address, heartbeat age and "
                    "shards, and each shard's owner, epoch and seconds left on its lease. "
                    "A server on SQLite is not in a cluster: 404."
                ),
                "responses": {
                    "200": _json(_ref("ClusterStatus"), "The cluster"),
                    "401": UNAUTHORIZED,
                    "404": _problem(404, "Not in a cluster (the store is SQLite)"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/ws": {
            "get": {
                "operationId": "watchAllOrders",
                "summary": "WebSocket firehose: every order's messages as its events apply",
                "description": (
                    "A WebSocket (RFC 6455). Every message is a `WsMessage` of some order. "
                    "Nothing is sent on connect and nothing is replayed: read GET /orders "
                    "after connecting. Close codes: 4401 bad token, 4008 fell behind "
                    "(reconnect, then read GET /orders again)."
                ),
                "security": [{"bearer": []}, {"accessToken": []}],
                "responses": {
                    "101": {
                        "description": "Switched to the WebSocket protocol",
                        "content": {"application/json": {"schema": _ref("WsMessage")}},
                    }
                },
            }
        },
    }
)
OPENAPI["components"]["schemas"].update(
    {
        "ChartState": STATE_NODE,
        "Chart": {
            "type": "object",
            "required": [
                "name",
                "createFields",
                "creatable",
                "serviceEvents",
                "states",
                "transitions",
            ],
            "properties": {
                "name": {"type": "string"},
                "createFields": {
                    "type": "object",
                    "description": "What POST /orders takes besides `chart`: field -> JSON type",
                    "additionalProperties": {"type": "string"},
                    "examples": [{"pizza": "object"}],
                },
                "creatable": {"type": "boolean"},
                "serviceEvents": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Events only a service may send (the broker, a signed "
                    "webhook); refused with 403 over POST /orders/{id}/events",
                },
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
    }
)


def _schema_name(chart_name: str) -> str:
    """``Create`` and the chart's name in camel case: a component name (``[A-Za-z0-9]``)
    that a generated client turns into a class name."""
    parts = re.split(r"[^A-Za-z0-9]+", chart_name)
    return "Create" + "".join(part[:1].upper() + part[1:] for part in parts)


def _field_schema(json_type: str) -> dict[str, Any]:
    """A create field of this JSON type; an array's items are any JSON (generators want
    ``items`` said)."""
    return {"type": json_type, "items": {}} if json_type == "array" else {"type": json_type}


def create_body(charts: Mapping[str, Chart], default_chart: str) -> dict[str, Any]:
    """One closed object per chart (each can be created), keyed by its component name:
    its create fields, all required, and ``chart`` as the chart's name, required but for
    the default chart (POST /orders takes that one without it)."""
    bodies: dict[str, Any] = {}
    for name in sorted(charts):
        context_class = charts[name].context_class
        fields = {
            field: _field_schema(JSON_TYPES[kind])
            for field, kind in context_class.create_fields.items()
        }
        body = _record(
            {**fields, "chart": {"const": name}},
            *(["chart"] if name == default_chart else []),
        )
        body["description"] = f"Create a {name} order"
        key = _schema_name(name)
        while key in bodies or key in SCHEMAS:
            key += "_"
        bodies[key] = body
    return bodies


def _served(route: BaseRoute) -> list[str]:
    """The lower-case methods of a route that the document describes: a WebSocket is the
    GET that opens it; HEAD, which Starlette adds to every GET, is left implicit."""
    if isinstance(route, WebSocketRoute):
        return ["get"]
    if isinstance(route, Route) and route.include_in_schema:
        return sorted(method.lower() for method in route.methods or () if method != "HEAD")
    return []


def paths_of(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The operations of these routes, in route order, each taken from the written ones;
    a ``RuntimeError`` (the server does not start) names a route with no operation, or an
    operation no route serves."""
    written: dict[str, Any] = OPENAPI["paths"]
    paths: dict[str, Any] = {}
    for route in routes:
        for method in _served(route):
            path = getattr(route, "path", "")
            operation = written.get(path, {}).get(method)
            if operation is None:
                raise RuntimeError(f"{method.upper()} {path} is served but not documented")
            paths.setdefault(path, {})[method] = operation
    unserved = [
        f"{method.upper()} {path}"
        for path, operations in written.items()
        for method in operations
        if method not in paths.get(path, {})
    ]
    if unserved:
        raise RuntimeError(f"documented but not served: {', '.join(unserved)}")
    return paths


def document(
    routes: Sequence[BaseRoute], charts: Mapping[str, Chart], default_chart: str
) -> dict[str, Any]:
    """The document of an app with these routes, running these charts: its paths are the
    routes', and the create body is one of the charts'."""
    bodies = create_body(charts, default_chart)
    built = copy.deepcopy(OPENAPI)
    built["paths"] = copy.deepcopy(paths_of(routes))
    schemas = built["components"]["schemas"]
    schemas.update(bodies)
    # No creatable chart: no body is valid.
    create: dict[str, Any] = {"oneOf": [_ref(key) for key in bodies]} if bodies else {"not": {}}
    schemas["Create"] = create
    return built
