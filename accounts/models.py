"""Account (the tenant), user membership, API tokens (hashed) and encrypted secrets."""

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

SECRET_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Account(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    # The key that signs completion callbacks, encrypted like a Secret; made on first use.
    callback_secret = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A Django user belongs to exactly one account."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.account}"


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 digest is stored, the token itself is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="login")
    prefix = models.CharField(max_length=12, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Secret(models.Model):
    """AES-256-GCM ciphertext, hex of nonce ‖ ciphertext ‖ tag; the value is never stored in clear."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="secrets")
    key = models.CharField(max_length=128, validators=[RegexValidator(SECRET_KEY_PATTERN)])
    ciphertext = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="unique_secret_key_per_account")
        ]
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class KeyFingerprint(models.Model):
    """An HMAC under FLOWRUNNER_ENCRYPTION_KEY of a fixed text (never the key), recorded by the first process that
    checked its key: every later worker and server compares its own, so a host with another key says so when it
    starts instead of failing every node that needs a secret. One row."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"encryption key {self.fingerprint[:12]}…"
