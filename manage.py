#!/usr/bin/env python
"""Django's command-line utility for FlowRunner."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowrunner.settings")
    from django.core.management import execute_from_command_line

    from flowrunner.embedded import database

    # With no PostgreSQL host: the embedded server a running `flowrunner serve` owns, else one for this command.
    with database():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
