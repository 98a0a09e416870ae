"""The bundled kitchen and delivery stubs: the first two users of ``orchestrator.worker``."""
