"""The Store port and its adapters (SQLite now; PostgreSQL is planned)."""
