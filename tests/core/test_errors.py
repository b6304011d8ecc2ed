"""Domain errors (core.errors) and how the API shows them (core.api.exceptions)."""

from rest_framework import exceptions

from accounts.selectors import NoAccount
from core.api.exceptions import api_exception, http_status
from core.errors import ApplicationError, NotAuthenticated, TooManyAttempts, ValidationFailed
from executions.idempotency import IdempotencyKeyReused


def test_errors_describe_puts_each_problem_after_the_message():
    # given a validation error listing two problems
    error = ValidationFailed(
        "The account could not be created.",
        details=[{"path": "username", "message": "taken"}, {"path": "password", "message": "too short"}],
    )
    # when described for the command line / then one line with both
    assert error.describe() == "The account could not be created. username: taken; password: too short"


def test_errors_describe_is_the_message_alone_without_a_list_of_problems():
    # given errors whose details are absent or not a list of problems
    plain, limited = ApplicationError("Nope."), ApplicationError("Too big.", details={"limit": 5})
    # when described / then the message alone
    assert (plain.describe(), limited.describe()) == ("Nope.", "Too big.")


def test_errors_http_status_is_the_nearest_kinds():
    # given errors of app-defined kinds and a bare one
    # when mapped / then each answers as its nearest core kind, a bare error as 400
    assert http_status(NoAccount()) == 403
    assert http_status(IdempotencyKeyReused()) == 422
    assert http_status(ApplicationError()) == 400


def test_errors_api_exception_keeps_the_error_for_drf_authentication_and_throttling():
    # given wrong credentials and a throttled client, as an authenticator sees them
    wrong, throttled = NotAuthenticated(code="invalid_token"), TooManyAttempts("Slow down.", retry_after=7)
    # when carried out of the authenticator
    as_401, as_429 = api_exception(wrong), api_exception(throttled)
    # then they are DRF's own kinds (WWW-Authenticate, Retry-After) carrying the domain error
    assert isinstance(as_401, exceptions.AuthenticationFailed) and as_401.error is wrong
    assert isinstance(as_429, exceptions.Throttled) and as_429.wait == 7 and as_429.error is throttled
