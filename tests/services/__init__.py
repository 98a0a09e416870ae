"""Tests of the services package; mirrors the package."""
