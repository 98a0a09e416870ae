"""A durable order orchestrator: one statechart actor per order, fed by HTTP and a broker.

General layout, in import order from the bottom: ``errors`` and ``model`` are plain values;
``context`` and ``charts`` load chart documents and bind their actions; ``turn`` applies one
event to one order, with no I/O; ``store`` and ``broker`` are ports with their adapters;
``actor``, ``registry``, ``outbox`` and ``hub`` run orders; ``edge`` is the HTTP and
WebSocket surface; ``runtime`` wires it all from ``Settings``; ``cli`` is the command.
``worker`` is the kit services are written with, and ``client`` the HTTP client; each
is a public package of its own.

This module re-exports only what chart authors and embedders use.
"""

from orchestrator.context import Context
from orchestrator.errors import InvalidInput, OrchestratorError, Refused
from orchestrator.model import JsonObject

__version__ = "0.1.0"

__all__ = ["Context", "InvalidInput", "JsonObject", "OrchestratorError", "Refused", "__version__"]
