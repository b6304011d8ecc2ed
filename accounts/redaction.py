"""Masks known secret values (`***`) in text and JSON-like data before anything is stored, logged or sent."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# A shorter secret ("1", "on", "abc") would mask those characters all over ordinary text, so it is only masked
# where a whole string equals it (a value or key in `.data()`, or the whole of `.text()`).
MIN_SUBSTRING_LENGTH = 4


def _forms(secret: str) -> set[str]:
    """The secret as it may appear: raw, escaped inside a JSON string, and URL-encoded (query strings)."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }


class Redactor:
    """Built once per execution from the account's decrypted secret values; cheap to call many times."""

    def __init__(self, secret_values: Iterable[Any]) -> None:
        secrets = {str(value) for value in secret_values if value is not None and str(value) != ""}
        self._whole = frozenset(secrets)
        long_enough = [secret for secret in secrets if len(secret) >= MIN_SUBSTRING_LENGTH]
        # Longest first, so that a secret containing another is masked whole rather than in part.
        alternatives = sorted(
            {form for secret in long_enough for form in _forms(secret)}, key=lambda f: (-len(f), f)
        )
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def __bool__(self) -> bool:
        return bool(self._whole)

    def text(self, value: str) -> str:
        """`value` with every known secret (in any of its forms) replaced by `***`."""
        if not isinstance(value, str) or not value:
            return value
        if value in self._whole:
            return MASK
        return self._pattern.sub(MASK, value) if self._pattern is not None else value

    def data(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in every string, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value

    __call__ = data


class LazyRedactor:
    """A Redactor whose secret values are loaded only when something is actually redacted: most node runs
    log nothing and fail nothing, and then never pay for decrypting the account's secrets."""

    def __init__(self, load_values: Callable[[], Iterable[Any]]) -> None:
        self._load_values = load_values
        self._redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        if self._redactor is None:
            self._redactor = Redactor(self._load_values())
        return self._redactor

    def text(self, value: str) -> str:
        return self.redactor.text(value)

    def data(self, value: Any) -> Any:
        return self.redactor.data(value)

    def __call__(self, value: Any) -> Any:
        return self.redactor.data(value)
