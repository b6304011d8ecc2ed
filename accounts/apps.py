"""App config for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the OpenAPI security schemes of our authentication classes.
        from accounts import schema  # noqa: F401
        from core import dbpool

        dbpool.install()
