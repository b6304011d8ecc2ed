"""StoreEntry: the account-scoped key-value store behind the `store` node kind."""

from django.db import models

from accounts.models import Account


class StoreEntry(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="store_entries")
    key = models.CharField(max_length=255)
    value = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="unique_store_key_per_account")
        ]
        ordering = ["key"]
        verbose_name_plural = "store entries"

    def __str__(self) -> str:
        return self.key
