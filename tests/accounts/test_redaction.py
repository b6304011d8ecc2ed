"""Secret redaction in text and JSON-like data."""

from __future__ import annotations

from accounts.redaction import MASK, Redactor


def test_redaction_text_replaces_every_occurrence():
    # given a redactor for one secret
    redactor = Redactor(["sk-live-123456"])
    # when a text mentions it twice
    text = redactor.text("token sk-live-123456 then again sk-live-123456.")
    # then both are masked
    assert text == "token *** then again ***."


def test_redaction_longest_secret_wins():
    # given a secret that contains another
    redactor = Redactor(["abcd", "abcd-efgh-ijkl"])
    # when text holds the longer one and the shorter one alone
    text = redactor.text("long=abcd-efgh-ijkl short=abcd")
    # then the longer is masked whole, not leaving its tail behind
    assert text == "long=*** short=***"


def test_redaction_json_escaped_forms_are_masked():
    # given secrets with characters JSON escapes
    redactor = Redactor(['pa"ss\\word', "naïve-sécret"])
    # when they appear inside serialized JSON (both ASCII-escaped and not)
    text = redactor.text('{"a": "pa\\"ss\\\\word", "b": "na\\u00efve-s\\u00e9cret", "c": "naïve-sécret"}')
    # then every form is masked
    assert text == '{"a": "***", "b": "***", "c": "***"}'


def test_redaction_url_encoded_form_is_masked():
    # given a secret with characters URL encoding changes
    redactor = Redactor(["a b/c+d"])
    # when it appears in a query string
    text = redactor.text("https://api/x?key=a%20b%2Fc%2Bd&other=a+b%2Fc%2Bd")
    # then both encodings are masked
    assert text == "https://api/x?key=***&other=***"


def test_redaction_data_masks_keys_and_values_recursively():
    # given nested data holding a secret in values, keys, lists and a larger string
    redactor = Redactor(["s3cr3t-value"])
    data = {
        "headers": {"Authorization": "Bearer s3cr3t-value"},
        "s3cr3t-value": 1,
        "list": ["s3cr3t-value", 2, None, True, {"deep": ["x s3cr3t-value y"]}],
        "count": 3,
    }
    # when it is redacted
    redacted = redactor.data(data)
    # then every string is masked and other values are kept; the input is untouched
    assert redacted == {
        "headers": {"Authorization": "Bearer ***"},
        "***": 1,
        "list": ["***", 2, None, True, {"deep": ["x *** y"]}],
        "count": 3,
    }
    assert data["headers"]["Authorization"] == "Bearer s3cr3t-value"


def test_redaction_short_secrets_are_masked_only_as_whole_strings():
    # given secrets too short to mask safely inside other text
    redactor = Redactor(["1", "on", "abc"])
    # when they appear as whole values and inside words
    data = redactor.data({"flag": "on", "n": "1", "code": "abc", "text": "one abc 1 on"})
    # then whole values are masked and ordinary text is left readable
    assert data == {"flag": MASK, "n": MASK, "code": MASK, "text": "one abc 1 on"}
    assert redactor.text("abc") == MASK


def test_redaction_empty_and_missing_secrets_are_ignored():
    # given no usable secrets
    redactor = Redactor(["", None])
    # when text and data go through it
    # then nothing changes and the redactor reports it has nothing to do
    assert redactor.text("anything at all") == "anything at all"
    assert redactor.data({"a": ["b"]}) == {"a": ["b"]}
    assert not redactor


def test_redaction_non_strings_pass_through():
    # given a redactor
    redactor = Redactor(["secret-1"])
    # when it is given values that are not strings
    # then they come back as they are
    assert redactor.text(None) is None
    assert redactor.data(42) == 42
    assert redactor.data(None) is None
    assert redactor.data((1, "secret-1")) == [1, "***"]


def test_redaction_secret_with_regex_characters_is_literal():
    # given a secret full of regex metacharacters
    redactor = Redactor(["a.b*c(d)"])
    # when text holds it and a near miss
    text = redactor.text("a.b*c(d) aXbbc(d)")
    # then only the literal secret is masked
    assert text == "*** aXbbc(d)"


def test_redaction_redactor_is_callable_on_data():
    # given a redactor used as a plain callable (as status snapshots are redacted)
    redactor = Redactor(["top-secret"])
    # when it is called
    # then it behaves as .data()
    assert redactor({"error": "failed with top-secret"}) == {"error": "failed with ***"}
