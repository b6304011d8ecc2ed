"""Celery tasks of the executions app (thin adapters): completion callbacks and the admission sweep."""

from __future__ import annotations

from celery import shared_task

from executions import admission, callbacks, dispatch, lifecycle


@shared_task(bind=True, name=dispatch.DELIVER_CALLBACK, ignore_result=True, max_retries=None)
def deliver_callback(self, execution_id: str, attempt: int = 1) -> None:  # noqa: ANN001
    result = callbacks.callback_deliver(execution_id=execution_id, attempt=attempt)
    if result.retry_in is not None:
        # The next attempt is this task again, after the backoff (Celery's retry: a countdown, no sleep).
        raise self.retry(args=[execution_id, attempt + 1], countdown=result.retry_in)


@shared_task(name=dispatch.ADMIT, ignore_result=True)
def admit() -> int:
    """The periodic sweep of what follows ends: lost admissions, then callbacks never sent."""
    started = admission.admit_all()
    lifecycle.callbacks_resend_lost()
    return started
