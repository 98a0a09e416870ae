"""Chart documents and their actions; the orchestrator loads every ``*.yaml`` here."""
