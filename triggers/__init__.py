"""Flows that start themselves: schedules (fired by Celery beat) and inbound webhooks."""
