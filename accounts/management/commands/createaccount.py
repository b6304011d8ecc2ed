"""`manage.py createaccount USERNAME [--password P] [--name NAME]`: user + account; prints the account id."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services
from core.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a user with its own account and print the account id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--password", help="The password (prompted for when omitted; prefer the prompt, argv is visible)."
        )
        parser.add_argument("--name", help="The account name (default: the username).")

    def handle(
        self, *args: Any, username: str, password: str | None, name: str | None, **options: Any
    ) -> None:
        if password is None:
            if not sys.stdin.isatty():
                raise CommandError("No --password given and no terminal to prompt on.")
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            account, _user = services.account_signup(username=username, password=password, account_name=name)
        except ApplicationError as exc:
            raise CommandError(exc.describe()) from None
        self.stdout.write(str(account.id))
