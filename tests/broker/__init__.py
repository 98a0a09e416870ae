"""Tests of orchestrator.broker; mirrors the package."""
