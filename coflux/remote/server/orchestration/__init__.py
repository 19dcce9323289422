"""Scheduling and state, free of FastAPI: one orchestrator per project owns its writes."""
