"""`manage.py encryptionkey [--reset]`: whether this key is the database's; reset after a lost key."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.keycheck import SHOWN, KeyMismatch, encryption_key_check, encryption_key_reset, key_fingerprint


class Command(BaseCommand):
    help = (
        "Check FLOWRUNNER_ENCRYPTION_KEY against the key the database's secrets are encrypted with; --reset "
        "deletes the secrets this key cannot decrypt and makes this key the database's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset", action="store_true", help="after a lost key: forget it and its secrets"
        )
        parser.add_argument("--yes", action="store_true", help="do not ask before --reset deletes secrets")

    def handle(self, *args: Any, reset: bool, yes: bool, **options: Any) -> None:
        fingerprint = key_fingerprint()[:SHOWN]
        if reset:
            if not yes:
                if not sys.stdin.isatty():
                    raise CommandError("--reset deletes secrets: confirm with --yes (no terminal to ask on).")
                answer = input("Delete every secret this key cannot decrypt and record this key? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    raise CommandError("Nothing changed.")
            deleted = encryption_key_reset()
            self.stdout.write(f"key {fingerprint} recorded; {deleted} secret(s) it could not decrypt deleted")
            return
        try:
            outcome = encryption_key_check()
        except KeyMismatch as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"key {fingerprint} {outcome}")
