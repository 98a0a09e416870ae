"""The HTTP and WebSocket surface (Starlette)."""
