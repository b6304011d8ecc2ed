"""The NodeContext the engine hands a running node: document, results, templating, sandbox, logs, store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from accounts.redaction import LazyRedactor
from accounts.vault import VaultError
from flows.dsl.spec import NodeSpec
from flows.nodes.base import NodeError, NodeTimeoutError, PermanentNodeError
from workers import templating
from workers.sandbox import ScriptError, ScriptTimeout, get_sandbox
from workers.store import AccountStore


@dataclass
class LogEntry:
    level: str
    message: str
    data: Any = None


@dataclass
class EngineContext:
    """Implements flows.nodes.base.NodeContext for one node run in a worker."""

    node: NodeSpec
    document: dict[str, Any]
    results: dict[str, Any]
    execution: dict[str, Any]
    load_secrets: Callable[[], dict[str, str]]
    timeout: float | None = None
    logs: list[LogEntry] = field(default_factory=list)
    # Whether the account has any secret (the claim says): when not, nothing is ever decrypted to mask.
    has_secrets: bool = True

    def __post_init__(self) -> None:
        self.store = AccountStore(self.execution["account_id"], masked=self.redacted_output)
        self._secrets: dict[str, str] | None = None
        self.redactor = LazyRedactor(self._values_to_mask)

    def redacted_output(self, output: Any) -> Any:
        """A value as it may be stored (output, batch inputs, store values): the account's secret values are
        masked whatever the script's text — one may reach a node through the document, items or the store
        without its code naming `secrets`. An account without secrets pays nothing."""
        if self._secrets is None and not self.has_secrets:
            return output
        return self.redactor.data(output)

    def _values_to_mask(self) -> list[str]:
        # Secrets that cannot be decrypted (a worker with another key) were never seen: nothing of them can leak,
        # and the node's error must still be recorded rather than fail again here.
        try:
            return list(self.secrets.values())
        except VaultError:
            return []

    def loaded_secret_values(self) -> list[str]:
        """The secret values this node has seen so far (none when they were never, or could not be, loaded)."""
        return list(self._secrets.values()) if self._secrets else []

    @property
    def secrets(self) -> dict[str, str]:
        """The account's secrets, decrypted on first use only (most nodes never touch them)."""
        if self._secrets is None:
            self._secrets = self.load_secrets()
        return self._secrets

    def _script_timeout(self) -> float:
        limit = settings.FLOWRUNNER_SCRIPT_TIMEOUT
        return min(limit, self.timeout) if self.timeout else limit

    def _globals(self, code: str, input: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        values = {
            "input": self.document if input is None else input,
            "shared": self.document,
            "results": self.results,
            # Decrypted only for code that names them; code that builds the name at run time sees {}.
            "secrets": self.secrets if "secrets" in code else {},
            "execution": self.execution,
        }
        if extra:
            values.update(extra)
        return values

    def run_script(self, source: str, *, input: Any = None, extra: dict[str, Any] | None = None) -> Any:
        try:
            outcome = get_sandbox().run(
                source,
                globals=self._globals(source, input, extra),
                name=self.node.id,
                timeout=self._script_timeout(),
                memory_mb=settings.FLOWRUNNER_SCRIPT_MEMORY_MB,
                max_output_bytes=settings.FLOWRUNNER_MAX_DOCUMENT_BYTES,
            )
        except ScriptTimeout as exc:
            raise NodeTimeoutError(str(exc), type="script_timeout") from None
        except ScriptError as exc:
            raise NodeError(str(exc), type=f"script_{getattr(exc, 'kind', 'error')}") from None
        for line in outcome.logs:
            self.logs.append(
                LogEntry(level=line.level, message=line.message, data=getattr(line, "data", None))
            )
        return outcome.value

    def evaluate(self, expression: str) -> Any:
        try:
            return get_sandbox().evaluate(
                expression,
                globals=self._globals(expression),
                timeout=self._script_timeout(),
                memory_mb=settings.FLOWRUNNER_SCRIPT_MEMORY_MB,
            )
        except ScriptTimeout as exc:
            raise NodeTimeoutError(f"in ${{{expression}}}: {exc}", type="script_timeout") from None
        except ScriptError as exc:
            raise NodeError(f"in ${{{expression}}}: {exc}", type="template_error") from None

    def render(self, value: Any) -> Any:
        try:
            return templating.render(value, self.evaluate)
        except templating.TemplateError as exc:
            raise PermanentNodeError(str(exc), type="template_error") from None

    def log(self, level: str, message: str, data: Any = None) -> None:
        self.logs.append(LogEntry(level=level, message=str(message), data=data))

    def redacted_logs(self) -> list[LogEntry]:
        return [
            LogEntry(e.level, self.redactor.text(e.message), self.redactor.data(e.data)) for e in self.logs
        ]
