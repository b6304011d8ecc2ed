"""AES-256-GCM for secret values, stored as hex of nonce(12) ‖ ciphertext ‖ tag(16) like the Go original."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class VaultError(Exception):
    """A value could not be encrypted or decrypted; the message never contains the value."""


def _key(key: bytes | None) -> bytes:
    key = settings.FLOWRUNNER_ENCRYPTION_KEY if key is None else key
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise VaultError(f"the encryption key must be {KEY_BYTES} bytes")
    return bytes(key)


def encrypt(plaintext: str, *, key: bytes | None = None, nonce: bytes | None = None) -> str:
    """Encrypt `plaintext` (UTF-8) with a fresh random nonce; `nonce` exists only for test vectors.

    Same bytes as Go's `hex.EncodeToString(gcm.Seal(nonce, nonce, plaintext, nil))`: cryptography's
    AESGCM.encrypt returns ciphertext ‖ tag, so prefixing the nonce gives the Go layout.
    """
    if not isinstance(plaintext, str):
        raise VaultError("only text values can be encrypted")
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    elif len(nonce) != NONCE_BYTES:
        raise VaultError(f"the nonce must be {NONCE_BYTES} bytes")
    sealed = AESGCM(_key(key)).encrypt(nonce, plaintext.encode("utf-8"), None)
    return (nonce + sealed).hex()


def decrypt(stored: str, *, key: bytes | None = None) -> str:
    """Decrypt a value made by `encrypt` (or by the Go original); tampering or a wrong key → VaultError."""
    try:
        raw = bytes.fromhex(stored)
    except (TypeError, ValueError):
        raise VaultError("the stored secret is not valid hex") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise VaultError("the stored secret is too short")
    nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    try:
        plain = AESGCM(_key(key)).decrypt(nonce, sealed, None)
    except InvalidTag:
        # `from None`: the cryptography traceback adds nothing and we keep error chains free of data.
        raise VaultError("the secret could not be decrypted (wrong key or tampered data)") from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError("the decrypted secret is not UTF-8 text") from None
