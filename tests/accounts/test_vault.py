"""The vault: AES-256-GCM round trip, a fixed vector in the Go layout, tampering and wrong keys detected."""

import pytest
from django.conf import settings

from accounts import vault

KEY = bytes(range(32))
NONCE = bytes(range(100, 112))
PLAINTEXT = "hunter2 ✓"
# Computed once with cryptography's AESGCM; nonce ‖ ciphertext ‖ tag, as Go's gcm.Seal(nonce, nonce, p, nil).
VECTOR = "6465666768696a6b6c6d6e6f206eb0121c9b64bedcfecc1afb0df6cbb3a32882834c8dcf4305f9"


def test_vault_round_trip_returns_the_original_text():
    for value in ["", "s3cr3t", "ünïcødé ✓ 🔑", "x" * 10_000]:
        # given a value encrypted with the configured key
        stored = vault.encrypt(value)
        # when it is decrypted, then it is the same text
        assert vault.decrypt(stored) == value


def test_vault_encrypt_stores_lowercase_hex_of_nonce_ciphertext_and_tag():
    # given / when a 6-byte value is encrypted
    stored = vault.encrypt("abcdef")
    # then the stored text is lowercase hex of 12 + 6 + 16 bytes
    assert stored == stored.lower()
    assert len(bytes.fromhex(stored)) == 12 + 6 + 16


def test_vault_encrypt_matches_the_fixed_vector():
    # given a fixed key and nonce, when encrypting, then the bytes are the recorded ones
    assert vault.encrypt(PLAINTEXT, key=KEY, nonce=NONCE) == VECTOR


def test_vault_decrypt_reads_the_fixed_vector():
    # given the recorded ciphertext, when decrypting with its key, then the text comes back
    assert vault.decrypt(VECTOR, key=KEY) == PLAINTEXT


def test_vault_encrypt_matches_nist_gcm_test_case_14():
    # given the AES-256-GCM test case 14 of the GCM specification (zero key, zero IV, 16 zero bytes)
    expected = "00" * 12 + "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"
    # when encrypting, then ciphertext and tag are the published ones, after the nonce
    assert vault.encrypt("\x00" * 16, key=bytes(32), nonce=bytes(12)) == expected


def test_vault_encrypt_uses_a_fresh_nonce_each_time():
    # given the same value twice, when encrypting, then the stored texts differ (random nonce)
    assert vault.encrypt("same") != vault.encrypt("same")


@pytest.mark.parametrize("position", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
def test_vault_decrypt_detects_tampering(position):
    # given a stored value with one byte flipped
    raw = bytearray(bytes.fromhex(VECTOR))
    raw[position] ^= 0x01
    # when decrypting, then it fails without revealing the value
    with pytest.raises(vault.VaultError) as caught:
        vault.decrypt(raw.hex(), key=KEY)
    assert PLAINTEXT not in str(caught.value)


def test_vault_decrypt_with_the_wrong_key_fails():
    # given a value encrypted under one key
    stored = vault.encrypt("top secret", key=KEY)
    # when decrypting under another, then VaultError, and the message does not contain the value
    with pytest.raises(vault.VaultError) as caught:
        vault.decrypt(stored, key=bytes(32))
    assert "top secret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_vault_uses_the_configured_key_by_default():
    # given a value encrypted without an explicit key, then the settings key decrypts it
    stored = vault.encrypt("configured")
    assert vault.decrypt(stored, key=settings.FLOWRUNNER_ENCRYPTION_KEY) == "configured"


@pytest.mark.parametrize("stored", ["zz", "00" * 27, "", "abc"])
def test_vault_decrypt_rejects_malformed_input(stored):
    # given text that is not hex or too short, when decrypting, then VaultError
    with pytest.raises(vault.VaultError):
        vault.decrypt(stored, key=KEY)


def test_vault_rejects_a_key_of_the_wrong_size():
    # given a 16-byte key, when encrypting, then VaultError (AES-256 only)
    with pytest.raises(vault.VaultError):
        vault.encrypt("x", key=bytes(16))
