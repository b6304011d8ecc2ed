#!/usr/bin/env python
"""Django's command-line utility for FlowRunner."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowrunner.settings")
    from django.core.management import execute_from_command_line

    from flowrunner.cli import dbsetup
    from flowrunner.cli.embedded import database

    if sys.argv[1:2] == ["migrate"] and dbsetup.configured():
        # A configured server's database is created here when missing, as `flowrunner serve --migrate` does.
        try:
            if dbsetup.database_ensure(create=True):
                print("created the database", file=sys.stderr)
        except dbsetup.DatabaseProblem as exc:
            sys.exit(f"manage.py migrate: {exc}")
    # With no PostgreSQL host: the embedded server a running `flowrunner serve` owns, else one for this command.
    with database():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
