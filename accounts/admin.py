"""Django admin for accounts, memberships, API tokens (hash only) and secrets (write-only values), each scoped to
the staff user's own account; users and groups for superusers only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts import services
from accounts.admin_scope import AccountScopedAdmin, SuperuserOnlyAdmin, member_account_id
from accounts.models import Account, ApiToken, Membership, Secret


def _superuser(request: HttpRequest) -> bool:
    return request.user.is_superuser


class MembershipInline(admin.TabularInline):
    """Who belongs to an account decides what they see: only a superuser changes it."""

    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return _superuser(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return _superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return _superuser(request) and super().has_delete_permission(request, obj)


@admin.register(Account)
class AccountAdmin(AccountScopedAdmin):
    """Staff see and may rename their own account; creating or deleting accounts is a superuser's."""

    account_lookup = "pk"
    list_display = ["name", "id", "created_at"]
    ordering = ["name"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        return _superuser(request) and super().has_delete_permission(request, obj)


@admin.register(Membership)
class MembershipAdmin(AccountScopedAdmin):
    """Staff see their own account's members; only a superuser adds, moves or removes one."""

    list_display = ["user", "account", "created_at"]
    search_fields = ["user__username", "account__name"]
    raw_id_fields = ["user"]
    autocomplete_fields = ["account"]
    readonly_fields = ["created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return _superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        return _superuser(request) and super().has_delete_permission(request, obj)


@admin.register(ApiToken)
class ApiTokenAdmin(AccountScopedAdmin):
    """Tokens are issued by POST /login; the admin can only look at the digest and revoke."""

    list_display = ["name", "prefix", "user", "account", "created_at", "last_used_at", "expires_at", "state"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "name", "user__username", "account__name"]
    fields = [
        "name",
        "prefix",
        "user",
        "account",
        "token_hash",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "active"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token made here could never be shown to anyone (only its digest is stored).
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = list(queryset)
        for token in tokens:
            services.api_token_revoke(token=token)
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)


class SecretAdminForm(forms.ModelForm):
    """The value is write-only: typed into a password box, encrypted by the service, never rendered back."""

    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        max_length=services.SECRET_VALUE_MAX_CHARS,
        help_text="Write-only. Leave empty on an existing secret to keep its value.",
    )

    class Meta:
        model = Secret
        fields = ["account", "key"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("value"):
            self.add_error("value", "A new secret needs a value.")
        return cleaned


@admin.register(Secret)
class SecretAdmin(AccountScopedAdmin):
    form = SecretAdminForm
    list_display = ["key", "account", "created_at", "updated_at"]
    # RelatedOnly: the filter lists the accounts of the secrets the user can see, not every tenant.
    list_filter = [("account", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["key", "account__name"]
    autocomplete_fields = ["account"]

    def get_fields(self, request: HttpRequest, obj: Secret | None = None) -> list[str]:
        if obj is None and not _superuser(request):
            return ["key", "value"]  # created in the staff user's own account
        return ["account", "key", "value"] + (["created_at", "updated_at"] if obj else [])

    def has_add_permission(self, request: HttpRequest) -> bool:
        has_account = _superuser(request) or member_account_id(request) is not None
        return has_account and super().has_add_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Secret | None = None) -> list[str]:
        # Renaming or moving a secret is delete + create; fixed fields keep the service the only writer.
        return ["account", "key", "created_at", "updated_at"] if obj else []

    def save_model(self, request: HttpRequest, obj: Secret, form: SecretAdminForm, change: bool) -> None:
        value = form.cleaned_data.get("value")
        if change and not value:
            return
        if not change and not _superuser(request):
            obj.account_id = member_account_id(request)
        secret, _ = services.secret_set(account=obj.account, key=obj.key, value=value)
        # The admin goes on to log and redirect using `obj`; make it the saved row.
        obj.pk, obj.ciphertext = secret.pk, secret.ciphertext
        obj.created_at, obj.updated_at = secret.created_at, secret.updated_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Secret) -> None:
        services.secret_delete(account=obj.account, key=obj.key)


# Django registers these with model permissions only: a staff user holding auth.change_user could make
# themselves a superuser. Users and groups belong to no account, so only superusers manage them.
User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class SuperuserOnlyUserAdmin(SuperuserOnlyAdmin, UserAdmin):
    pass


@admin.register(Group)
class SuperuserOnlyGroupAdmin(SuperuserOnlyAdmin, GroupAdmin):
    pass
