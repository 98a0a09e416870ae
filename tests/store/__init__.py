"""Tests of orchestrator.store; mirrors the package."""
