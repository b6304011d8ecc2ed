"""The `flowrunner` console script: serve, worker, beat, run, validate, createaccount, demo."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management import ManagementUtility

from core.durations import DurationError, parse_duration
from flowrunner.cli import dbsetup, embedded
from flowrunner.cli.dbsetup import DatabaseProblem
from flowrunner.cli.demo import demo_setup, print_demo
from flowrunner.cli.display import problem_lines
from flowrunner.cli.runner import RunOptions, run
from flowrunner.cli.supervisor import supervise
from flowrunner.pgserver import EmbeddedPostgresError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SECRET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UsageError(Exception):
    """Bad input (missing file, invalid JSON, bad --secret): one line on stderr, exit 2."""


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file")
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a flow file")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}")


def parse_input(raw: str | None) -> dict[str, Any]:
    """`--input '{"a": 1}'`, `--input @file.json` or `--input @-` (stdin); it must be a JSON object."""
    if raw is None:
        return {}
    source = "--input"
    if raw.startswith("@"):
        source = raw[1:] or "-"
        raw = sys.stdin.read() if source == "-" else _read_text(source)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    if not isinstance(value, dict):
        raise UsageError(f"{source}: the input must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def parse_secrets(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE`, or a bare `KEY` to take the value from the environment (kept out of argv and history)."""
    secrets: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not _SECRET_KEY.fullmatch(key):
            raise UsageError(f"--secret {key!r}: the key must match [A-Za-z_][A-Za-z0-9_]* (KEY=VALUE)")
        if not sep:
            if key not in os.environ:
                raise UsageError(f"--secret {key}: no '=VALUE' and no environment variable {key}")
            value = os.environ[key]
        secrets[key] = value
    return secrets


def _flow_problems(path: str, content: str, scratch: str) -> list[str]:
    """The API's validation (parser + storage limits) in a throwaway embedded environment."""
    if "flowrunner.settings" not in sys.modules:
        # Validation reads no table: the embedded server these settings name is never started.
        embedded.use_embedded_environment(
            postgres_dir=Path(scratch) / "postgres", keys_file=Path(scratch) / "keys.json"
        )
    embedded.setup_django()
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from flows.dsl.spec import FlowValidationError
    from flows.services import flow_parse

    try:
        flow_parse(content=content)
    except FlowValidationError as exc:
        return problem_lines(path, exc.problems)
    return []


def cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    with tempfile.TemporaryDirectory(prefix="flowrunner-validate-") as scratch:
        for path in args.files:
            problems = _flow_problems(path, _read_text(path), scratch)
            for line in problems:
                print(line)
            if problems:
                status = EXIT_FAILED
            elif not args.quiet:
                print(f"{path}: valid")
    return status


def cmd_run(args: argparse.Namespace) -> int:
    content = _read_text(args.file)
    options = RunOptions(
        path=args.file,
        content=content,
        input=parse_input(args.input),
        secrets=parse_secrets(args.secret),
        db_dir=Path(args.db) if args.db else None,
        json_events=args.json_events,
        cancel_after=_duration(args.cancel_after, "--cancel-after"),
        verbose=args.verbose,
        strict=args.strict,
    )
    return run(options)


def _duration(raw: str | None, name: str) -> float | None:
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except DurationError as exc:
        raise UsageError(f"{name} {raw!r}: {exc}")


def _configured_database(command: str, *, create: bool, required: bool) -> bool:
    """With a PostgreSQL host configured, make sure its database is there (created when `create`). A missing
    database, or with `required` an unreachable server, ends the command with one line (DatabaseProblem);
    otherwise an unreachable server is a warning. Returns whether the server answered."""
    if not dbsetup.configured():
        return False
    try:
        if dbsetup.database_ensure(create=create):
            print(f"flowrunner {command}: created the database", file=sys.stderr)
    except dbsetup.DatabaseMissing:
        raise
    except dbsetup.DatabaseProblem as exc:
        if required:
            raise
        print(f"flowrunner {command}: warning: {exc}", file=sys.stderr)
        return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    embedded.setup_django()
    migrate_first = args.migrate
    if _configured_database("serve", create=bool(args.migrate), required=bool(args.migrate)):
        # A configured server is migrated and its key checked here, before serving: a process whose key cannot
        # decrypt the stored secrets would encrypt new ones the workers cannot read either. (Imported once
        # setup_django() has run: keycheck loads models, which need Django's apps ready.)
        from accounts.keycheck import check_at_start

        if args.migrate:
            embedded.migrate()
            migrate_first = False
        check_at_start("flowrunner serve")
    embedded.serve(
        host=args.host,
        port=args.port,
        worker=args.worker,
        demo=args.demo,
        migrate_first=migrate_first,
        concurrency=args.concurrency,
    )
    return EXIT_OK


def _celery_argv(subcommand: str, extra: list[str]) -> list[str] | None:
    """`python -m celery -A flowrunner <subcommand> ...` once the broker and database checks pass (None: not)."""
    embedded.setup_django()
    if embedded.is_embedded():
        print(
            f"flowrunner {subcommand}: FLOWRUNNER_REDIS_URL is not set, so the broker is in-memory and only "
            "reachable inside `flowrunner serve` (which runs its own worker and reaper). Set "
            "FLOWRUNNER_REDIS_URL (and FLOWRUNNER_POSTGRES_*) to run one separately.",
            file=sys.stderr,
        )
        return None
    _configured_database(subcommand, create=False, required=False)
    return [sys.executable, "-m", "celery", "-A", "flowrunner", subcommand, *(extra or ["-l", "info"])]


def _run_celery(subcommand: str, extra: list[str]) -> int:
    """`celery -A flowrunner <subcommand> ...`: a worker runs as a supervised child that is started again if it
    dies (unless `--no-restart`); otherwise this process is replaced by Celery (signals go straight to it)."""
    supervised = subcommand == "worker" and "--no-restart" not in extra
    argv = _celery_argv(subcommand, [arg for arg in extra if arg != "--no-restart"])
    if argv is None:
        return EXIT_USAGE
    sys.stdout.flush()
    if supervised:
        return supervise(argv)
    os.execv(sys.executable, argv)
    return EXIT_FAILED  # not reached


def _metrics_dir() -> None:
    """`--metrics-port`: the pool processes write their metrics to files in one directory, which must start
    empty (a previous run's totals would be added in). Its own temporary one unless PROMETHEUS_MULTIPROC_DIR
    names one (emptied of metric files here)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flowrunner-metrics-")
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def cmd_worker(extra: list[str]) -> int:
    if any(arg == "--metrics-port" or arg.startswith("--metrics-port=") for arg in extra):
        _metrics_dir()
    return _run_celery("worker", extra)


def cmd_beat(extra: list[str]) -> int:
    return _run_celery("beat", extra)


def cmd_createaccount(extra: list[str]) -> int:
    embedded.setup_django()
    _configured_database("createaccount", create=False, required=True)
    with embedded.database():
        ManagementUtility(["flowrunner", "createaccount", *extra]).execute()
    return EXIT_OK


# Their arguments belong to another parser (celery's, the management command's): passed on untouched.
PASSTHROUGH = {"worker": cmd_worker, "beat": cmd_beat, "createaccount": cmd_createaccount}


def cmd_demo(args: argparse.Namespace) -> int:
    embedded.setup_django()
    _configured_database("demo", create=bool(args.migrate), required=True)
    with embedded.database():
        if args.migrate or (args.migrate is None and embedded.embedded_postgres_dir() is not None):
            embedded.migrate()
        print_demo(demo_setup(directory=Path(args.examples) if args.examples else None))
    return EXIT_OK


def _on_off(parser: argparse.ArgumentParser, name: str, on_help: str, off_help: str | None = None) -> None:
    """`--NAME` and `--no-NAME`; neither given leaves it None, for the command to decide."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=name, action="store_true", default=None, help=on_help)
    group.add_argument(f"--no-{name}", dest=name, action="store_false", help=off_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowrunner", description="Run YAML workflows on Celery workers; see README.md."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the API, WebSocket and dashboard (daphne)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _on_off(
        serve,
        "worker",
        "also run a worker in this process (default: only when no FLOWRUNNER_REDIS_URL is set)",
        "never run one in-process",
    )
    serve.add_argument("--concurrency", type=int, default=4, help="threads of the in-process worker")
    _on_off(serve, "migrate", "apply migrations first (default: only on the embedded PostgreSQL)")
    serve.add_argument("--demo", action="store_true", help="create the demo account once, load examples/")
    serve.set_defaults(func=cmd_serve)

    for name, help_text in (
        ("worker", "a Celery worker (needs Redis), restarted if it dies (--no-restart: not)"),
        ("beat", "Celery beat (the reaper and the schedules)"),
    ):
        sub.add_parser(name, help=help_text + "; arguments go to celery", add_help=False)

    run = sub.add_parser(
        "run", help="run one flow in-process (embedded PostgreSQL, in-memory broker) and print its result"
    )
    run.add_argument("file", help="the flow's YAML file")
    run.add_argument("--input", metavar="JSON", help="the input object: JSON text, @file.json or @- (stdin)")
    run.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an account secret (repeatable); a bare KEY reads the environment variable KEY",
    )
    run.add_argument(
        "--db", metavar="DIR", help="keep the database (and its key file) in DIR (default: a temp dir)"
    )
    run.add_argument("--json-events", action="store_true", help="stderr: one JSON event frame per line")
    run.add_argument("--cancel-after", metavar="DURATION", help="cancel the execution after e.g. 2s")
    run.add_argument("-v", "--verbose", action="store_true", help="queued events and worker logs too")
    run.add_argument(
        "--strict",
        action="store_true",
        help="refuse to run (exit 2) when the flow's code names secrets not given with --secret",
    )
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check flow files: FILE:LINE:COL: path: message per problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-q", "--quiet", action="store_true", help="print nothing for a valid file")
    validate.set_defaults(func=cmd_validate)

    sub.add_parser(
        "createaccount", help="USERNAME [--password P] [--name N]: a user and its account", add_help=False
    )

    demo = sub.add_parser("demo", help="create the demo account once and load the example flows")
    demo.add_argument("--examples", metavar="DIR", help="default: examples/ of the source tree")
    demo.add_argument("--migrate", action="store_true", default=None, help="apply migrations first")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        try:
            raise SystemExit(PASSTHROUGH[argv[0]](argv[1:]))
        except DatabaseProblem as exc:
            print(f"flowrunner {argv[0]}: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_FAILED) from None
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except UsageError as exc:
        print(f"flowrunner {args.command}: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except (EmbeddedPostgresError, DatabaseProblem) as exc:
        print(f"flowrunner {args.command}: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        print(f"flowrunner {args.command}: interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)
