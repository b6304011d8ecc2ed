"""App config for accounts."""

from django.apps import AppConfig

from core import dbpool


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the OpenAPI security schemes of our authentication classes: a registration by
        # import belongs in ready(), Django's one hook that runs once every app is loaded.
        from accounts import schema  # noqa: F401

        dbpool.install()
