"""The Store ports, one per role, and their adapters: SQLite and PostgreSQL."""
