"""FlowRunner project package: settings, URLs, ASGI app, Celery app, CLI."""

from .celery import app as celery_app

__all__ = ("celery_app",)
