"""`flowrunner run FILE`: one flow on the embedded defaults, watched live; the final document goes to stdout."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ApplicationError
from flowrunner import pgserver
from flowrunner.cli import embedded
from flowrunner.cli.display import EventDisplay, problem_lines

POLL_SECONDS = 0.05


@dataclass
class RunOptions:
    path: str
    content: str
    input: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    db_dir: Path | None = None
    json_events: bool = False
    cancel_after: float | None = None
    verbose: bool = False
    strict: bool = False


def run(options: RunOptions) -> int:
    """Run the flow in a fresh embedded environment; 0 when it completes, 1 otherwise, 130 on Ctrl-C/SIGTERM.

    The database is an embedded PostgreSQL started for this run: in a temporary directory removed at the end,
    or with `--db DIR` in DIR (its data directory DIR/postgres and its key file DIR/dev-keys.json, kept)."""
    embedded.terminate_as_interrupt()
    with tempfile.TemporaryDirectory(prefix="flowrunner-run-") as scratch:
        home = Path(scratch) if options.db_dir is None else options.db_dir.resolve()
        home.mkdir(parents=True, exist_ok=True)
        if home == Path(scratch) and os.geteuid() == 0:
            home.chmod(0o711)  # the server's own user (PostgreSQL does not run as root) must enter it
        embedded.use_embedded_environment(
            postgres_dir=home / "postgres",
            # A kept database keeps its key beside it: its secrets must stay readable on the next run.
            keys_file=home / "dev-keys.json",
            log_level="INFO" if options.verbose else "WARNING",
        )
        server = pgserver.EmbeddedPostgres(home / "postgres", throwaway=options.db_dir is None)
        server.prepare(background=True)  # initdb while Django loads
        try:
            embedded.setup_django()
            # Syntax and validation first: a bad flow says exactly where it is wrong, and starts no server.
            problems = _problems(options)
            if problems:
                for line in problems:
                    print(line, file=sys.stderr)
                return 2
            missing = _missing_secrets(options)
            if missing:
                # Said before anything runs: otherwise the first node needing one fails only after its retries.
                print(f"flowrunner run: {'' if options.strict else 'warning: '}{missing}", file=sys.stderr)
                if options.strict:
                    return 2
            server.start()
            try:
                return _run_in_database(options)
            finally:
                embedded.close_database_connections()
        except pgserver.InUse as exc:
            print(f"flowrunner run: --db {home}: {exc}", file=sys.stderr)
            return 2
        except pgserver.EmbeddedPostgresError as exc:
            print(f"flowrunner run: {exc}", file=sys.stderr)
            return 1
        finally:
            server.stop()


def _run_in_database(options: RunOptions) -> int:
    embedded.migrate()
    try:
        account, flow = _prepare(options)
    except ApplicationError as exc:  # e.g. a secret key or value over the size limits
        print(f"flowrunner run: {exc.describe()}", file=sys.stderr)
        return 2
    # The execution has ended when the block exits: nothing left in the worker is worth waiting for, and its
    # loop would notice the stop only at its next 2 s broker poll (the daemon thread ends with the process).
    with embedded.in_process_worker(
        loglevel="info" if options.verbose else "error", warm_stop=False, stop_wait=0
    ):
        return _execute(options, account, flow)


def _problems(options: RunOptions) -> list[str]:
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from flows.dsl.spec import FlowValidationError
    from flows.services import flow_parse

    try:
        flow_parse(content=options.content)
    except FlowValidationError as exc:
        return problem_lines(options.path, exc.problems)
    return []


def _missing_secrets(options: RunOptions) -> str | None:
    """A line naming the secrets the flow's code uses that were not given with --secret, or None."""
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from flows.dsl.references import secret_names
    from flows.services import flow_parse

    used = secret_names(flow_parse(content=options.content))
    missing = {name: nodes for name, nodes in used.items() if name not in options.secrets}
    if not missing:
        return None
    names = ", ".join(f"{name} (used by {', '.join(nodes)})" for name, nodes in sorted(missing.items()))
    return (
        f"the flow uses secrets that were not given: {names}; pass them with --secret KEY=VALUE (or --secret KEY "
        "to read the environment variable KEY)"
    )


def _prepare(options: RunOptions):  # noqa: ANN202
    """A throwaway account (no user: nobody logs in), its secrets (stored encrypted) and the flow."""
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from accounts.services import account_create, secret_set
    from flows.services import flow_create

    account = account_create(name=f"flowrunner run {Path(options.path).name}")
    for key, value in options.secrets.items():
        secret_set(account=account, key=key, value=value)
    flow = flow_create(account=account, user=None, content=options.content)
    return account, flow


def _execute(options: RunOptions, account, flow) -> int:  # noqa: ANN001
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from accounts.redaction import Redactor
    from executions.models import ExecutionStatus
    from executions.selectors import execution_get
    from executions.services import execution_start

    redactor = Redactor(options.secrets.values())
    display = EventDisplay(
        flow_name=flow.name, json_events=options.json_events, redact=redactor.data, verbose=options.verbose
    )
    execution, _ = execution_start(account=account, flow=flow, input=options.input)
    interrupted = False
    seen = [0]  # the last seq shown, kept across the interruption so no event is shown twice
    with display:
        try:
            _follow(execution, display, seen, cancel_after=options.cancel_after)
        except KeyboardInterrupt:
            interrupted = True
            _cancel(execution, display, reason="interrupted")
            _follow(execution, display, seen, cancel_after=None)
    execution = execution_get(account=account, execution_id=execution.id)
    completed = execution.status == ExecutionStatus.COMPLETED
    document = execution.results if completed else execution.data
    display.summary(execution)
    sys.stdout.write(json.dumps(redactor.data(document), indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
    if interrupted:
        return 130
    return 0 if completed else 1


def _follow(execution: Any, display: EventDisplay, seen: list[int], *, cancel_after: float | None) -> None:
    """Show every stored event in seq order until the execution ends (the events are the durable record that
    the WebSocket sends too; polling them needs no channel layer)."""
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from executions.models import ExecutionStatus
    from executions.selectors import execution_current_status, execution_events

    started = time.monotonic()
    canceled = False
    while True:
        # The status first: a terminal status commits with its events, so reading events afterwards sees all.
        status = execution_current_status(execution=execution)
        for seq, payload in execution_events(execution=execution, since=seen[0]).values_list(
            "seq", "payload"
        ):
            display.frame(payload)
            seen[0] = seq
        if status in ExecutionStatus.TERMINAL:
            return
        if cancel_after is not None and not canceled and time.monotonic() - started >= cancel_after:
            canceled = True
            _cancel(execution, display, reason=f"--cancel-after {cancel_after:g}s")
        time.sleep(POLL_SECONDS)


def _cancel(execution: Any, display: EventDisplay, *, reason: str) -> None:
    # Imported once setup_django() has run: these modules load models, which need Django's apps ready.
    from executions.selectors import execution_get
    from executions.services import execution_cancel

    display.note(f"canceling ({reason})")
    execution_cancel(execution=execution_get(account=execution.account_id, execution_id=execution.id))
