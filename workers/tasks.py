"""Celery tasks (thin adapters over the engine)."""
