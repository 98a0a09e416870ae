"""Fault injection beyond kill -9: full disks under a real server."""
