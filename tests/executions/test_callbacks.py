"""Completion callbacks: the URL a run may name."""

from __future__ import annotations

import pytest

from executions.callbacks import callback_url_validate
from flowrunner.exceptions import ValidationFailed


def test_callback_url_validate_accepts_http_and_https(settings):
    # given a policy that refuses private addresses
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when public URLs are checked / then they come back as given
    assert callback_url_validate("https://hooks.example.com/done?x=1") == "https://hooks.example.com/done?x=1"
    assert callback_url_validate(" http://93.184.216.34:8080/cb ") == "http://93.184.216.34:8080/cb"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must be a non-empty string"),
        (42, "must be a non-empty string"),
        ("ftp://example.com/x", "must be an http or https URL"),
        ("https:///path", "must name a host"),
        ("https://user:pw@example.com/", "must not carry credentials"),
        ("https://example.com:99999/", "is not a valid URL"),
        ("https://example.com/a b", "must not contain spaces"),
        ("http://169.254.169.254/latest", "is not allowed: address 169.254.169.254 is the cloud metadata"),
        ("http://127.0.0.1:9/", "is not allowed: address 127.0.0.1 is a loopback address"),
        ("https://example.com/" + "a" * 2000, "must be at most 2000 characters"),
    ],
)
def test_callback_url_validate_refuses_with_a_precise_message(settings, url, message):
    # given a policy that refuses private addresses
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = False
    # when the URL is checked
    with pytest.raises(ValidationFailed) as raised:
        callback_url_validate(url)
    # then the error names the field and the reason
    assert message in str(raised.value.detail)
    assert raised.value.details[0]["path"] == "callback_url"


def test_callback_url_validate_allows_loopback_when_private_is_allowed(settings):
    # given a policy that allows private addresses (embedded mode, tests)
    settings.FLOWRUNNER_HTTP_ALLOW_PRIVATE = True
    # when / then a loopback receiver is accepted
    assert callback_url_validate("http://127.0.0.1:8123/cb") == "http://127.0.0.1:8123/cb"
