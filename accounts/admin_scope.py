"""Admin pieces every app shares: tenancy (staff who are not superusers see and change only their own account's
rows, as the API does) and read-only inlines."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from accounts import selectors
from accounts.models import Account


def member_account_id(request: HttpRequest) -> uuid.UUID | None:
    """The staff user's own account id, or None for a user who belongs to none."""
    return selectors.member_account_id(request.user)


class AccountScopedAdmin(admin.ModelAdmin):
    """Every row a non-superuser reaches (list, change, history, delete, actions, autocomplete) is of their own
    account: `account_lookup` is the path from the model to its account (`account`, `flow__account`, `pk`).
    Account pickers offer only their own account."""

    account_lookup = "account"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        account_id = member_account_id(request)
        return queryset.filter(**{self.account_lookup: account_id}) if account_id else queryset.none()

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs
    ) -> ModelChoiceField:
        if db_field.related_model is Account and not request.user.is_superuser:
            kwargs["queryset"] = Account.objects.filter(pk=member_account_id(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """For what no account scopes (users, groups and their permissions): a staff user who could change them could
    make themselves a superuser or join any account."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser


class ReadOnlyInlineMixin:
    """An inline that shows rows and never adds, changes or deletes one (history made by the engine)."""

    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False
