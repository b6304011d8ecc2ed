"""Django admin for the `store` node kind's key-value entries: read-only (flows own the data)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.selectors import member_account_id
from workers.models import StoreEntry


@admin.register(StoreEntry)
class StoreEntryAdmin(admin.ModelAdmin):
    list_display = ["key", "account", "short_value", "updated_at"]
    # RelatedOnly: a staff user's account filter lists only the accounts they can see (their own).
    list_filter = [("account", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["key"]
    list_select_related = ["account"]
    fields = ["account", "key", "value_json", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description="value")
    def short_value(self, entry: StoreEntry) -> str:
        text = json.dumps(entry.value)
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="value")
    def value_json(self, entry: StoreEntry) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', json.dumps(entry.value, indent=2))

    def get_queryset(self, request: HttpRequest) -> QuerySet[StoreEntry]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        account_id = member_account_id(request.user)
        if account_id is None:
            return queryset.none()
        return queryset.filter(account_id=account_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StoreEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StoreEntry | None = None) -> bool:
        return False
