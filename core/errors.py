"""Domain errors: what went wrong, in words for people and a stable code for programs; no HTTP, no DRF."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """An error a service or selector raises on purpose; the API, the admin and the CLI each show it their way
    (core.api.exceptions maps the kinds below to HTTP statuses)."""

    default_code = "bad_request"
    default_message = "Bad request."

    def __init__(self, message: str | None = None, *, code: str | None = None, details: Any = None) -> None:
        self.message = message or self.default_message
        self.code = code or self.default_code
        self.details = details
        super().__init__(self.message)

    def describe(self) -> str:
        """The message and, when `details` lists problems, each as `path: message`, on one line (for the
        command line and the admin, which have no envelope)."""
        problems = self.details if isinstance(self.details, list) else []
        listed = "; ".join(f"{p.get('path')}: {p.get('message')}" for p in problems if isinstance(p, dict))
        return f"{self.message} {listed}" if listed else self.message


class ValidationFailed(ApplicationError):
    default_code = "validation_error"
    default_message = "The request is not valid."


class NotAuthenticated(ApplicationError):
    """Credentials that do not check out."""

    default_code = "invalid_credentials"
    default_message = "Invalid username or password."


class Forbidden(ApplicationError):
    default_code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class NotFound(ApplicationError):
    default_code = "not_found"
    default_message = "Not found."


class Conflict(ApplicationError):
    default_code = "conflict"
    default_message = "Conflict."


class Unprocessable(ApplicationError):
    """Well-formed and valid, yet refused for what it would do (e.g. a reused idempotency key)."""

    default_code = "unprocessable_entity"
    default_message = "The request cannot be processed."


class PayloadTooLarge(ApplicationError):
    default_code = "payload_too_large"
    default_message = "The request body is too large."


class TooManyAttempts(ApplicationError):
    """Too many failures in a window; `retry_after` seconds until the next attempt counts."""

    default_code = "throttled"
    default_message = "Too many attempts; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DatabaseUnavailable(ApplicationError):
    """PostgreSQL cannot be reached (down, restarting, out of connections); the request may be retried."""

    default_code = "database_unavailable"
    default_message = "The database is unavailable; try again shortly."
    retry_after = 5
