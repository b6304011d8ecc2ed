"""The configured PostgreSQL database: created when missing before migrations, else a one-line error."""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from psycopg import sql

MAINTENANCE_DATABASES = ("postgres", "template1")
CONNECT_TIMEOUT = 5


class DatabaseProblem(Exception):
    """The configured database cannot be used; the message is one line saying what to run."""


class DatabaseMissing(DatabaseProblem):
    """The server answers, but the configured database does not exist (and was not to be created here)."""


def configured() -> bool:
    """Whether a PostgreSQL server is configured (else the embedded one, which creates its own database)."""
    return settings.EMBEDDED_POSTGRES_DIR is None


def _params(dbname: str | None = None) -> dict[str, Any]:
    params = connection.get_connection_params()
    params.update(connect_timeout=CONNECT_TIMEOUT, autocommit=True)
    if dbname is not None:
        params["dbname"] = dbname
    return params


def _server() -> tuple[str, str, str, str]:
    db = settings.DATABASES["default"]
    return str(db["NAME"]), str(db["HOST"]), str(db["PORT"]), str(db["USER"])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    # libpq's message starts "connection failed: connection to server at ... failed: <reason>".
    return text.splitlines()[0] if text else type(exc).__name__


def _maintenance_connection():  # noqa: ANN202
    errors = []
    for dbname in MAINTENANCE_DATABASES:
        try:
            return psycopg.connect(**_params(dbname))
        except psycopg.Error as exc:
            errors.append(exc)
    raise errors[0]


def database_ensure(*, create: bool) -> bool:
    """Make sure the configured database exists; True when it was created here. With `create` false a missing
    database is a DatabaseProblem naming the command that creates it; so is a server that cannot be reached."""
    name, host, port, user = _server()
    where = f"{host}:{port}"
    try:
        psycopg.connect(**_params()).close()
        return False
    except psycopg.Error as exc:
        first_error = exc
    try:
        with _maintenance_connection() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if exists:  # the database is there: the first error was about something else (rights, a limit)
                raise DatabaseProblem(f"cannot use database {name!r} on {where}: {_first_line(first_error)}")
            if not create:
                raise DatabaseMissing(
                    f"database {name!r} does not exist on {where}: run `make migrate` (or `python manage.py "
                    "migrate`), which creates it and its tables"
                )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.errors.InsufficientPrivilege:
        raise DatabaseMissing(
            f"database {name!r} does not exist on {where} and user {user!r} may not create it: run "
            f"`createdb -h {host} -p {port} -U <a user that may> -O {user} {name}`, then `make migrate`"
        ) from None
    except psycopg.Error as exc:
        raise DatabaseProblem(
            f"cannot connect to PostgreSQL on {where} as {user!r}: {_first_line(exc)} — check "
            "FLOWRUNNER_POSTGRES_HOST/_PORT/_USER/_PASSWORD (is the server running?)"
        ) from None
