"""core.authorization: the one reading of an `Authorization` header (scheme, credentials, fixed bearer token)."""

from __future__ import annotations

from core.authorization import bearer_matches, split_authorization


def test_split_authorization_gives_the_lower_case_scheme_and_the_credentials():
    # Given a header as text or as the bytes DRF hands over
    # When it is split
    # Then the scheme is lower-cased and the credentials kept as sent
    assert split_authorization("Bearer AbC") == ("bearer", "AbC")
    assert split_authorization(b"BASIC dXNlcjpwdw==") == ("basic", "dXNlcjpwdw==")
    assert split_authorization("  Bearer\tAbC  ") == ("bearer", "AbC")


def test_split_authorization_has_no_credentials_for_a_malformed_value():
    # Given no header, a scheme alone, or a scheme with two credentials
    # When each is split
    # Then the credentials are None (the scheme still says whose it is to refuse)
    assert split_authorization(None) == ("", None)
    assert split_authorization("   ") == ("", None)
    assert split_authorization("Bearer") == ("bearer", None)
    assert split_authorization("Bearer a b") == ("bearer", None)


def test_bearer_matches_only_the_configured_token_under_the_bearer_scheme():
    # Given a configured token
    # When headers with other schemes, other tokens or no token configured are checked
    # Then only `Bearer <token>` matches
    assert bearer_matches("Bearer s3cret", "s3cret")
    assert bearer_matches(b"bearer s3cret", "s3cret")
    assert not bearer_matches("Basic s3cret", "s3cret")
    assert not bearer_matches("Bearer s3cret extra", "s3cret")
    assert not bearer_matches("Bearer s3cret", None)


def test_bearer_matches_a_non_ascii_token_as_the_server_decoded_it():
    # Given a token with a non-ASCII character, sent as UTF-8 and decoded by the server as latin-1
    sent = "Bearer tökén".encode().decode("latin-1")
    # When it is checked
    # Then it matches the configured token
    assert bearer_matches(sent, "tökén")
