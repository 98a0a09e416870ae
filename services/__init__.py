"""Stub services that answer the orchestrator's commands: the kitchen and the delivery."""
